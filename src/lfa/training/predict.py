"""Predictions of a trained model: logits over a split, and the ``predictions.parquet`` evaluation reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from lfa.data.batches import Batcher, DeviceData, StreamingData, model_batches, n_batches
from lfa.data.datasets import Prepared
from lfa.io import write_parquet
from lfa.training.device import autocast


@torch.no_grad()
def predict(model: torch.nn.Module, data: DeviceData | StreamingData, batcher: Batcher, idx: np.ndarray,
            amp: bool, bs: int, gen: torch.Generator | None = None,
            chunk: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32) and labels of the samples ``idx``, in order (augmented only if ``gen`` is given)."""
    model.eval()
    logits, labels = [], []
    params = batcher.draw(len(idx), data.native, gen, data.device) if gen is not None else None
    for x, y in model_batches(data, batcher, idx, bs, 0, n_batches(len(idx), bs, drop_single=False), chunk, params):
        with autocast(data.device, amp):
            logits.append(model(x).float())
        labels.append(y)
    if not logits:
        empty = torch.empty(0, data.labels.shape[1], device=data.device)
        return empty, empty
    return torch.cat(logits), torch.cat(labels)


def predictions_table(data: Prepared, split: dict[str, np.ndarray], scores: dict[str, torch.Tensor]) -> pa.Table:
    """The ``predictions.parquet`` table, built once from whole arrays (no column-by-column inserts): id, split,
    then label_<c> (int8) and score_<c> (float32) per class, val rows before test rows."""
    rows = np.concatenate([split["val"], split["test"]])
    labels = np.asfortranarray(data.labels[rows])  # each class's column contiguous: Arrow takes it as it is
    values = np.asfortranarray(np.concatenate([scores[name].cpu().numpy() for name in ("val", "test")])
                               .astype(np.float32, copy=False))
    columns: dict[str, pa.Array] = {
        "id": pa.array(data.ids[rows].astype(str)),
        "split": pa.array(np.repeat(["val", "test"], [len(split["val"]), len(split["test"])])),
    }
    for c in range(labels.shape[1]):
        columns[f"label_{c}"] = pa.array(labels[:, c])
        columns[f"score_{c}"] = pa.array(values[:, c])
    return pa.table(columns)


def write_predictions(path: str | Path, data: Prepared, split: dict[str, np.ndarray],
                      scores: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Per sample: id, split, label_<c> (int8) and score_<c> (float32), for val and test; ``metadata``
    (the job key, the data's content hash) goes into the file's metadata, where evaluation checks it."""
    write_parquet(predictions_table(data, split, scores), path, metadata)
