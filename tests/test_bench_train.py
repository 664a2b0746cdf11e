"""benchmarks/bench_train.py: its loops run and measure the same model on the same data (tiny sizes)."""

from __future__ import annotations

import sys

import torch
from helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_train  # noqa: E402


def test_both_loops_and_the_upper_bound_measure_images_per_second(tmp_path):
    images, labels = bench_train.digits()
    images, labels = images[:300], labels[:300]
    prepared = bench_train.write_prepared(tmp_path / "digits", images, labels)
    settings = bench_train.protocol(epochs=2, device="cpu", image_size=16)
    ours = bench_train.run_ours(prepared, "small_cnn", settings, tmp_path)
    assert ours["images_per_s"] > 0 and ours["data_path"] == "device"
    seed = bench_train.run_seed_style(images, labels, "small_cnn", 16, 50, torch.device("cpu"), workers=0,
                                      steps=2, warmup=1)
    assert seed["images_per_s"] > 0
    bound = bench_train.upper_bound("small_cnn", 16, 50, 10, torch.device("cpu"), steps=2, warmup=1, channels=1)
    assert bound["train_images_per_s"] > 0 and bound["eval_images_per_s"] > 0


def test_markdown_summary_of_a_gpu_check():
    case = {"backbone": "resnet50", "size": 224, "packed": 128,
            "upper_bound": {"train_images_per_s": 100.0},
            **{k: {"images_per_s": 90.0, "ratio_to_upper_bound": 0.9, "peak_gpu_memory_gb": 1.0}
               for k in ("ours_device", "ours_stream", "seed_style")}}
    text = bench_train.markdown({"card": "X", "torch": "2", "cases": [case], "concurrent": [],
                                 "table": [{"backbone": "botnet", "size": 256, "error": "RuntimeError('x')"}]})
    assert "| resnet50 | 224 (128) | 100 | 90 (0.90) | (not run) | (not run) | 90 (0.90) | 90 (0.90) |" in text
    assert "| botnet | 256 | failed: RuntimeError('x')" in text


def test_chunked_data_path_dispatches_a_fraction_of_the_step_by_step_operations():
    """What keeps a launch-bound GPU job at the bare step's speed, counted on the CPU."""
    ops = bench_train.ops_per_step("cifar_resnet20", 16, 3, 50, ["hflip", "rotate180"], n_images=1000)
    assert ops["model"] > 100  # forward, loss, backward, fused optimizer
    assert ops["data, one step at a time"] > 10
    assert ops["data, chunked"] <= ops["data, one step at a time"] / 10  # 20 steps in one chunk
