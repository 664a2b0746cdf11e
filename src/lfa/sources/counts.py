"""Class-count tables given by the user (``subset.counts_csv``): reading one, and fetching one given by URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lfa.errors import ConfigError, RawDataInvalid
from lfa.io import read_csv


def read_counts_csv(path: str | Path) -> pd.DataFrame:
    """A class-count CSV (columns Class and Count, any case; also Label/Name and Quantity) as class, count."""
    table = read_csv(path, "fix the file or subset.counts_csv", thousands=",", skipinitialspace=True)
    columns = {c.strip().lower(): c for c in table.columns}
    cls = next((columns[c] for c in ("class", "label", "name") if c in columns), None)
    cnt = next((columns[c] for c in ("count", "quantity", "n") if c in columns), None)
    if cls is None or cnt is None:
        raise ConfigError(f"{path}: a class-count CSV needs the columns Class and Count; it has {list(table.columns)}")
    out = pd.DataFrame({"class": table[cls].astype(str).str.strip(), "count": pd.to_numeric(table[cnt])})
    if out["count"].isna().any() or (out["count"] < 0).any() or (out["count"] % 1 != 0).any():
        raise ConfigError(f"{path}: counts must be non-negative integers")
    if out["class"].duplicated().any():
        raise ConfigError(f"{path}: classes listed twice: {sorted(out['class'][out['class'].duplicated()])[:5]}")
    return out.assign(count=out["count"].astype(np.int64))


def counts_csv_path(subset: dict[str, Any], downloads: str | Path) -> Path:
    """The local file of ``subset.counts_csv``: the path itself, or the URL's download (checksum verified).

    A URL is fetched once into ``<downloads>/<md5>-<file name>`` (``Layout.downloads``; official HTTPS hosts
    only, ``subset.counts_csv_md5`` required).
    """
    from urllib.parse import urlsplit

    from lfa.data.download import fetch, is_url, md5sum

    where, md5 = str(subset["counts_csv"]), subset.get("counts_csv_md5")
    if is_url(where):
        if not md5:
            raise ConfigError(f"subset.counts_csv is a URL ({where}); subset.counts_csv_md5 must give its MD5")
        name = Path(urlsplit(where).path).name or "counts.csv"
        return fetch(where, Path(downloads) / f"{md5}-{name}", md5, desc=name)
    path = Path(where)
    if not path.is_file():
        raise ConfigError(f"subset.counts_csv: {path} not found")
    if md5 and md5sum(path) != md5:
        raise RawDataInvalid(f"{path}: md5 {md5sum(path)}, expected {md5} (subset.counts_csv_md5)")
    return path
