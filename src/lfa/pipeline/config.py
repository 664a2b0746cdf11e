"""Configuration: loading, schema validation (defaults filled) and the checks of names and cross-references.

The YAML config is validated against ``schemas/config.schema.yaml`` (structure, types, ranges, defaults)
with :func:`snakemake.utils.validate`; names that live in the package's registries (losses, backbones,
dataset sources, reference count tables) are checked by :func:`check_config`, so adding a registry entry
never needs a schema change. The expansion into jobs and paths is :mod:`lfa.pipeline.plan`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from lfa.errors import ConfigError

SCHEMA_PATH = Path(__file__).parents[1] / "schemas" / "config.schema.yaml"


def load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def train_defaults() -> dict[str, Any]:
    """The schema's default of every train setting (what a job uses where the config is silent)."""
    return {k: v["default"] for k, v in load_schema()["$defs"]["train"]["properties"].items()}


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
    import difflib

    plural = kind + ("es" if kind.endswith("s") else "s")
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ConfigError(f"{key}: unknown {kind} {name!r}{hint}; known {plural}: {', '.join(sorted(known))}")


#: Experiment and dataset names become folder and file names (and Snakemake wildcards): a safe character set.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_config(config: dict[str, Any]) -> None:
    """Import the config's plugins, then check names against the package registries, cross-references between
    sections, the tables already in place (:meth:`lfa.sources.Source.check_layout`) and the losses' terms on the
    LFA grid. Every problem found is reported at once, one line each."""
    _use_plugins(config)
    problems: list[str] = []

    def attempt(check: Any, *args: Any) -> bool:
        try:
            check(*args)
        except ConfigError as err:
            problems.append(str(err))
            return False
        return True

    attempt(_check_names, config)
    attempt(_check_folders, config)
    attempt(_check_init, config, "train", config["train"]["init"])
    for name, exp in config["experiments"].items():
        attempt(_check_init, config, f"experiments.{name}.train", exp.get("train", {}).get("init", ""))
    attempt(_check_loss_params, config)
    attempt(_check_report, config)
    attempt(_check_tensorboard, config)
    roots: dict[str, tuple[str, str]] = {}
    for name, ds in config["datasets"].items():
        if attempt(_check_dataset, name, ds) and attempt(_check_root, name, ds, roots):
            attempt(_check_layout, config, name, ds)
    for name, exp in config["experiments"].items():
        attempt(_check_experiment, config, name, exp)
    for fold in config["folds"]:
        if fold >= config["n_splits"]:
            problems.append(f"folds: fold {fold} does not exist with n_splits = {config['n_splits']}")
    attempt(_check_losses, config)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems in the configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _check_names(config: dict[str, Any]) -> None:
    for section in ("datasets", "experiments"):
        for name in config[section]:
            if not SAFE_NAME.fullmatch(name) or ".." in name:
                raise ConfigError(f"{section}.{name}: names may hold letters, digits and _ . - only (not starting "
                                  "with . _ or -, no '..'), since they name folders and files")


def _check_layout(config: dict[str, Any], name: str, ds: dict[str, Any]) -> None:
    """What the raw data already in place says against the config (a table's images that look grouped while no
    grouping is configured); data not yet there is the raw-data check's."""
    from lfa.errors import LfaError
    from lfa.pipeline.plan import Layout
    from lfa.sources import get_source

    try:
        get_source(ds["source"]).check_layout(f"datasets.{name}", ds, Layout.from_config(config).dataset_raw(ds))
    except ConfigError:
        raise
    except LfaError:
        return  # unreadable data: the raw-data check names it, reading all of it


def _use_plugins(config: dict[str, Any]) -> None:
    from lfa.errors import PluginError
    from lfa.plugins import use_config_plugins

    try:
        use_config_plugins(config)
    except PluginError as err:
        raise ConfigError(str(err)) from None


def _check_losses(config: dict[str, Any]) -> None:
    """Every loss of an experiment builds with its hyper-parameters and can train (:func:`lfa.losses.check_terms`)."""
    from lfa.logs import error_line
    from lfa.losses import build_loss, check_terms, get_loss, lfa_grid, loss_names
    from lfa.registry import origin_of

    grid = lfa_grid(config["lfa_grid_points"])
    known = set(loss_names())  # an unknown name is the experiment check's
    for name in sorted({loss for exp in config["experiments"].values() for loss in exp["losses"]} & known):
        key = f"loss_params.{name}" if name in config["loss_params"] else f"losses: {name}"
        try:
            check_terms(build_loss(name, **config["loss_params"].get(name, {})), grid)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{key}: {err} (defined in {origin_of(get_loss(name))})") from None
        except Exception as err:  # a plugin's bug: the loss, the error and its line
            raise ConfigError(f"{key}: loss {name!r} fails on the LFA grid: {error_line(err)} "
                              f"(defined in {origin_of(get_loss(name))})") from None


def _check_root(name: str, ds: dict[str, Any], roots: dict[str, tuple[str, str]]) -> None:
    """The paper's sources share one raw root per source; the user's (folder, csv) have one per dataset."""
    from lfa.sources import get_source

    root = ds.get("root", "")
    if get_source(ds["source"]).root_per_dataset:
        return
    other = roots.setdefault(ds["source"], (name, root))
    if other[1] != root:
        raise ConfigError(f"datasets.{name}.root: {root or '(the default)'!r} differs from "
                          f"{other[1] or '(the default)'!r} of datasets.{other[0]}; datasets of one source "
                          f"({ds['source']}) share one raw root")


def _check_folders(config: dict[str, Any]) -> None:
    """The output folders must be writable (or creatable), before any job deletes an output it would redo."""
    import os

    for key in ("results_dir", "logs_dir", "reports_dir"):
        folder = Path(config[key]).absolute()
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"{key}: {config[key]} is not writable ({existing} "
                              f"{'is not a folder' if not existing.is_dir() else 'refuses writes'}); "
                              "choose another folder or fix its permissions")


def _check_init(config: dict[str, Any], key: str, init: str) -> None:
    """``train.init``: an https:// URL (optionally pinned by #sha256=<64 hex>) or a local path (which the
    training job reads; a dry run of a config needs no weights in place)."""
    if not init:
        return
    if "://" in init:
        scheme = init.split("://", 1)[0]
        if scheme != "https":
            raise ConfigError(f"{key}.init: {init}: only https:// URLs are downloaded (weights must not travel in "
                              f"clear text), not {scheme}://; or give a local path")
        pin = init.partition("#")[2]
        if pin and not re.fullmatch(r"sha256=[0-9a-fA-F]{64}", pin):
            raise ConfigError(f"{key}.init: {init}: the part after '#' must be sha256=<64 hex digits>")


def _check_tensorboard(config: dict[str, Any]) -> None:
    import importlib.util

    wanted = [key for key, train in [("train", config["train"]),
                                     *((f"experiments.{n}.train", e.get("train", {}))
                                       for n, e in config["experiments"].items())] if train.get("tensorboard")]
    if wanted and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(f"{wanted[0]}.tensorboard: true needs the tensorboard package, which is not installed: "
                          "pip install 'lfa-repro[tensorboard]' (or set it to false)")


def _check_report(config: dict[str, Any]) -> None:
    from lfa.losses import loss_names

    reference = config["report"]["reference_loss"]
    if reference not in loss_names():
        raise _unknown("loss", "report.reference_loss", reference, loss_names())
    groups = config["report"]["shot_groups"]
    if groups["few"] > groups["many"]:
        raise ConfigError(f"report.shot_groups: few ({groups['few']}) must not exceed many ({groups['many']})")


def _check_loss_params(config: dict[str, Any]) -> None:
    from lfa.losses import loss_defaults, loss_names

    for name, params in config["loss_params"].items():
        if name not in loss_names():
            raise _unknown("loss", f"loss_params.{name}", name, loss_names())
        bad = sorted(set(params) - set(loss_defaults(name)))
        if bad:
            raise ConfigError(f"loss_params.{name}: unknown hyper-parameter(s) {bad}; "
                              f"{name} takes {sorted(loss_defaults(name))}")


def _check_dataset(name: str, ds: dict[str, Any]) -> None:
    from lfa.sources import get_source, source_names

    key = f"datasets.{name}"
    if re.search(r"_k\d+$", name):
        raise ConfigError(f"{key}: a dataset name may not end in '_k<number>' (the names of ratio subsets)")
    if ds["source"] not in source_names():
        raise _unknown("dataset source", f"{key}.source", ds["source"], source_names())
    source = get_source(ds["source"])
    _check_subset(key, ds["subset"], source.task)
    owners: dict[str, list[str]] = {}  # a source's own keys (Source.options) -> the sources using them
    for other in source_names():
        for option in get_source(other).options:
            owners.setdefault(option, []).append(other)
    for option in sorted(set(ds) & set(owners) - source.options):
        raise ConfigError(f"{key}.{option}: not used by source {ds['source']!r} (a key of source "
                          f"{', '.join(sorted(owners[option]))})")
    try:
        source.check_spec(key, ds)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    known_parts = source.known_partitions(ds)
    bad = [p for p in ds.get("partitions", []) if known_parts is not None and p not in known_parts]
    if bad:
        raise ConfigError(f"{key}.partitions: unknown partition(s) {bad} of source {ds['source']!r}; "
                          f"known: {', '.join(known_parts or []) or 'none'}")


def _check_subset(key: str, subset: dict[str, Any], task: str) -> None:
    from lfa.data import download, reference

    kind = subset["kind"]
    if kind == "long_tail" or (kind == "counts" and "counts_csv" not in subset):
        ref = subset.get("reference")
        if ref not in reference.COUNT_TABLES:
            raise _unknown("reference table", f"{key}.subset.reference", str(ref), list(reference.COUNT_TABLES))
    if "counts_csv" in subset:
        if kind != "counts":
            raise ConfigError(f"{key}.subset.counts_csv: only used by kind counts")
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
    if kind == "binary_ratio":
        for needed in ("positive_class", "ratios"):
            if needed not in subset:
                raise ConfigError(f"{key}.subset.{needed}: required for kind binary_ratio")
    if kind != "all" and task == "multi_label":  # a task known from the data only (csv) is checked by prepare
        raise ConfigError(f"{key}.subset.kind: {kind!r} needs a single-label dataset; the source is {task}")


def _check_experiment(config: dict[str, Any], name: str, exp: dict[str, Any]) -> None:
    import jsonschema

    from lfa.losses import loss_names
    from lfa.models import get_backbone

    key = f"experiments.{name}"
    if exp["dataset"] not in config["datasets"]:
        raise _unknown("dataset", f"{key}.dataset", exp["dataset"], list(config["datasets"]))
    for loss in exp["losses"]:
        if loss not in loss_names():
            raise _unknown("loss", f"{key}.losses", loss, loss_names())
    for backbone in exp["backbones"]:
        try:  # a registered name, or timm:<model> / torchvision:<model> (lfa.models.get_backbone)
            get_backbone(backbone)
        except (KeyError, ImportError) as err:
            raise ConfigError(f"{key}.backbones: {err}") from None
    subset = config["datasets"][exp["dataset"]]["subset"]
    if "ratios" in exp:
        allowed = subset.get("ratios", []) if subset["kind"] == "binary_ratio" else []
        bad = [k for k in exp["ratios"] if k not in allowed]
        if bad:
            raise ConfigError(f"{key}.ratios: {bad} not among the ratios of dataset {exp['dataset']!r} "
                              f"(datasets.{exp['dataset']}.subset.ratios = {allowed})")
    try:
        jsonschema.validate({**config["train"], **exp.get("train", {})}, load_schema()["$defs"]["train"])
    except jsonschema.ValidationError as err:
        where = ".".join(str(p) for p in err.absolute_path)
        raise ConfigError(f"{key}.train.{where}: {err.message}") from None
    _check_input_sizes(config, name, exp)


def _check_input_sizes(config: dict[str, Any], name: str, exp: dict[str, Any]) -> None:
    """Each backbone accepts the side it will be fed (``train.image_size``, else the dataset's packed side);
    a side known only from the images (a source that keeps the native size) is checked by the prepare stage."""
    from lfa.models import input_size
    from lfa.sources import get_source

    ds = config["datasets"][exp["dataset"]]
    packed = int(ds.get("image_size", get_source(ds["source"]).default_image_size) or 0)
    wanted = int({**config["train"], **exp.get("train", {})}["image_size"])
    if not (wanted or packed):
        return
    where = (f"experiments.{name}.train.image_size" if "image_size" in exp.get("train", {}) else
             "train.image_size" if wanted else f"datasets.{exp['dataset']}.image_size")
    for backbone in exp["backbones"]:
        try:
            input_size(backbone, wanted, packed or wanted)
        except ConfigError as err:
            raise ConfigError(f"experiments.{name}.backbones: {err} (the side comes from {where})") from None


def config_hash(config: dict[str, Any]) -> str:
    """Short stable hash of a (validated) config, stored in Parquet metadata and the report."""
    # a config without plugins hashes as before the key existed (results aggregated then stay valid)
    hashed = {k: v for k, v in config.items() if not (k == "plugins" and not v)}
    blob = json.dumps(hashed, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]

