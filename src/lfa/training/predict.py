"""Predictions of a trained model: logits over a split, and the ``predictions.parquet`` evaluation reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
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


def write_predictions(path: str | Path, data: Prepared, split: dict[str, np.ndarray],
                      scores: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Per sample: id, split, label_<c> (int8) and score_<c> (float32), for val and test; ``metadata``
    (the job key, the data's content hash) goes into the file's metadata, where evaluation checks it."""
    frames = []
    for name in ("val", "test"):
        idx = split[name]
        df = pd.DataFrame({"id": data.ids[idx], "split": name})
        sc = scores[name].cpu().numpy().astype(np.float32)
        for c in range(data.labels.shape[1]):
            df[f"label_{c}"] = data.labels[idx, c]
            df[f"score_{c}"] = sc[:, c]
        frames.append(df)
    write_parquet(pd.concat(frames, ignore_index=True), path, metadata)
