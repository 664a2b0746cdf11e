"""Shared fixtures: a finished run of the tiny config."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import TINY, run_snakemake


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A complete run of the tiny config (all stages), shared by the tests that read its outputs."""
    work = tmp_path_factory.mktemp("tiny_run")
    shutil.copy(TINY, work / "config.yaml")
    run_snakemake(work, configfile=work / "config.yaml")
    return work
