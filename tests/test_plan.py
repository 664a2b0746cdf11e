"""lfa.pipeline.plan: a job's identity, the plan of a config (identical jobs once), the layout of every path."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import REPO, tiny_config

from lfa.pipeline.config import train_defaults, validate_config
from lfa.pipeline.plan import RUN_OUTPUTS, Layout, TrainSettings, make_job, plan


def _config(**experiments) -> dict:
    config = tiny_config()
    config["experiments"].update(experiments)
    return validate_config(config)


def test_the_key_is_what_shapes_the_result_and_nothing_else():
    config = validate_config(tiny_config())
    base = make_job(config, "tiny_lt", "digits_lt", "small_cnn", "fece", 0, 0)
    fast = make_job(config, "tiny_lt", "digits_lt", "small_cnn", "fece", 0, 0,
                    {"threads": 2, "loader_threads": 8, "device_cache_gb": 0, "augment_chunk_mb": 0})
    assert fast.key == base.key and fast.path == base.path and fast == base and fast.runtime != base.runtime
    for change in ({"epochs": 3}, {"lr": 1e-2}, {"augment": ["hflip"]}):
        other = make_job(config, "tiny_lt", "digits_lt", "small_cnn", "fece", 0, 0, change)
        assert other.key != base.key and other.settings_key != base.settings_key
    assert make_job(config, "tiny_lt", "digits_lt", "small_cnn", "fece", 1, 0).key != base.key
    other = validate_config({**tiny_config(), "loss_params": {"fece": {"gamma": 1.0}}})
    changed = make_job(other, "tiny_lt", "digits_lt", "small_cnn", "fece", 0, 0)
    assert changed.key != base.key and changed.loss_params == {"gamma": 1.0}
    assert make_job(other, "tiny_lt", "digits_lt", "small_cnn", "bce", 0, 0).loss_params == {}
    assert base.path == f"digits_lt/small_cnn/fece/{base.settings_key}/s0_f0"


def test_identical_jobs_of_two_experiments_are_one_job_and_one_folder():
    again = {"dataset": "digits_binary", "ratios": [50], "backbones": ["small_cnn"], "losses": ["bce"]}
    slower = {**again, "train": {"threads": 2}}  # a runtime knob: still the same jobs
    longer = {**again, "train": {"epochs": 3}}  # another setting: its own folders, side by side
    the_plan = plan(_config(again=again, slower=slower, longer=longer))
    per_exp = {name: len(jobs) for name, jobs in the_plan.experiments.items()}
    assert per_exp == {"tiny_lt": 6, "tiny_ratio": 12, "again": 3, "slower": 3, "longer": 3}
    assert len(the_plan.jobs) == 6 + 12 + 3  # again and slower reuse tiny_ratio's bce jobs at k50
    assert set(the_plan.experiments["again"]) < set(the_plan.experiments["tiny_ratio"])
    first = the_plan.trained_by()
    assert {first[j.key] for j in the_plan.experiments["again"]} == {"tiny_ratio"}  # all shared
    assert {first[j.key] for j in the_plan.experiments["longer"]} == {"longer"}  # none shared
    first, long_ = the_plan.experiments["again"][0], the_plan.experiments["longer"][0]
    assert first.path.rsplit("/", 2)[0] == long_.path.rsplit("/", 2)[0] and first.path != long_.path
    assert the_plan.job(first.path) == first and the_plan.trained_by()[first.key] == "tiny_ratio"


def test_the_layout_builds_every_path_from_the_four_folders(tmp_path):
    config = validate_config({**tiny_config(), "data_dir": str(tmp_path / "d"), "results_dir": str(tmp_path / "r"),
                              "reports_dir": str(tmp_path / "p"), "logs_dir": str(tmp_path / "l")})
    layout, job = Layout.from_config(config), plan(config).jobs[0]
    assert layout.prepared_file("digits_lt", "meta.json") == tmp_path / "d/prepared/digits_lt/meta.json"
    assert layout.raw("cifar10") == tmp_path / "d/raw/cifar10"
    assert layout.run_file(job, "model.pt") == tmp_path / "r/runs" / job.path / "model.pt"
    assert layout.state(job) == tmp_path / "r/state" / job.path
    assert layout.manual(job) == tmp_path / "r/manual" / job.path
    assert layout.log("train", job.path) == tmp_path / f"l/train/{job.path}.log"
    assert layout.aggregate("summary") == tmp_path / "r/summary.parquet"
    assert layout.table("tiny_lt", "tex") == tmp_path / "r/tables/tiny_lt.tex"
    assert layout.report == tmp_path / "p/report.html"
    assert layout.run("{run}") == tmp_path / "r/runs/{run}"  # a Snakemake pattern
    rooted = validate_config({**tiny_config(), "datasets": {
        **tiny_config()["datasets"], "c": {"source": "cifar10", "root": "/shared/cifar"}}})
    assert Layout.from_config(rooted).raw("cifar10").as_posix() == "/shared/cifar"


def test_runs_of_the_layout_before_job_keys_are_found(tmp_path):
    config = validate_config({**tiny_config(), "results_dir": str(tmp_path / "r")})
    layout, job = Layout.from_config(config), plan(config).jobs[0]
    layout.run(job).mkdir(parents=True)
    assert layout.legacy_runs() == []
    old = tmp_path / "r/runs/tiny_lt/digits_lt/small_cnn/bce/s0_f0"
    old.mkdir(parents=True)
    assert layout.legacy_runs() == [old]


def test_the_plan_never_imports_torch():
    """Evaluation, aggregation and the report expand the plan; a torch import would cost each job seconds."""
    import subprocess
    import sys

    code = ("import sys, yaml; from lfa.pipeline.plan import plan, Layout; from lfa.report import build_context; "
            "from lfa.evaluation.aggregate import runs_table; config = yaml.safe_load(open(sys.argv[1])); "
            "from snakemake.utils import validate; validate(config, sys.argv[2]); "
            "runs_table(plan(config)); assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code, str(REPO / "config.yaml"),
                           str(REPO / "schemas/config.schema.yaml")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_schema_defaults_are_the_values_a_job_trains_with(tmp_path):
    """One source of defaults: what a job leaves unsaid is the schema's default, down to the optimizer's
    hyper-parameters in effect (read back from the real objects through train_info.json)."""
    from lfa.data.datasets import prepare
    from lfa.training.train import train

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["train"] = {"device": "cpu", "epochs": 1}  # everything else from the schema
    config = validate_config(config)
    defaults = train_defaults()
    job = plan(config).experiments["demo_lt"][0]
    assert job.train_settings() == TrainSettings.from_mapping({**defaults, "device": "cpu", "epochs": 1})
    layout = Layout.from_config({**config, "data_dir": str(tmp_path / "data")})
    prepare(job.dataset, {**config["datasets"][job.dataset], "base": job.dataset, "ratio_k": None}, "",
            layout.prepared(job.dataset), config["n_splits"], config["split_seed"], layout.downloads)
    info = train(job, layout.prepared(job.dataset), tmp_path / "out", tmp_path / "state", show_progress=False)
    assert info["optimizer"] == {"type": defaults["optimizer"], "lr": defaults["lr"],
                                 "weight_decay": defaults["weight_decay"], "betas": defaults["betas"]}
    assert info["scheduler"] == {"step_size": defaults["lr_step_epochs"], "gamma": defaults["lr_gamma"]}
    recorded = info["job"]["settings"]  # what the job ran with, as train_info.json says
    assert {k: recorded[k] for k in ("batch_size", "augment", "amp", "channels_last", "compile", "image_size")} \
        == {k: defaults[k] for k in ("batch_size", "augment", "amp", "channels_last", "compile", "image_size")}
    assert info["data_path"] == "device" and info["input_size"] == 8  # device_cache_gb 16, image_size 0
    written = json.loads((tmp_path / "out/train_info.json").read_text())
    assert written["key"] == job.key and all((tmp_path / "out" / n).exists() for n in RUN_OUTPUTS)


@pytest.mark.parametrize("configfile", ["config.yaml", "configs/paper.yaml"])
def test_every_job_path_is_unique_and_parses_back(configfile):
    config = validate_config(yaml.safe_load((REPO / configfile).read_text()))
    the_plan = plan(config)
    assert len({j.path for j in the_plan.jobs}) == len(the_plan.jobs)
    assert all(the_plan.job(j.path) == j for j in the_plan.jobs)


def test_a_number_written_as_int_or_float_is_one_setting():
    config = validate_config(tiny_config())
    one = make_job(config, "tiny_lt", "digits_lt", "small_cnn", "fece", 0, 0, {"lr": 1, "weight_decay": 0})
    other = make_job(config, "tiny_lt", "digits_lt", "small_cnn", "fece", 0, 0, {"lr": 1.0, "weight_decay": 0.0})
    assert one == other and one.key == other.key and one.path == other.path


def test_train_settings_hold_exactly_the_schemas_train_keys():
    """The typed settings and the schema cannot drift apart: one field per key of ``$defs.train``, and the
    schema's defaults build it."""
    import dataclasses

    assert [f.name for f in dataclasses.fields(TrainSettings)] == list(train_defaults())
    settings = TrainSettings.from_mapping(train_defaults())
    assert settings.betas == tuple(train_defaults()["betas"]) and isinstance(settings.lr, float)
