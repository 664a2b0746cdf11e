"""Provenance checked on use: a prepared dataset edited in place is never mistaken for the data a run saw."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import tiny_config

from lfa.data.datasets import content_hash, file_stamps, prepare, verify_prepared
from lfa.errors import PredictionsMismatch
from lfa.evaluation.evaluate import evaluate_run
from lfa.io import read_json, read_parquet_metadata, read_table
from lfa.pipeline.config import validate_config
from lfa.pipeline.plan import make_job, prepared_datasets
from lfa.training.train import train


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    config = validate_config(tiny_config())
    folder = tmp_path_factory.mktemp("prov") / "digits_lt"
    prepare("digits_lt", prepared_datasets(config)["digits_lt"], "", folder, 5, 0, folder.parent / "dl")
    return folder


def _copy(prepared: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "digits_lt"
    shutil.copytree(prepared, folder)  # copy2 keeps the mtimes: the stamps still hold
    return folder


def _mirror_in_place(folder: Path) -> None:
    """Every image mirrored, written into the same file: same shape and size, new content and mtime."""
    images = np.load(folder / "images.npy", mmap_mode="r+")
    images[:] = images[:, :, ::-1].copy()
    images.flush()
    del images


def test_prepare_records_a_stat_stamp_of_each_hashed_file(prepared):
    meta = read_json(prepared / "meta.json")
    assert meta["stamps"] == file_stamps(prepared)
    assert set(meta["stamps"]) == {"images.npy", "index.parquet"}
    assert meta["stamps"]["images.npy"]["size"] == os.path.getsize(prepared / "images.npy")
    assert verify_prepared(prepared).data_hash == meta["data_hash"] and not verify_prepared(prepared).changed


def test_a_touched_file_is_hashed_again_and_trusted(prepared, tmp_path):
    folder = _copy(prepared, tmp_path)
    os.utime(folder / "images.npy", ns=(1, 1))  # new stamp, same content
    check = verify_prepared(folder)
    assert check.data_hash == read_json(folder / "meta.json")["data_hash"] and check.changed == ""


def test_an_edit_in_place_is_found_and_named(prepared, tmp_path):
    folder = _copy(prepared, tmp_path)
    _mirror_in_place(folder)
    check = verify_prepared(folder)
    recorded = read_json(folder / "meta.json")["data_hash"]
    expected = content_hash(folder / "images.npy", read_table(folder / "index.parquet"),
                            read_json(folder / "meta.json")["class_names"])
    assert check.data_hash == expected != recorded
    assert check.changed == (f"{folder}: images.npy changed after the dataset was prepared (content hash now "
                             f"{expected}, meta.json records {recorded})")


@pytest.mark.slow
def test_an_edit_in_place_trains_afresh_says_why_and_refuses_old_predictions(prepared, tmp_path, capsys):
    folder = _copy(prepared, tmp_path)
    job = make_job(validate_config(tiny_config()), "tiny_lt", "digits_lt", "small_cnn", "fece", 0, 0, {"epochs": 2})
    train(job, folder, tmp_path / "old", tmp_path / "state", show_progress=False)
    _mirror_in_place(folder)
    with pytest.raises(PredictionsMismatch, match="the data changed after training; train the job again"):
        evaluate_run(tmp_path / "old/predictions.parquet", tmp_path / "m.parquet", folder)
    capsys.readouterr()
    train(job, folder, tmp_path / "rerun", tmp_path / "state", show_progress=False)  # the state of the old data
    log = capsys.readouterr().err
    assert "images.npy changed after the dataset was prepared" in log
    assert "it was trained on other data" in log and "starting afresh" in log and "resuming" not in log
    fresh = tmp_path / "fresh_data"
    shutil.copytree(folder, fresh)
    train(job, fresh, tmp_path / "fresh", tmp_path / "fresh_state", show_progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "rerun/predictions.parquet"),
                                  pd.read_parquet(tmp_path / "fresh/predictions.parquet"))
    made_from = read_parquet_metadata(tmp_path / "rerun/predictions.parquet")["lfa.data_hash"]
    assert made_from == verify_prepared(folder).data_hash
    metrics = evaluate_run(tmp_path / "rerun/predictions.parquet", tmp_path / "m.parquet", folder)
    assert read_parquet_metadata(tmp_path / "m.parquet")["lfa.data_hash"] == made_from and len(metrics) == 10


@pytest.mark.slow
def test_the_report_refuses_runs_of_data_edited_after_evaluation(tiny_run, tmp_path):
    from lfa.errors import MixedResults
    from lfa.pipeline.stages import report_stage

    work = tmp_path / "w"
    shutil.copytree(tiny_run, work, ignore=shutil.ignore_patterns(".snakemake"))
    _mirror_in_place(work / "data/prepared/digits_lt")
    config = validate_config({**tiny_config(), "data_dir": str(work / "data"), "results_dir": str(work / "results"),
                              "reports_dir": str(work / "reports"), "logs_dir": str(work / "logs")})
    with pytest.raises(MixedResults, match=r"6 run\(s\) were evaluated on other data than the prepared datasets "
                                           r"as they are now \(e\.g\. .*digits_lt/"):
        report_stage(config, ["config.yaml"], work / "r.html")
