"""I/O helpers: atomic writes (an interrupted or failed write never damages the previous file) and Parquet
files with string metadata (``lfa.version``, ``lfa.config_hash``)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lfa.errors import LfaError, MissingFile, UnreadableFile

# File-metadata keys written by pyarrow/pandas themselves; never returned or overwritten.
_RESERVED_METADATA = {"pandas", "ARROW:schema"}


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[str]:
    """Yield a temporary path beside ``target``; on success fsync it and rename it over ``target``.

    On any exception (a full disk included) the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: object, target: str | Path) -> None:
    """``torch.save`` through :func:`atomic_path`."""
    import torch

    try:
        with atomic_path(target) as tmp, open(tmp, "wb") as fh:
            torch.save(obj, fh)
    except RuntimeError as err:
        # torch's zip writer turns a failed write (e.g. a full disk) into a RuntimeError: report the OSError.
        cause = err.__context__
        if isinstance(cause, OSError):
            raise OSError(cause.errno, f"{cause.strerror} while writing {target}") from err
        raise


def _check_metadata(metadata: Mapping[str, str]) -> dict[bytes, bytes]:
    encoded: dict[bytes, bytes] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata keys and values must be str, got {key!r}: {value!r}")
        if key in _RESERVED_METADATA:
            raise ValueError(f"metadata key {key!r} is reserved by pyarrow/pandas")
        encoded[key.encode()] = value.encode()
    return encoded


def write_parquet(df: pd.DataFrame | pa.Table, path: str | os.PathLike[str], metadata: Mapping[str, str],
                  **options: Any) -> None:
    """Write ``df`` (without its index; or an Arrow table as it is) to Parquet atomically, with ``metadata`` in
    the file metadata.

    The table is written to a temporary file in the destination directory, flushed and fsynced, then
    moved over ``path`` with ``os.replace``: readers see either the previous file or the complete new one,
    and a failed write leaves the previous file untouched (the temporary file is removed).

    Args:
        df: the frame to write.
        path: destination ``.parquet`` file; its directory must exist.
        metadata: string key/value pairs stored in the Parquet schema (file) metadata, e.g.
            ``{"lfa.version": ..., "lfa.config_hash": ...}``; read back with :func:`read_parquet_metadata`.
        options: passed to :func:`pyarrow.parquet.write_table` (e.g. ``use_dictionary``).
    """
    extra = _check_metadata(metadata)
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **options)


def write_parquet_blocks(blocks: Iterable[pa.Table], schema: pa.Schema, path: str | os.PathLike[str],
                         metadata: Mapping[str, str], **options: Any) -> None:
    """Write tables of ``schema`` one after the other (a row group each) into one Parquet file, atomically, with
    ``metadata``: a file larger than memory is never whole in memory. ``options`` go to the ParquetWriter."""
    schema = schema.with_metadata({**(schema.metadata or {}), **_check_metadata(metadata)})
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, **options) as writer:
        for block in blocks:
            writer.write_table(block)


def read_parquet_metadata(path: str | os.PathLike[str], fix: str = "") -> dict[str, str]:
    """The string file metadata of a Parquet file, without pyarrow's and pandas' own entries."""
    with reading(path, fix):
        schema = pq.read_schema(path)
    return {
        key.decode(): value.decode()
        for key, value in (schema.metadata or {}).items()
        if key.decode() not in _RESERVED_METADATA
    }


@contextlib.contextmanager
def reading(path: str | Path, fix: str = "") -> Iterator[None]:
    """Turn any failure to read ``path`` into one line naming the file, the cause and ``fix`` (what to do)."""
    try:
        yield
    except LfaError:
        raise
    except FileNotFoundError:
        raise MissingFile(f"{path}: not found" + (f"; {fix}" if fix else "")) from None
    except (OSError, ValueError, EOFError, KeyError, pa.ArrowException) as err:
        cause = (str(err).strip().splitlines() or [type(err).__name__])[0]
        detail = f"{path}: unreadable ({type(err).__name__}: {cause})"
        raise UnreadableFile(detail + (f"; {fix}" if fix else "")) from err


def parquet_columns(path: str | Path, fix: str = "") -> list[str]:
    """The column names of a Parquet file, from its schema (no data read)."""
    with reading(path, fix):
        return list(pq.read_schema(path).names)


def read_json(path: str | Path, fix: str = "") -> Any:
    import json

    with reading(path, fix):
        return json.loads(Path(path).read_text())


def read_table(path: str | Path, columns: list[str] | None = None, fix: str = "") -> pd.DataFrame:
    """A Parquet file as a DataFrame."""
    with reading(path, fix):
        return pd.read_parquet(path, columns=columns)


def read_csv(path: str | Path, fix: str = "", **kwargs: Any) -> pd.DataFrame:
    with reading(path, fix):
        return pd.read_csv(path, **kwargs)


def load_array(path: str | Path, fix: str = "") -> Any:
    """A ``.npy`` array, memory-mapped read-only."""
    import numpy as np

    with reading(path, fix):
        return np.load(path, mmap_mode="r")
