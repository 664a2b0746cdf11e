"""Helpers shared by the tests: repository paths, the tiny config, running the real Snakemake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def run_snakemake(workdir: Path, *args: str, configfile: Path = TINY, check: bool = True,
                  timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real Snakemake on this repository's Snakefile, in ``workdir``."""
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile",
           str(configfile), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def tiny_config() -> dict:
    return yaml.safe_load(TINY.read_text())


def dataset_spec(ds: dict, name: str = "d", ratio_k: int | None = None) -> dict:
    """The spec ``lfa.data.datasets.prepare`` gets for a dataset config block: schema defaults filled, as the
    workflow passes it (lfa.pipeline.plan.prepared_datasets)."""
    from lfa.pipeline.config import validate_config
    from lfa.pipeline.plan import prepared_datasets, ratio_dataset

    config = validate_config({"datasets": {name: dict(ds)},
                              "experiments": {"e": {"dataset": name, "backbones": ["small_cnn"], "losses": ["bce"]}}})
    return prepared_datasets(config)[ratio_dataset(name, ratio_k) if ratio_k is not None else name]


def same_file(made: Path, expected: Path) -> None:
    """Two Parquet files hold the same frame and the same lfa.* file metadata (what one stage wrote two ways)."""
    import pandas as pd

    from lfa.io import read_parquet_metadata

    pd.testing.assert_frame_equal(pd.read_parquet(made), pd.read_parquet(expected))
    assert read_parquet_metadata(made) == read_parquet_metadata(expected)
