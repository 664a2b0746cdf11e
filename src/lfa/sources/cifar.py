"""CIFAR-10: the official python-pickle archive (train 50,000 / test 10,000), downloaded automatically.

Layout under ``root``::

    cifar-10-batches-py/{data_batch_1, ..., data_batch_5, test_batch, batches.meta}
    cifar-10-python.tar.gz   (optional: extracted, checked and removed if the folder is missing)

The batches are Python pickles, the one exception to "no pickle from downloads": they are read only
after their MD5s matched the official ones (``checksums: true``, the default), and always through a
restricted unpickler that can build nothing but lists, dicts, strings, numbers and numpy arrays.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from lfa.errors import RawDataInvalid, RawDataMissing
from lfa.sources.base import RawData, Source, one_hot, register_source

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
#: Official MD5 of every file of the extracted archive (the values torchvision checks too).
FILE_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
PARTITION_BATCHES = {
    "train": ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"],
    "test": ["test_batch"],
}

# (module, name) pairs a CIFAR batch may reference: numpy's array and dtype reconstruction, and the codec
# call by which Python 3 writes bytes at protocol 2. No other callable can be reached.
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        for candidate in (module, module.replace("numpy.core", "numpy._core"),
                          module.replace("numpy._core", "numpy.core")):
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"cannot resolve {module}.{name}")


def _text(value: Any) -> Any:
    return value.decode("latin1") if isinstance(value, bytes) else value


def load_batch(path: Path) -> dict[str, Any]:
    """One CIFAR batch file as a dict with str keys (the files were pickled by Python 2: bytes keys)."""
    try:
        with open(path, "rb") as fh:
            obj = _ArrayUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise RawDataInvalid(f"{path}: not a readable CIFAR batch ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise RawDataInvalid(f"{path}: not a readable CIFAR batch (a {type(obj).__name__}, not a dict)")
    return {_text(k): v for k, v in obj.items()}


@register_source
class Cifar10Source(Source):
    name = "cifar10"
    loads_in_memory = True
    title = "CIFAR-10"
    manual = False
    partitions = ("train", "test")
    default_partitions = ("train", "test")

    def instructions(self, root: Path) -> str:
        return (
            f"CIFAR-10 is downloaded automatically from {URL} (md5 {ARCHIVE_MD5}); see "
            "https://www.cs.toronto.edu/~kriz/cifar.html.\n"
            f"To use an existing copy, put (or point datasets.<name>.root at) a folder holding\n"
            f"  {root}/{FOLDER}/data_batch_1 ... data_batch_5, test_batch, batches.meta\n"
            f"or the archive {root}/{ARCHIVE}."
        )

    def present(self, root: Path) -> bool:
        return all((root / FOLDER / name).is_file() for name in FILE_MD5)

    def check(self, root: Path, specs: list[dict[str, Any]], strict: bool) -> dict[str, Any]:
        missing = [name for name in FILE_MD5 if not (root / FOLDER / name).is_file()]
        if missing:
            raise RawDataMissing(self.missing_message(root, f"missing {', '.join(missing)}"))
        if strict:
            from lfa.data.download import md5sum

            for name, md5 in FILE_MD5.items():
                actual = md5sum(root / FOLDER / name)
                if actual != md5:
                    raise RawDataInvalid(
                        f"{root / FOLDER / name}: md5 {actual}, expected {md5} (the official CIFAR-10 file); "
                        f"delete {root / FOLDER} and rerun to download it again, or set "
                        "datasets.<name>.checksums: false for a copy you trust")
        return {"folder": str(root / FOLDER), "files": sorted(FILE_MD5), "checksums_verified": strict}

    def download(self, root: Path, specs: list[dict[str, Any]]) -> None:
        from lfa.data.download import fetch, safe_extract

        root.mkdir(parents=True, exist_ok=True)
        archive = fetch(URL, root / ARCHIVE, ARCHIVE_MD5, desc="CIFAR-10")
        safe_extract(archive, root)
        archive.unlink()

    def load(self, root: Path, spec: dict[str, Any]) -> RawData:
        folder = Path(root) / FOLDER
        meta = load_batch(folder / "batches.meta")
        class_names = [str(_text(n)) for n in meta["label_names"]]
        images, targets, ids, partition = [], [], [], []
        for part in self.check_partitions(spec):
            for batch in PARTITION_BATCHES[part]:
                data = load_batch(folder / batch)
                try:
                    pixels = np.asarray(data["data"], dtype=np.uint8)
                    target = np.asarray(data["labels"], dtype=np.int64)
                except KeyError as err:
                    raise RawDataInvalid(f"{folder / batch}: CIFAR batch without key {err}") from None
                side = int(round((pixels.shape[1] / 3) ** 0.5)) if pixels.ndim == 2 else 0
                if pixels.ndim != 2 or 3 * side * side != pixels.shape[1] or len(target) != len(pixels):
                    raise RawDataInvalid(f"{folder / batch}: data of shape {pixels.shape} with {len(target)} "
                                         "labels is not a CIFAR batch (rows of 3 x side x side bytes)")
                if target.size and (target.min() < 0 or target.max() >= len(class_names)):
                    raise RawDataInvalid(f"{folder / batch}: labels outside 0..{len(class_names) - 1}")
                images.append(pixels.reshape(-1, 3, side, side).transpose(0, 2, 3, 1))
                targets.append(target)
                ids += [f"{batch}/{i:05d}" for i in range(len(target))]
                partition += [part] * len(target)
        if len({im.shape[1:] for im in images}) > 1:
            raise RawDataInvalid(f"{folder}: batches of different image sizes")
        target = np.concatenate(targets)
        return RawData(np.ascontiguousarray(np.concatenate(images)), one_hot(target, len(class_names)),
                       class_names, ids, "single_label", partition)
