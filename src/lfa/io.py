"""Small I/O helpers: atomic writes, so an interrupted or failed write never damages the previous file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
