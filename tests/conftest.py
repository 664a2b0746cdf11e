"""Shared fixtures: a finished run of the tiny config, and one of the four public releases' stand-ins; the ``slow``
marker on every test that needs either.

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


@pytest.fixture(scope="session")
def releases_run(tmp_path_factory) -> Path:
    """HAM10000, ISIC 2019 (also with an empty class allowed), CheXpert and ChestX-ray14 (with their official test
    splits) built in their released layouts and run, each from a config block of at most three keys, to the
    report (one loss, three folds)."""
    import yaml
    from release_data import chestxray14, chexpert, ham10000, isic2019

    work = tmp_path_factory.mktemp("releases")
    builders = {"ham10000": ham10000, "isic2019": isic2019, "chexpert": chexpert, "chestxray14": chestxray14}
    roots = {name: str(build(work / "raw" / name).root) for name, build in builders.items()}
    datasets = {"ham": {"source": "ham10000", "root": roots["ham10000"]},
                "isic": {"source": "isic2019", "root": roots["isic2019"]},
                "isic_unk": {"source": "isic2019", "root": roots["isic2019"], "drop_classes": ["SCC"],
                             "allow_empty_classes": True},
                "chexpert": {"source": "chexpert", "root": roots["chexpert"], "test_split": "official"},
                "cxr14": {"source": "chestxray14", "root": roots["chestxray14"], "test_split": "official"}}
    config = {"folds": [0, 1, 2], "n_splits": 3,
              "train": {"device": "cpu", "epochs": 1, "batch_size": 16, "image_size": 16},
              "datasets": datasets,
              "experiments": {name: {"dataset": name, "backbones": ["small_cnn"], "losses": ["fece"]}
                              for name in datasets}}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(work, configfile=work / "config.yaml")
    return work


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that reads a workflow run (a real Snakemake workflow) is slow, however it is written."""
    for item in items:
        if {"tiny_run", "releases_run"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
