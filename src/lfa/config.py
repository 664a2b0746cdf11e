"""Configuration: loading, schema validation, registry checks and expansion into jobs.

The YAML config is validated against ``schemas/config.schema.yaml`` (structure, types, ranges, defaults)
with :func:`snakemake.utils.validate`; names that live in the package's registries (losses, backbones,
dataset sources, reference count tables) are checked by :func:`check_config`, so adding a registry entry
never needs a schema change.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the offending key."""


def load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` in place (schema defaults filled) and check registry names; returns it."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, str(SCHEMA_PATH.resolve()))
    except WorkflowError as err:
        raise ConfigError(f"invalid configuration: {err}") from None
    check_config(config)
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    return validate_config(config)


def _unknown(kind: str, key: str, name: str, known: list[str]) -> ConfigError:
    plural = kind + ("es" if kind.endswith("s") else "s")
    return ConfigError(f"{key}: unknown {kind} {name!r}; known {plural}: {', '.join(sorted(known))}")


def check_config(config: dict[str, Any]) -> None:
    """Check names against the package registries and cross-references between sections."""
    import jsonschema

    from lfa import datasets, download, models, reference, sources
    from lfa.losses import loss_defaults, loss_names

    known_losses = loss_names()
    for name, params in config.get("loss_params", {}).items():
        if name not in known_losses:
            raise _unknown("loss", f"loss_params.{name}", name, known_losses)
        bad = sorted(set(params) - set(loss_defaults(name)))
        if bad:
            raise ConfigError(
                f"loss_params.{name}: unknown hyper-parameter(s) {bad}; "
                f"{name} takes {sorted(loss_defaults(name))}"
            )

    roots: dict[str, tuple[str, str]] = {}
    for name, ds in config["datasets"].items():
        key = f"datasets.{name}"
        if re.search(r"_k\d+$", name) or "/" in name:
            raise ConfigError(f"{key}: a dataset name may not contain '/' or end in '_k<number>' "
                              "(the names of ratio subsets)")
        if ds["source"] not in datasets.SOURCES:
            raise _unknown("dataset source", f"{key}.source", ds["source"], list(datasets.SOURCES))
        subset = ds.get("subset", {})
        kind = subset.get("kind", "all")
        if kind == "long_tail" or (kind == "counts" and "counts_csv" not in subset):
            ref = subset.get("reference")
            if ref not in reference.COUNT_TABLES:
                raise _unknown("reference table", f"{key}.subset.reference", str(ref),
                               list(reference.COUNT_TABLES))
        if kind == "counts" and "counts_csv" in subset:
            if "reference" in subset:
                raise ConfigError(f"{key}.subset: give either reference or counts_csv, not both")
            if download.is_url(subset["counts_csv"]):
                try:
                    download.check_url(subset["counts_csv"])
                except ValueError as err:
                    raise ConfigError(f"{key}.subset.counts_csv: {err}") from None
                if "counts_csv_md5" not in subset:
                    raise ConfigError(f"{key}.subset.counts_csv_md5: required when counts_csv is a URL "
                                      "(every download is checked against a known checksum)")
        if "counts_csv" in subset and kind != "counts":
            raise ConfigError(f"{key}.subset.counts_csv: only used by kind counts")
        if kind == "binary_ratio":
            for needed in ("positive_class", "ratios"):
                if needed not in subset:
                    raise ConfigError(f"{key}.subset.{needed}: required for kind binary_ratio")
        source = sources.REGISTRY.get(ds["source"])
        if source is not None:
            if kind != "all" and source.task != "single_label":
                raise ConfigError(f"{key}.subset.kind: {kind!r} needs a single-label dataset; "
                                  f"{ds['source']} is {source.task}")
            for option in ("split_lists",):
                if option in ds and option not in source.options:
                    raise ConfigError(f"{key}.{option}: not used by source {ds['source']!r}")
            known_parts = list(ds.get("split_lists") or source.partitions)
            bad = [p for p in ds.get("partitions", []) if p not in known_parts]
            if bad:
                raise ConfigError(f"{key}.partitions: unknown partition(s) {bad} of source {ds['source']!r}; "
                                  f"known: {', '.join(known_parts) or 'none'}")
        root = ds.get("root") or str(sources.default_root(ds["source"], config.get("data_dir", "data")))
        other = roots.setdefault(ds["source"], (name, root))
        if other[1] != root:
            raise ConfigError(f"{key}.root: {root!r} differs from {other[1]!r} of datasets.{other[0]}; datasets "
                              f"of one source ({ds['source']}) share one raw root")

    train_schema = load_schema()["$defs"]["train"]
    known_backbones = models.backbone_names()
    for name, exp in config["experiments"].items():
        key = f"experiments.{name}"
        if "/" in name:
            raise ConfigError(f"{key}: experiment names may not contain '/'")
        if exp["dataset"] not in config["datasets"]:
            raise _unknown("dataset", f"{key}.dataset", exp["dataset"], list(config["datasets"]))
        for loss in exp["losses"]:
            if loss not in known_losses:
                raise _unknown("loss", f"{key}.losses", loss, known_losses)
        for backbone in exp["backbones"]:
            if backbone not in known_backbones:
                raise _unknown("backbone", f"{key}.backbones", backbone, known_backbones)
        ds = config["datasets"][exp["dataset"]]
        subset = ds.get("subset", {})
        if "ratios" in exp:
            allowed = subset.get("ratios", []) if subset.get("kind") == "binary_ratio" else []
            bad = [k for k in exp["ratios"] if k not in allowed]
            if bad:
                raise ConfigError(
                    f"{key}.ratios: {bad} not among the ratios of dataset {exp['dataset']!r} "
                    f"(datasets.{exp['dataset']}.subset.ratios = {allowed})"
                )
        merged = {**config.get("train", {}), **exp.get("train", {})}
        try:
            jsonschema.validate(merged, train_schema)
        except jsonschema.ValidationError as err:
            where = ".".join(str(p) for p in err.absolute_path)
            raise ConfigError(f"{key}.train.{where}: {err.message}") from None

    for fold in config.get("folds", []):
        if fold >= config.get("n_splits", 5):
            raise ConfigError(f"folds: fold {fold} does not exist with n_splits = {config.get('n_splits')}")


@dataclass(frozen=True)
class Job:
    """One training run: the unit that becomes a Snakemake job."""

    experiment: str
    dataset: str
    backbone: str
    loss: str
    seed: int
    fold: int

    @property
    def path(self) -> str:
        return f"{self.experiment}/{self.dataset}/{self.backbone}/{self.loss}/s{self.seed}_f{self.fold}"


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
    ds = config["datasets"][exp["dataset"]]
    subset = ds.get("subset", {})
    if subset.get("kind") == "binary_ratio":
        ratios = exp.get("ratios", subset["ratios"])
        return [ratio_dataset(exp["dataset"], k) for k in ratios]
    return [exp["dataset"]]


def prepared_datasets(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every prepared dataset the config needs, mapped to its spec (with ``ratio_k`` for ratio subsets)."""
    out: dict[str, dict[str, Any]] = {}
    for name, ds in config["datasets"].items():
        subset = ds.get("subset", {})
        if subset.get("kind") == "binary_ratio":
            for k in subset["ratios"]:
                out[ratio_dataset(name, k)] = {**copy.deepcopy(ds), "base": name, "ratio_k": k}
        else:
            out[name] = {**copy.deepcopy(ds), "base": name, "ratio_k": None}
    return out


def jobs(config: dict[str, Any]) -> list[Job]:
    """All training jobs of the config, in a stable order."""
    out = []
    for name, exp in config["experiments"].items():
        seeds = exp.get("seeds", config.get("seeds", [0]))
        for dataset in experiment_datasets(config, name):
            for backbone in exp["backbones"]:
                for loss in exp["losses"]:
                    for seed in seeds:
                        for fold in config.get("folds", [0, 1, 2, 3, 4]):
                            out.append(Job(name, dataset, backbone, loss, seed, fold))
    return out


def train_settings(config: dict[str, Any], experiment: str) -> dict[str, Any]:
    """Top-level train settings with the experiment's overrides applied."""
    return {**config.get("train", {}), **config["experiments"][experiment].get("train", {})}


def loss_params(config: dict[str, Any], loss: str) -> dict[str, float]:
    return dict(config.get("loss_params", {}).get(loss, {}))


def config_hash(config: dict[str, Any]) -> str:
    """Short stable hash of a (validated) config, stored in Parquet metadata and the report."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
