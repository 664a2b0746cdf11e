"""Predictions of a trained model: logits over a split, and the ``predictions.parquet`` evaluation reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from lfa.data.batches import Batcher, DeviceData, StreamingData, model_batches, n_batches
from lfa.data.datasets import Prepared
from lfa.io import write_parquet_blocks
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


#: Rows per row group of predictions.parquet: the writer holds one group's columns at a time.
BLOCK_ROWS = 32768


def predictions_schema(n_classes: int) -> pa.Schema:
    """``predictions.parquet``: id, split, then label_<c> (int8) and score_<c> (float32) per class."""
    fields = [pa.field("id", pa.string()), pa.field("split", pa.string())]
    for c in range(n_classes):
        fields += [pa.field(f"label_{c}", pa.int8()), pa.field(f"score_{c}", pa.float32())]
    return pa.schema(fields)


def prediction_blocks(data: Prepared, split: dict[str, np.ndarray], scores: dict[str, torch.Tensor],
                      schema: pa.Schema) -> Iterator[pa.Table]:
    """The rows of ``predictions.parquet``, val before test, :data:`BLOCK_ROWS` at a time, each built once from
    whole arrays (no column-by-column inserts into a frame)."""
    for name in ("val", "test"):
        rows, values = split[name], scores[name].cpu().numpy().astype(np.float32, copy=False)
        for r0 in range(0, len(rows), BLOCK_ROWS):
            block = rows[r0:r0 + BLOCK_ROWS]
            labels, block_scores = data.labels[block], values[r0:r0 + BLOCK_ROWS]
            columns = [pa.array(data.ids[block].astype(str)), pa.array(np.full(len(block), name))]
            for c in range(labels.shape[1]):
                columns += [pa.array(labels[:, c]), pa.array(block_scores[:, c])]
            yield pa.Table.from_arrays(columns, schema=schema)


def write_predictions(path: str | Path, data: Prepared, split: dict[str, np.ndarray],
                      scores: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Per sample: id, split, label_<c> (int8) and score_<c> (float32), for val and test; ``metadata``
    (the job key, the data's content hash) goes into the file's metadata, where evaluation checks it.

    Written a row group at a time, so the file is never whole in memory; only the id and split columns are
    dictionary-encoded: Parquet's default tries a dictionary on every column, which for scores (all distinct)
    costs most of the write and makes the file larger (benchmarks/RESULTS.md)."""
    schema = predictions_schema(data.labels.shape[1])
    write_parquet_blocks(prediction_blocks(data, split, scores, schema), schema, path, metadata,
                         use_dictionary=["id", "split"])
