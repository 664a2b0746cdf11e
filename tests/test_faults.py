"""Faults and bad input, each provoked for real: what the user sees, and what is left on disk.

The full matrix, with the tests of each row that live beside the code they exercise, is docs/faults.md.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from helpers import REPO, SNAKEMAKE, run_snakemake, tiny_config

from lfa.errors import CheckpointMismatch
from lfa.io import atomic_torch_save, write_parquet
from lfa.models import build_model
from lfa.training.checkpoints import load_init


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c["experiments"]["tiny_lt"].update(losses=["bce", "fecee"]),
         ["experiments.tiny_lt.losses: unknown loss 'fecee'", "known losses: asl, asl_original, bce"]),
        (lambda c: c["experiments"]["tiny_lt"].update(backbones=["resnet5O"]),
         ["experiments.tiny_lt.backbones: unknown backbone 'resnet5O'", "known backbones:"]),
        (lambda c: c["experiments"]["tiny_lt"].update(dataset="digit_lt"),
         ["experiments.tiny_lt.dataset: unknown dataset 'digit_lt'", "known datasets: digits_binary, digits_lt"]),
        (lambda c: c["train"].update(epochs=-1), ["epochs", "-1 is less than the minimum of 1"]),
        (lambda c: c["train"].update(lr="fast"), ["lr", "'fast' is not of type 'number'"]),
        (lambda c: c.update(folds=[0]), ["folds", "[0] is too short"]),
        (lambda c: c["experiments"]["tiny_ratio"].update(ratios=[50, 7]),
         ["experiments.tiny_ratio.ratios: [7] not among the ratios"]),
    ],
    ids=["loss", "backbone", "dataset", "epochs", "lr", "folds", "ratio"],
)
@pytest.mark.slow
def test_bad_config_stops_the_workflow_before_any_job(tmp_path, edit, expected):
    config = tiny_config()
    edit(config)
    proc = run_snakemake(tmp_path, configfile=_write(tmp_path, config), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for text in expected:
        assert text in out, out[-3000:]
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


@pytest.fixture
def tiny_fs(tmp_path):
    """A real 1 MiB tmpfs: writes past its size fail with ENOSPC, as on a full disk."""
    mount = tmp_path / f"full-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip()}); see test_aggregate for ENOSPC")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(tiny_fs):
    target = tiny_fs / "last.pt"
    atomic_torch_save({"epoch": 3, "w": torch.zeros(1000)}, target)
    before = target.read_bytes()
    with pytest.raises(OSError) as err:
        atomic_torch_save({"epoch": 4, "w": torch.zeros(2_000_000)}, target)  # 8 MB > 1 MiB
    assert err.value.errno == errno.ENOSPC or "No space left" in str(err.value)
    assert target.read_bytes() == before
    assert torch.load(target, weights_only=True)["epoch"] == 3
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["last.pt"]  # no temporary file left behind


def test_disk_full_while_writing_parquet_keeps_the_previous_file(tiny_fs):
    target = tiny_fs / "metrics.parquet"
    write_parquet(pd.DataFrame({"x": range(10)}), target, {"lfa.version": "old"})
    before = target.read_bytes()
    big = pd.DataFrame({"x": [os.urandom(64).hex() for _ in range(40_000)]})  # ~5 MB of incompressible text
    with pytest.raises(OSError):
        write_parquet(big, target, {"lfa.version": "new"})
    assert target.read_bytes() == before
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["metrics.parquet"]


def test_checkpoint_of_another_backbone_or_class_count_is_refused(tmp_path):
    other = build_model("small_cnn", num_classes=10, in_channels=1)
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(CheckpointMismatch, match=r"other\.pt: does not fit this backbone: \d+ of \d+ tensors missing"):
        load_init(build_model("resnet50", num_classes=2, in_channels=3), tmp_path / "other.pt")
    # The same architecture with another head (class count) loads: the head is left at its initialisation.
    target = build_model("small_cnn", num_classes=3, in_channels=1)
    load_init(target, tmp_path / "other.pt")
    assert torch.equal(target.state_dict()["body.0.weight"], other.state_dict()["body.0.weight"])


def test_checkpoints_are_never_unpickled(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        load_init(build_model("small_cnn", num_classes=2, in_channels=1), tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_a_second_snakemake_in_the_same_directory_is_refused_by_the_lock(tmp_path):
    config = tiny_config()
    config["experiments"] = {"tiny_lt": {**config["experiments"]["tiny_lt"], "losses": ["bce"]}}
    path = _write(tmp_path, config)
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile", str(path),
           "--cores", "1"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not any((tmp_path / ".snakemake" / "locks").glob("*")) and time.time() < deadline:
            time.sleep(0.2)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert "Directory cannot be locked" in second.stdout + second.stderr
    finally:
        out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out[-3000:]
    summary = pd.read_parquet(tmp_path / "results/summary.parquet")
    assert set(summary["loss"]) == {"bce"} and (tmp_path / "reports/report.html").exists()


@pytest.mark.slow
def test_divergence_recorded_instead_of_stopping_marks_the_report(tmp_path):
    config = tiny_config()
    config["train"].update(epochs=1, on_divergence="record")
    config["experiments"] = {"tiny_lt": {**config["experiments"]["tiny_lt"], "losses": ["bce", "fece"],
                                         "train": {"lr": 1.0e30}}}  # diverges at once
    run_snakemake(tmp_path, configfile=_write(tmp_path, config))
    info = next((tmp_path / "results/runs/digits_lt/small_cnn/bce").glob("*/s0_f0/train_info.json")).read_text()
    assert "loss became nan at epoch 1" in info
    metrics = pd.read_parquet(tmp_path / "results/metrics.parquet")
    assert metrics["diverged"].all() and metrics["auc"].isna().all()
    html = (tmp_path / "reports/report.html").read_text()
    assert "diverged in 3 of 3 runs" in html


@pytest.mark.parametrize("name", ["meta.json", "index.parquet", "images.npy"])
def test_a_damaged_prepared_file_is_named_with_what_to_do(tmp_path, name):
    from helpers import dataset_spec

    from lfa.data.datasets import load_prepared, prepare
    from lfa.errors import UnreadableFile

    spec = dataset_spec({"source": "digits", "subset": {"kind": "long_tail", "reference": "cifar10_lt"}})
    out = prepare("digits_lt", spec, "", tmp_path / "digits_lt", 5, 0, tmp_path)
    (out / name).write_bytes((out / name).read_bytes()[:40])  # truncated, as by a full disk or a bad copy
    with pytest.raises(UnreadableFile, match=rf"{out / name}: unreadable \(.*\); delete {out} and rerun"):
        load_prepared(out)


def test_a_damaged_predictions_file_is_named(tmp_path):
    from lfa.errors import UnreadableFile
    from lfa.evaluation.evaluate import read_predictions

    (tmp_path / "predictions.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(UnreadableFile, match=r"predictions\.parquet: unreadable \(.*\); train the job again"):
        read_predictions(tmp_path / "predictions.parquet")
