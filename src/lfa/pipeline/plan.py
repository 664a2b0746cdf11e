"""The unit of work and where its files live: :class:`Job`, :class:`Layout` and the :class:`Plan` of a config.

A **job** is one training run, identified by what shapes its result: the prepared dataset, the backbone,
the loss and the hyper-parameters the config gives it, the seed, the fold and the train settings that change what
is computed. Runtime knobs (threads, the data path) ride along but are not part of its identity.
``Job.key`` hashes that identity: it is the resume fingerprint of the job's checkpoints, the rule's
``params`` (a change reruns the job) and what makes two experiments' jobs one (Table 5's 1:4 block is
Table 4's ResNet-50 block: trained once, its folder used by both tables).

A **layout** builds every path of a run from the four folders of the config — raw, prepared, runs,
states, logs, aggregated Parquet, tables, the report — so that the rules, the scripts, the CLI,
``lfa estimate`` and the report agree on them by construction::

    <data_dir>/raw/<source>/                      raw data (or datasets.<name>.root)
    <data_dir>/prepared/<dataset>/                index.parquet, images.npy, counts.csv, meta.json
    <results_dir>/runs/<job.path>/                model.pt, train_log.csv, train_info.json,
                                                  predictions.parquet, metrics.parquet
    <results_dir>/state/<job.path>/               last.pt, best.pt (resume state; not a rule output)
    <results_dir>/{metrics,summary,per_class,comparisons,runs}.parquet
    <results_dir>/tables/<experiment>.{csv,tex}
    <reports_dir>/report.html, <reports_dir>/figures/
    <logs_dir>/<stage>/<...>.log

``job.path`` is ``<dataset>/<backbone>/<loss>/<settings key>/s<seed>_f<fold>``: readable, and the same for
every experiment that runs the job. The settings key is 8 hex digits of the job's train settings and loss
hyper-parameters, so two experiments that train one cell differently get two folders side by side.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

#: Train settings that change how fast a job runs, never what it computes: not part of a job's identity (its
#: key, resume fingerprint and rule params), so changing them neither retrains nor discards a resume state.
RUNTIME_KEYS = ("threads", "loader_threads", "device_cache_gb", "augment_chunk_mb", "tensorboard")

#: The files of each stage, in the order the rules list them.
PREPARED_FILES = ("index.parquet", "images.npy", "counts.csv", "meta.json")
RUN_OUTPUTS = ("model.pt", "train_log.csv", "train_info.json", "predictions.parquet")
AGGREGATES = ("metrics", "summary", "per_class", "comparisons", "overall")


def _numbers_as_floats(obj: Any) -> Any:
    """``lr: 1`` and ``lr: 1.0`` are one setting: the identity hashes every number as a float."""
    if isinstance(obj, bool) or not isinstance(obj, int | float | dict | list | tuple):
        return obj
    if isinstance(obj, int | float):
        return float(obj)
    if isinstance(obj, dict):
        return {k: _numbers_as_floats(v) for k, v in obj.items()}
    return [_numbers_as_floats(v) for v in obj]


def _digest(obj: Any, n: int) -> str:
    blob = json.dumps(_numbers_as_floats(obj), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


@dataclass(frozen=True)
class TrainSettings:
    """Every train setting a job runs with, typed. The values (defaults included) come from the validated
    config: the schema's ``$defs.train`` holds the defaults, and its keys are exactly these fields (tested)."""

    epochs: int
    batch_size: int
    optimizer: str  # adam | sgd
    lr: float
    momentum: float
    betas: tuple[float, float]
    weight_decay: float
    lr_step_epochs: int
    lr_gamma: float
    image_size: int  # 0: the packed side
    augment: tuple[str, ...]
    augment_eval: bool
    device: str  # auto | cpu | cuda
    amp: bool
    channels_last: bool
    compile: bool | str  # false, true or a torch.compile mode
    threads: int
    on_divergence: str  # stop | record
    pretrained: bool
    init: str
    device_cache_gb: float
    loader_threads: int
    tensorboard: bool
    augment_chunk_mb: float

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainSettings:
        casts = {"betas": tuple, "augment": tuple, "lr": float, "momentum": float, "weight_decay": float,
                 "lr_gamma": float, "device_cache_gb": float, "augment_chunk_mb": float}
        return cls(**{name: casts.get(name, _same)(values[name]) for name in cls.__dataclass_fields__})


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Job:
    """One training run with every train setting resolved (schema defaults, experiment overrides).

    This module never imports torch (evaluation and the report use it too), so the loss's own defaults are
    not looked up here: they are the loss class's, applied where the loss is built.
    """

    dataset: str  # prepared dataset (a ratio subset is its own: digits_binary_k50)
    backbone: str
    loss: str
    seed: int
    fold: int
    settings: Mapping[str, Any]  # result-shaping train settings, sorted by key
    loss_params: Mapping[str, float]  # the config's loss_params.<loss> (the loss's own defaults fill the rest)
    runtime: Mapping[str, Any] = field(default_factory=dict, compare=False)  # RUNTIME_KEYS
    #: The config's plugins, imported before the job's loss and backbone are built (their code is in the
    #: resume fingerprint, lfa.training.train.plugin_code; not in the key, which stays what the config says).
    plugins: tuple[str, ...] = field(default=(), compare=False)

    def identity(self) -> dict[str, Any]:
        """Exactly what shapes the result (JSON-able)."""
        return {"dataset": self.dataset, "backbone": self.backbone, "loss": self.loss, "seed": self.seed,
                "fold": self.fold, "settings": dict(self.settings), "loss_params": dict(self.loss_params)}

    @cached_property
    def key(self) -> str:
        """16 hex digits of :meth:`identity`: the resume fingerprint, the rule's params, the de-duplication."""
        return _digest(self.identity(), 16)

    @cached_property
    def settings_key(self) -> str:
        """8 hex digits of the train settings and loss hyper-parameters (one per table cell's settings)."""
        return _digest({"settings": dict(self.settings), "loss_params": dict(self.loss_params)}, 8)

    @property
    def path(self) -> str:
        return f"{self.dataset}/{self.backbone}/{self.loss}/{self.settings_key}/s{self.seed}_f{self.fold}"

    @property
    def label(self) -> str:
        return (f"dataset={self.dataset} backbone={self.backbone} loss={self.loss} "
                f"seed={self.seed} fold={self.fold}")

    def train_settings(self) -> TrainSettings:
        """Every train setting the job runs with: the result-shaping ones and the runtime knobs."""
        return TrainSettings.from_mapping({**self.settings, **self.runtime})

    def to_dict(self) -> dict[str, Any]:
        return {**self.identity(), "runtime": dict(self.runtime), "key": self.key,
                **({"plugins": list(self.plugins)} if self.plugins else {})}

    @classmethod
    def build(cls, dataset: str, backbone: str, loss: str, seed: int, fold: int, settings: Mapping[str, Any],
              loss_params: Mapping[str, float] | None = None, plugins: Sequence[str] = ()) -> Job:
        """A job from complete train settings (runtime knobs split off), the config's loss hyper-parameters and
        its plugins."""
        params = dict(loss_params or {})
        return cls(dataset, backbone, loss, int(seed), int(fold),
                   {k: settings[k] for k in sorted(settings) if k not in RUNTIME_KEYS},
                   {k: float(params[k]) for k in sorted(params)},
                   {k: settings[k] for k in RUNTIME_KEYS if k in settings}, tuple(plugins))

    def __hash__(self) -> int:
        return hash(self.key)


# ------------------------------------------------------------------------------------- the config's plan
def ratio_dataset(name: str, k: int) -> str:
    """Name of the prepared dataset holding the k-per-200 subset of a binary_ratio dataset."""
    return f"{name}_k{k}"


def split_prepared_name(prepared: str) -> tuple[str, int | None]:
    """Inverse of :func:`ratio_dataset`: ('digits_binary_k50') -> ('digits_binary', 50)."""
    base, sep, k = prepared.rpartition("_k")
    if sep and k.isdigit():
        return base, int(k)
    return prepared, None


def experiment_datasets(config: dict[str, Any], experiment: str) -> list[str]:
    """Prepared dataset names an experiment trains on (one per ratio for binary_ratio datasets)."""
    exp = config["experiments"][experiment]
    subset = config["datasets"][exp["dataset"]]["subset"]
    if subset["kind"] == "binary_ratio":
        return [ratio_dataset(exp["dataset"], k) for k in exp.get("ratios", subset["ratios"])]
    return [exp["dataset"]]


def prepared_datasets(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every prepared dataset the config needs, mapped to its spec (``base`` name, ``ratio_k`` or None, and the
    config's ``plugins`` where it has any: a plugin may register the source)."""
    out: dict[str, dict[str, Any]] = {}
    plugins = {"plugins": list(config["plugins"])} if config.get("plugins") else {}
    for name, ds in config["datasets"].items():
        subset = ds["subset"]
        if subset["kind"] == "binary_ratio":
            for k in subset["ratios"]:
                out[ratio_dataset(name, k)] = {**json.loads(json.dumps(ds)), "base": name, "ratio_k": k, **plugins}
        else:
            out[name] = {**json.loads(json.dumps(ds)), "base": name, "ratio_k": None, **plugins}
    return out


def train_settings(config: dict[str, Any], experiment: str) -> dict[str, Any]:
    """The validated top-level train settings (schema defaults filled) with the experiment's overrides."""
    return {**config["train"], **config["experiments"][experiment].get("train", {})}


def make_job(config: dict[str, Any], experiment: str, dataset: str, backbone: str, loss: str, seed: int,
             fold: int, overrides: Mapping[str, Any] | None = None) -> Job:
    """The job of one cell, seed and fold of ``experiment`` (``overrides``: train settings, e.g. by hand)."""
    return Job.build(dataset, backbone, loss, seed, fold, {**train_settings(config, experiment), **(overrides or {})},
                     config["loss_params"].get(loss, {}), config.get("plugins", ()))


@dataclass(frozen=True)
class Plan:
    """The jobs of a config, each once, and the jobs of each experiment (shared ones included)."""

    experiments: Mapping[str, tuple[Job, ...]]

    @cached_property
    def jobs(self) -> tuple[Job, ...]:
        """Every job once, in the config's order (an experiment's jobs after the earlier experiments')."""
        return tuple(dict.fromkeys(j for jobs in self.experiments.values() for j in jobs))

    @cached_property
    def by_path(self) -> dict[str, Job]:
        return {job.path: job for job in self.jobs}

    def job(self, path: str) -> Job:
        return self.by_path[path]

    def trained_by(self) -> dict[str, str]:
        """``{job.key: the first experiment that runs it}``: where a shared job is counted as trained."""
        first: dict[str, str] = {}
        for name, jobs in self.experiments.items():
            for job in jobs:
                first.setdefault(job.key, name)
        return first


def plan(config: dict[str, Any]) -> Plan:
    """Expand a validated config into its :class:`Plan`."""
    experiments = {}
    for name, exp in config["experiments"].items():
        seeds = exp.get("seeds", config["seeds"])
        experiments[name] = tuple(
            make_job(config, name, dataset, backbone, loss, seed, fold)
            for dataset in experiment_datasets(config, name) for backbone in exp["backbones"]
            for loss in exp["losses"] for seed in seeds for fold in config["folds"])
    return Plan(experiments)


def jobs(config: dict[str, Any]) -> list[Job]:
    """Every training job of the config, each once, in a stable order."""
    return list(plan(config).jobs)


# ------------------------------------------------------------------------------------- paths
@dataclass(frozen=True)
class Layout:
    """Every path of a run, from the config's ``data_dir``, ``results_dir``, ``reports_dir`` and ``logs_dir``.

    Methods that take a job also take a string: a job's ``path`` or a Snakemake pattern such as ``"{run}"``.
    """

    data: Path
    results: Path
    reports: Path
    logs: Path
    raw_roots: Mapping[str, str] = field(default_factory=dict)  # datasets.<name>.root, by source

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layout:
        from lfa.sources import get_source

        # a source's one raw root (the paper's); the user's folder and csv sources have a root per dataset
        roots = {ds["source"]: ds["root"] for ds in config["datasets"].values()
                 if ds.get("root") and not get_source(ds["source"]).root_per_dataset}
        return cls(Path(config["data_dir"]), Path(config["results_dir"]), Path(config["reports_dir"]),
                   Path(config["logs_dir"]), roots)

    # raw and prepared data
    def raw(self, source: str) -> Path:
        """The raw-data folder of ``source``: ``datasets.<name>.root`` or ``<data_dir>/raw/<source>``."""
        return Path(self.raw_roots[source]) if source in self.raw_roots else self.data / "raw" / source

    def dataset_raw(self, spec: dict[str, Any]) -> Path:
        """The raw-data folder a dataset is prepared from: its own ``root``, else ``<data_dir>/raw/<source>``."""
        return Path(spec["root"]) if spec.get("root") else self.data / "raw" / spec["source"]

    def raw_marker(self, source: str) -> Path:
        """Written once the raw data of ``source`` passed its check."""
        return self.data / "raw" / source / ".verified"

    @property
    def downloads(self) -> Path:
        """Single files fetched by URL (class-count CSVs), named by their checksum."""
        return self.data / "raw" / "downloads"

    def prepared(self, dataset: str) -> Path:
        return self.data / "prepared" / dataset

    def prepared_file(self, dataset: str, name: str) -> Path:
        return self.prepared(dataset) / name

    # one job
    @property
    def runs(self) -> Path:
        """The workflow's run folders (``lfa train`` by hand never writes here)."""
        return self.results / "runs"

    @property
    def states(self) -> Path:
        """The workflow's resume states."""
        return self.results / "state"

    def run(self, job: Job | str) -> Path:
        return self.runs / _job_path(job)

    def run_file(self, job: Job | str, name: str) -> Path:
        return self.run(job) / name

    def state(self, job: Job | str) -> Path:
        """The resume state of a job: not a rule output, so it survives a failed job."""
        return self.states / _job_path(job)

    def manual(self, job: Job | str) -> Path:
        """Where ``lfa train`` writes by hand, apart from the workflow's runs."""
        return self.results / "manual" / _job_path(job)

    def log(self, stage: str, name: str = "") -> Path:
        return self.logs / stage / f"{name}.log" if name else self.logs / f"{stage}.log"

    def tensorboard(self, job: Job | str) -> Path:
        """A run's TensorBoard event files (``train.tensorboard``); ``tensorboard --logdir <logs>/tensorboard``."""
        return self.logs / "tensorboard" / _job_path(job)

    # everything after training
    def aggregate(self, name: str) -> Path:
        """``metrics``, ``summary``, ``per_class``, ``comparisons`` or ``runs`` (which experiment uses which run)."""
        return self.results / f"{name}.parquet"

    def curves(self, convention: str) -> Path:
        return self.results / "lfa" / f"curves_{convention}.parquet"

    def gradients(self, convention: str) -> Path:
        return self.results / "lfa" / f"gradients_{convention}.parquet"

    @property
    def tables(self) -> Path:
        return self.results / "tables"

    def table(self, experiment: str, ext: str, kind: str = "") -> Path:
        """An experiment's table file: the paper's layout, or (``kind="imbalance"``) the second table."""
        return (self.tables / kind if kind else self.tables) / f"{experiment}.{ext}"

    @property
    def report(self) -> Path:
        return self.reports / "report.html"

    @property
    def figures(self) -> Path:
        return self.reports / "figures"

    @property
    def gpu_slots(self) -> Path:
        return self.results / ".gpu_slots"

    def legacy_run(self, experiment: str, job: Job) -> Path:
        """Where the layout before job keys kept ``job``'s run for ``experiment`` (read by lfa.pipeline.migrate
        only)."""
        return self.runs / _legacy_path(experiment, job)

    def legacy_state(self, experiment: str, job: Job) -> Path:
        return self.states / _legacy_path(experiment, job)

    def legacy_states(self) -> list[Path]:
        """Resume states of the layout before job keys."""
        return _legacy_folders(self.states)

    def legacy_runs(self) -> list[Path]:
        """Run folders of the layout before job keys (``runs/<experiment>/<dataset>/<backbone>/<loss>/s_f``)."""
        return _legacy_folders(self.runs)


_SETTINGS_KEY = re.compile(r"[0-9a-f]{8}")


def _legacy_path(experiment: str, job: Job) -> str:
    return f"{experiment}/{job.dataset}/{job.backbone}/{job.loss}/s{job.seed}_f{job.fold}"


def _legacy_folders(root: Path) -> list[Path]:
    """``<root>/<experiment>/<dataset>/<backbone>/<loss>/s<seed>_f<fold>``: no settings key above the run."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*/*/*/*/s*_f*") if p.is_dir() and not _SETTINGS_KEY.fullmatch(p.parent.name))


def _job_path(job: Job | str) -> str:
    return job if isinstance(job, str) else job.path
