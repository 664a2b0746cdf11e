"""Shared fixtures: a finished run of the tiny config; the ``slow`` marker on every test that needs it.

Tiers (README, "Tests and benchmarks"): ``pytest -m "not slow"`` runs no Snakemake workflow (the fast tier,
for the edit-test loop); ``pytest`` runs everything.
"""

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that reads the tiny run (a real Snakemake workflow) is slow, however it is written."""
    for item in items:
        if "tiny_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
