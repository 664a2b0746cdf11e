from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import tiny_config
from sklearn.metrics import roc_auc_score

from lfa.data.augment import apply_augment, draw_augment
from lfa.data.datasets import prepare
from lfa.errors import CheckpointMismatch
from lfa.io import read_parquet_metadata
from lfa.pipeline.config import validate_config
from lfa.pipeline.plan import Job, make_job, prepared_datasets
from lfa.training.checkpoints import load_model_checkpoint, load_state
from lfa.training.train import EXIT_INTERRUPTED, fingerprint, train

LFA = str(Path(sys.executable).with_name("lfa"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A config whose data and results live in a temporary folder, with digits_lt prepared."""
    work = tmp_path_factory.mktemp("train")
    config = tiny_config()
    config["train"]["epochs"] = 4
    config.update(data_dir=str(work / "data"), results_dir=str(work / "results"))
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    config = validate_config(config)
    prepare("digits_lt", prepared_datasets(config)["digits_lt"], "", work / "data/prepared/digits_lt", 5, 0,
            work / "downloads")
    return work


def augment(x: torch.Tensor, ops: list[str], gen: torch.Generator) -> torch.Tensor:
    """Augment a batch with fresh draws from ``gen`` (what training does, in one call)."""
    return apply_augment(x, ops, draw_augment(ops, x.shape[0], x.shape[-1], gen))


def _job(work: Path, loss: str = "fece", fold: int = 0, backbone: str = "small_cnn", **overrides) -> Job:
    config = validate_config(yaml.safe_load((work / "config.yaml").read_text()))
    return make_job(config, "tiny_lt", "digits_lt", backbone, loss, 0, fold, overrides)


def _cli_train(work: Path, out: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LFA_FAULT_AT"}
    if fault:
        env["LFA_FAULT_AT"] = fault
    cmd = [LFA, "train", "--configfile", str(work / "config.yaml"), "--experiment", "tiny_lt",
           "--dataset", "digits_lt", "--backbone", "small_cnn", "--loss", "fece", "--fold", "0",
           "--out", str(work / out)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, timeout=300)


def test_training_learns_and_writes_its_outputs(workdir, tmp_path):
    info = train(_job(workdir, epochs=8), workdir / "data/prepared/digits_lt", tmp_path / "out",
                 tmp_path / "state", show_progress=False)
    pred = pd.read_parquet(tmp_path / "out/predictions.parquet")
    test = pred[pred.split == "test"]
    aucs = [roc_auc_score(test[f"label_{c}"], test[f"score_{c}"]) for c in range(10)]
    assert np.mean(aucs) > 0.9, aucs  # chance is 0.5
    assert set(pred.split) == {"val", "test"}
    assert pred["score_0"].dtype == np.float32
    log = pd.read_csv(tmp_path / "out/train_log.csv")
    assert log["epoch"].tolist() == list(range(1, 9))
    assert log["val_loss"].iloc[-1] < log["val_loss"].iloc[0]
    assert info["best_val_loss"] == pytest.approx(log["val_loss"].min())
    model, meta = load_model_checkpoint(tmp_path / "out/model.pt")
    assert meta["job"]["loss"] == "fece"
    assert sum(p.numel() for p in model.parameters()) > 0


def test_rerun_after_completion_resumes_without_training_again(workdir, tmp_path):
    job = _job(workdir, loss="bce")
    train(job, workdir / "data/prepared/digits_lt", tmp_path / "a", tmp_path / "state", show_progress=False)
    first = pd.read_parquet(tmp_path / "a/predictions.parquet")
    train(job, workdir / "data/prepared/digits_lt", tmp_path / "b", tmp_path / "state", show_progress=False)
    assert first.equals(pd.read_parquet(tmp_path / "b/predictions.parquet"))


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["2:0:SIGKILL", "3:5:SIGKILL"], ids=["between-epochs", "mid-epoch"])
def test_kill_9_then_rerun_resumes_with_identical_results(workdir, fault):
    reference = _cli_train(workdir, "ref")
    assert reference.returncode == 0, reference.stderr
    tag = fault.replace(":", "_")
    killed = _cli_train(workdir, f"killed_{tag}", fault=fault)
    assert killed.returncode == -signal.SIGKILL
    assert not (workdir / f"killed_{tag}/predictions.parquet").exists()
    resumed = _cli_train(workdir, f"killed_{tag}")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from epoch" in resumed.stderr
    a = pd.read_parquet(workdir / "ref/predictions.parquet")
    b = pd.read_parquet(workdir / f"killed_{tag}/predictions.parquet")
    pd.testing.assert_frame_equal(a, b)
    for leftover in (workdir / f"killed_{tag}/.state").iterdir():
        assert not leftover.name.endswith(".tmp")


@pytest.mark.slow
def test_sigterm_saves_state_mid_epoch_and_exits_for_retry(workdir):
    reference = workdir / "ref/predictions.parquet"
    if not reference.exists():
        assert _cli_train(workdir, "ref").returncode == 0
    stopped = _cli_train(workdir, "term", fault="2:4:SIGTERM")
    assert stopped.returncode == EXIT_INTERRUPTED, stopped.stderr
    assert "state saved at epoch 2 step 5" in stopped.stderr
    resumed = _cli_train(workdir, "term")
    assert resumed.returncode == 0
    assert "resuming from epoch 1 step 5" in resumed.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(reference), pd.read_parquet(workdir / "term/predictions.parquet"))


def test_state_of_another_run_is_not_loaded(workdir, tmp_path):
    job = _job(workdir, loss="ece", epochs=1)
    train(job, workdir / "data/prepared/digits_lt", tmp_path / "out", tmp_path / "state", show_progress=False)
    other = _job(workdir, loss="ece", epochs=2)  # another config: a different fingerprint
    meta = {"class_names": [str(c) for c in range(10)], "n_samples": 1}
    assert load_state(tmp_path / "state/last.pt", fingerprint(other, meta)) is None
    train(other, workdir / "data/prepared/digits_lt", tmp_path / "out2", tmp_path / "state", show_progress=False)
    assert len(pd.read_csv(tmp_path / "out2/train_log.csv")) == 2


def test_a_state_made_from_other_data_is_not_resumed(workdir, tmp_path, capfd):
    """A new fold assignment (split_seed) or other pixels: the finished state is not taken for this run."""
    prepared = tmp_path / "digits_lt"
    shutil.copytree(workdir / "data/prepared/digits_lt", prepared)
    job = _job(workdir, loss="bce", epochs=2)
    train(job, prepared, tmp_path / "a", tmp_path / "state", show_progress=False)
    config = validate_config(yaml.safe_load((workdir / "config.yaml").read_text()))
    prepare("digits_lt", prepared_datasets(config)["digits_lt"], "", prepared, 5, 1, tmp_path)  # new folds
    capfd.readouterr()
    info = train(job, prepared, tmp_path / "b", tmp_path / "state", show_progress=False)
    err = capfd.readouterr().err
    assert "it was trained on other data (the prepared dataset changed: content hash" in err and "afresh" in err
    assert "resuming" not in err and info["samples_seen"] > 0 and len(pd.read_csv(tmp_path / "b/train_log.csv")) == 2
    assert info["data_hash"] == json.loads((prepared / "meta.json").read_text())["data_hash"]
    made_from = read_parquet_metadata(tmp_path / "b/predictions.parquet")
    assert (made_from["lfa.data_hash"], made_from["lfa.job_key"]) == (info["data_hash"], job.key)


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_state_is_set_aside_and_training_starts_afresh(workdir, tmp_path, capfd, damage):
    job = _job(workdir, loss="bce", epochs=1)
    prepared = workdir / "data/prepared/digits_lt"
    train(job, prepared, tmp_path / "a", tmp_path / "state", show_progress=False)
    last = tmp_path / "state/last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2] if damage == "truncated" else b"")
    capfd.readouterr()
    info = train(job, prepared, tmp_path / "b", tmp_path / "state", show_progress=False)
    err = capfd.readouterr().err
    assert f"set aside an unreadable resume state ({last}: unreadable" in err and "starting afresh" in err
    assert len(list((tmp_path / "state").glob("last.pt.unreadable-*"))) == 1
    assert info["samples_seen"] > 0 and last.exists()  # trained again, and a new state written
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a/predictions.parquet"),
                                  pd.read_parquet(tmp_path / "b/predictions.parquet"))


def test_model_checkpoint_refuses_foreign_files(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointMismatch, match="not a model checkpoint"):
        load_model_checkpoint(tmp_path / "x.pt")


def test_divergence_stops_with_the_job_named(workdir, tmp_path):
    from lfa.errors import DivergenceError

    job = _job(workdir, loss="bce", lr=1e30, epochs=2)
    with pytest.raises(DivergenceError, match=r"loss became nan at epoch 1 step \d+ \(dataset=digits_lt "
                       r"backbone=small_cnn loss=bce seed=0 fold=0\)"):
        train(job, workdir / "data/prepared/digits_lt", tmp_path / "out", tmp_path / "state", show_progress=False)


def test_augmentations_keep_shape_and_are_seeded():
    x = torch.rand(6, 1, 8, 8)
    ops = ["hflip", "vflip", "rotate180", "crop"]
    a = augment(x, ops, torch.Generator().manual_seed(1))
    b = augment(x, ops, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, augment(x, ops, torch.Generator().manual_seed(2)))


def test_streamed_data_trains_exactly_like_device_resident_data(workdir, tmp_path):
    """device_cache_gb: 0 streams batches from the memory map; on a CPU the results are bit-identical."""
    prepared = workdir / "data/prepared/digits_lt"
    common = {"epochs": 2, "augment": ["hflip", "rotate15", "crop"]}
    a = train(_job(workdir, loss="focal", **common), prepared, tmp_path / "a", tmp_path / "sa", show_progress=False)
    b = train(_job(workdir, loss="focal", device_cache_gb=0, loader_threads=3, **common), prepared,
              tmp_path / "b", tmp_path / "sb", show_progress=False)
    assert (a["data_path"], b["data_path"]) == ("device", "stream")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a/predictions.parquet"),
                                  pd.read_parquet(tmp_path / "b/predictions.parquet"))
    assert b["train_images_per_s"] > 0


def test_streamed_batches_resume_mid_epoch(workdir):
    """The streaming source started at step k yields exactly the batches k.. of a full pass."""
    from lfa.data.batches import StreamingData

    images = np.arange(23 * 2 * 2 * 1, dtype=np.uint8).reshape(23, 2, 2, 1)
    labels = np.eye(23, dtype=np.int8)
    src = StreamingData(images, labels, torch.device("cpu"), threads=2)
    order = np.random.default_rng(0).permutation(23)
    full = [x.clone() for x, _ in src.batches(order, 4, 0, 6)]
    tail = [x.clone() for x, _ in src.batches(order, 4, 3, 6)]
    assert len(full) == 6 and len(tail) == 3
    for x, y in zip(full[3:], tail, strict=True):
        assert torch.equal(x, y)
    assert torch.equal(torch.cat(full)[:, 0, 0, 0], torch.as_tensor(images[order][:, 0, 0, 0]))


def test_crop_draws_one_offset_per_image():
    x = torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16).repeat(64, 3, 1, 1)
    out = augment(x, ["crop"], torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert len({float(v) for v in out[:, 0, 8, 8]}) > 5  # different shifts within one batch
    assert torch.equal(out[:, 0], out[:, 2])  # the same shift for every channel of an image


def test_batcher_resizes_and_augments_at_the_smaller_resolution():
    from lfa.data.batches import Batcher

    images = torch.randint(0, 256, (3, 8, 8, 1), dtype=torch.uint8)
    rotating = Batcher(32, ["rotate180"], channels_last=False)
    assert rotating.augment_side(8) == 8
    up = rotating(images, rotating.draw(3, 8, torch.Generator().manual_seed(0)))
    assert up.shape == (3, 1, 32, 32) and float(up.min()) >= 0 and float(up.max()) <= 1
    down = Batcher(4, [], channels_last=False)(images, None)
    assert down.shape == (3, 1, 4, 4)
    same = Batcher(0, [], channels_last=False)(images, None)
    assert torch.equal(same, images.permute(0, 3, 1, 2).float() / 255)


def test_runtime_settings_do_not_change_the_run_identity(workdir):
    meta = {"class_names": [str(c) for c in range(10)], "n_samples": 1}
    base = fingerprint(_job(workdir), meta)
    same = _job(workdir, threads=2, loader_threads=8, device_cache_gb=0, tensorboard=True)
    assert same.key == _job(workdir).key and fingerprint(same, meta) == base and same.runtime["threads"] == 2
    assert fingerprint(_job(workdir, epochs=3), meta) != base


def test_rotation_is_torchvisions_affine_rotation():
    """The elementwise sampling grid equals affine_grid's for the same rotation matrix."""
    import torch.nn.functional as F

    from lfa.data.augment import _rotate

    x = torch.rand(5, 3, 12, 12)
    angle = torch.tensor([0.0, 0.3, -1.2, 3.0, -3.1])
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros(5)
    theta = torch.stack([cos, -sin, zero, sin, cos, zero], 1).view(5, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    expected = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    torch.testing.assert_close(_rotate(x, angle), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(_rotate(x, torch.zeros(5)), x, atol=1e-6, rtol=0)  # angle 0: the pixel centres


def test_augmenting_a_chunk_equals_augmenting_its_batches():
    """An image's augmentation depends on its own draws only: chunks and batches give identical pixels."""
    from lfa.data.augment import slice_augment

    ops = ["hflip", "vflip", "rotate15", "crop", "rotate180"]
    x = torch.rand(40, 3, 16, 16)
    params = draw_augment(ops, 40, 16, torch.Generator().manual_seed(3))
    whole = apply_augment(x, ops, params)
    parts = [apply_augment(x[a:a + 7], ops, slice_augment(params, a, a + 7)) for a in range(0, 40, 7)]
    assert torch.equal(whole, torch.cat(parts))
    assert not torch.equal(whole, x)


def test_chunk_steps_follow_the_memory_budget():
    from lfa.data.batches import chunk_steps
    from lfa.pipeline.config import train_defaults

    default = train_defaults()["augment_chunk_mb"]
    assert chunk_steps(default, 100, 3, 32) == 54  # 1.2 MB per CIFAR batch in 64 MiB
    assert chunk_steps(default, 100, 3, 256) == 1  # a 79 MB batch is prepared alone
    assert chunk_steps(default, 100, 1, 8) == 64  # the cap
    assert chunk_steps(0, 100, 3, 32) == 1


def test_chunked_batches_train_exactly_like_one_batch_at_a_time(workdir, tmp_path):
    """augment_chunk_mb changes how many steps are prepared at once, never the result (bit-identical)."""
    prepared = workdir / "data/prepared/digits_lt"
    common = {"epochs": 2, "augment": ["hflip", "rotate180", "crop"], "image_size": 12}
    a = train(_job(workdir, loss="asl", **common), prepared, tmp_path / "a", tmp_path / "sa", show_progress=False)
    b = train(_job(workdir, loss="asl", augment_chunk_mb=0, **common), prepared, tmp_path / "b", tmp_path / "sb",
              show_progress=False)
    assert a["fingerprint"] == b["fingerprint"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a/predictions.parquet"),
                                  pd.read_parquet(tmp_path / "b/predictions.parquet"))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a/train_log.csv")[["train_loss", "val_loss"]],
                                  pd.read_csv(tmp_path / "b/train_log.csv")[["train_loss", "val_loss"]])


def test_sigterm_mid_epoch_resumes_the_models_own_random_stream(workdir, tmp_path, monkeypatch):
    """A backbone with dropout draws from torch's global generator: a mid-epoch stop keeps its state."""
    from torch import nn

    from lfa.models import backbone_names, register_backbone
    from lfa.training.train import Interrupted

    if "dropout_cnn_test" not in backbone_names():
        @register_backbone("dropout_cnn_test", "CNN with dropout (test)")
        def dropout_cnn(num_classes: int, in_channels: int = 1, pretrained: bool = False) -> nn.Module:
            return nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.Dropout(0.5),
                                 nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, num_classes))

    prepared = workdir / "data/prepared/digits_lt"
    job = _job(workdir, loss="bce", backbone="dropout_cnn_test", epochs=2, augment=["rotate15"])
    train(job, prepared, tmp_path / "ref", tmp_path / "s_ref", show_progress=False)
    monkeypatch.setenv("LFA_FAULT_AT", "1:3:SIGTERM")
    with pytest.raises(Interrupted, match="state saved at epoch 1 step 4"):
        train(job, prepared, tmp_path / "stop", tmp_path / "s_stop", show_progress=False)
    monkeypatch.delenv("LFA_FAULT_AT")
    state = torch.load(tmp_path / "s_stop/last.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (0, 4) and set(state["rng"]) == {"cpu"}
    train(job, prepared, tmp_path / "stop", tmp_path / "s_stop", show_progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ref/predictions.parquet"),
                                  pd.read_parquet(tmp_path / "stop/predictions.parquet"))


@pytest.mark.slow
def test_compiled_step_trains_the_same_model_as_the_eager_one(workdir, tmp_path):
    """compile: reduce-overhead (CUDA graphs on a GPU; inductor's C++ kernels on this CPU) trains the same model.

    With SGD: Adam's first steps move every weight by about lr whatever the size of its gradient, which
    turns the compiled kernels' rounding differences (1e-7) into differences of lr.
    """
    prepared = workdir / "data/prepared/digits_lt"
    common = {"epochs": 2, "augment": ["rotate15"], "optimizer": "sgd", "lr": 0.05, "momentum": 0.9}
    train(_job(workdir, loss="bce", **common), prepared, tmp_path / "eager", tmp_path / "se", show_progress=False)
    info = train(_job(workdir, loss="bce", compile="reduce-overhead", **common), prepared, tmp_path / "compiled",
                 tmp_path / "sc", show_progress=False)
    assert info["job"]["settings"]["compile"] == "reduce-overhead"
    a = pd.read_parquet(tmp_path / "eager/predictions.parquet")
    b = pd.read_parquet(tmp_path / "compiled/predictions.parquet")
    scores = [c for c in a.columns if c.startswith("score_")]
    np.testing.assert_allclose(a[scores].to_numpy(), b[scores].to_numpy(), atol=1e-3)  # measured: 1.7e-4
    assert not np.allclose(a[scores].to_numpy(), a[scores].to_numpy().mean())  # a trained model, not a constant


def test_tensorboard_event_files_hold_each_epochs_losses(workdir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = tmp_path / "board"
    train(_job(workdir, loss="bce", epochs=3, tensorboard=True), workdir / "data/prepared/digits_lt",
          tmp_path / "out", tmp_path / "state", show_progress=False, board_dir=board)
    events = EventAccumulator(str(board))
    events.Reload()
    log = pd.read_csv(tmp_path / "out/train_log.csv")
    for tag, column in (("loss/train", "train_loss"), ("loss/validation", "val_loss"), ("learning_rate", "lr")):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2, 3]
        assert np.allclose([s.value for s in scalars], log[column], rtol=1e-6)  # stored as float32
    assert len(events.Scalars("images_per_second")) == 3
