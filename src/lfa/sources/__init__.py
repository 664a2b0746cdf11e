"""Raw-data sources of the paper's datasets, one module each, and the check/download step before prepare.

| source | module | how it arrives |
|---|---|---|
| ``digits`` | :mod:`lfa.sources.digits` | shipped with scikit-learn (the offline demo) |
| ``cifar10`` | :mod:`lfa.sources.cifar` | automatic: the official python archive |
| ``imagenet`` | :mod:`lfa.sources.imagenet` | manual: ILSVRC-2012 in class folders |
| ``idc`` | :mod:`lfa.sources.idc` | Kaggle API when credentials exist, else manual |
| ``cadcap`` | :mod:`lfa.sources.cadcap` | manual: released on request by its authors |
| ``celeba`` | :mod:`lfa.sources.celeba` | automatic from the official mirror when it answers, else manual |
| ``folder`` | :mod:`lfa.sources.folder` | manual: your own images, one sub-folder per class (ImageFolder) |
| ``csv`` | :mod:`lfa.sources.table` | manual: your own images listed in a CSV of paths and labels |
| ``ham10000`` | :mod:`lfa.sources.ham10000` | manual: HAM10000 as released (presets of ``csv``: ``release``) |
| ``isic2019`` | :mod:`lfa.sources.isic2019` | manual: the ISIC 2019 training set as released |
| ``chexpert`` | :mod:`lfa.sources.chexpert` | manual: CheXpert (v1.0-small or v1.0) as released |
| ``chestxray14`` | :mod:`lfa.sources.chestxray14` | manual: NIH ChestX-ray14 as released |

:func:`ensure_raw` is what the ``download_<source>`` rules run: if the raw data is already in its official
layout nothing is downloaded; otherwise an automatic source is fetched, and a manual one fails at once
with where to get it, where to put it and the layout expected. Then the data is checked and a marker
file is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lfa.errors import RawDataInvalid, RawDataMissing

# each module registers its source
from lfa.sources import (  # noqa: F401
    cadcap,
    celeba,
    chestxray14,
    chexpert,
    cifar,
    digits,
    folder,
    ham10000,
    idc,
    imagenet,
    isic2019,
    table,
)
from lfa.sources.base import FileList, RawData, Source, get_source, register_source, source_names

__all__ = ["FileList", "RawData", "RawDataInvalid", "RawDataMissing", "Source", "check_specs", "ensure_raw",
           "get_source", "register_source", "source_names"]


def check_specs(config: dict[str, Any], source: str, downloads: str | Path) -> list[dict[str, Any]]:
    """What the check of ``source`` needs from each dataset using it (and nothing else, so that editing a
    subset does not re-run the check): the checksums flag, the source's own keys (``Source.options``: split
    lists, a table's path and columns, ...) and a class-count CSV (fetched into ``downloads`` when it is a
    URL)."""
    import json

    src = get_source(source)
    out = []
    for name, ds in config["datasets"].items():
        if ds["source"] != source:
            continue
        spec: dict[str, Any] = {"checksums": ds["checksums"], "downloads": str(downloads)}
        if src.root_per_dataset:  # the user's sources: each dataset checked on its own, errors named by it
            spec.update(root=ds.get("root", ""), base=name)  # root "": the source's default folder
            if ds.get("partitions"):
                spec["partitions"] = list(ds["partitions"])
        for key in sorted(src.options):
            if key in ds:
                spec[key] = json.loads(json.dumps(ds[key]))
        subset = ds["subset"]
        if subset.get("counts_csv"):
            spec["subset"] = {k: subset[k] for k in ("counts_csv", "counts_csv_md5") if k in subset}
        if spec not in out:
            out.append(spec)
    return out


def ensure_raw(source: str, root: str | Path, specs: list[dict[str, Any]], marker: str | Path | None = None,
               download: bool = True, log: str | Path | None = None) -> dict[str, Any]:
    """Make sure the raw data of ``source`` is under ``root`` and passes its check; returns the summary.

    ``specs``: the dataset specs using this source (their ``checksums`` flags and per-dataset files such as
    split lists or a class-count CSV URL are checked too). ``download=False`` only checks. With a
    ``marker`` path, a JSON marker is written there on success; with a ``log`` path, the outcome (or the
    error) is appended to it. Progress bars go to stderr.
    """
    try:
        info = _ensure_raw(source, Path(root), specs, marker, download)
    except Exception as err:
        _log(log, f"ERROR: {type(err).__name__}: {err}")
        raise
    _log(log, f"OK: {info}")
    return info


def _log(path: str | Path | None, line: str) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(line + "\n")


def _ensure_raw(source: str, root: Path, specs: list[dict[str, Any]], marker: str | Path | None,
                download: bool) -> dict[str, Any]:
    from lfa.data.download import write_marker
    from lfa.sources.counts import counts_csv_path

    src = get_source(source)
    strict = any(s["checksums"] for s in specs) if specs else True
    downloaded = False
    for s in specs:  # the user's sources: each dataset's own root
        if "root" in s:
            s["root"] = s["root"] or str(root)
    for own in sorted({Path(s["root"]) for s in specs if "root" in s}):
        if not src.present(own):
            raise RawDataMissing(src.missing_message(own))
    if src.needs_raw and not src.root_per_dataset and not src.present(root):
        if src.manual or not download:
            raise RawDataMissing(src.missing_message(root))
        print(f"{src.title}: not found under {root}; downloading", flush=True)
        src.download(root, specs)
        downloaded = True
    summary = src.check(root, specs, strict)
    for spec in specs:  # a class-count CSV given by URL is fetched here, early
        if spec.get("subset", {}).get("counts_csv"):
            counts_csv_path(spec["subset"], spec["downloads"])
    info = {"source": source, "title": src.title, "root": str(root), "downloaded": downloaded,
            "strict": strict, **summary}
    if marker is not None:
        write_marker(marker, info)
    print(f"{src.title}: raw data under {root} checked: {summary}", flush=True)
    return info
