"""Results written before job keys (``runs/<experiment>/<dataset>/<backbone>/<loss>/s<seed>_f<fold>/``), moved
into today's layout (``runs/<job.path>/``, :mod:`lfa.pipeline.plan`) without retraining anything.

The prepared datasets stay where they are: each gets its content hash written into its ``meta.json``, and
Snakemake is told to forget the provenance of the prepared files and raw-data markers (``snakemake
--cleanup-metadata``), whose rules and scripts changed with the layout. The kept files are then touched in
the DAG's order (raw-data markers, prepared data, the moved runs), so that no newer script or input makes
Snakemake prepare the data again, and every run train again.

A finished run moves when its ``train_info.json`` shows the settings and loss hyper-parameters of a job of
the config; a copy that an earlier version linked into a second experiment's folder is dropped once the run
it copies has moved. An unfinished run's resume state moves when its fingerprint is the one the earlier
version computed for that job, and is re-stamped with today's. Anything else stays where it is and is
listed. Each run's ``metrics.parquet`` is left behind (its columns changed): the workflow evaluates again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lfa.io import read_json, read_table
from lfa.pipeline.plan import RUN_OUTPUTS, RUNTIME_KEYS, Job, Layout, plan


@dataclass
class Migration:
    moved: list[tuple[Path, Path]] = field(default_factory=list)  # finished runs
    states: list[tuple[Path, Path]] = field(default_factory=list)  # resume states of unfinished runs
    duplicates: list[Path] = field(default_factory=list)  # copies of a run another experiment trained
    left: list[Path] = field(default_factory=list)  # legacy runs that match no job of the config
    stamped: list[str] = field(default_factory=list)  # prepared datasets given their content hash

    @property
    def movable(self) -> int:
        return len(self.moved) + len(self.states)

    def summary(self) -> str:
        lines = [f"{len(self.moved)} finished run(s) moved, {len(self.states)} resume state(s) moved, "
                 f"{len(self.duplicates)} copied run(s) dropped, {len(self.stamped)} prepared dataset(s) given "
                 "their content hash"]
        if self.left:
            lines.append(f"{len(self.left)} run folder(s) of the old layout match no job of this config and were "
                         f"left in place, e.g. {self.left[0]}: delete them once you no longer need them")
        return "\n".join(lines)


def _legacy_fingerprint(name: str, job: Job, config_loss_params: dict[str, Any], meta: dict[str, Any]) -> str:
    """The resume fingerprint the layout before job keys gave this job in experiment ``name``."""
    old = {"experiment": name, "dataset": job.dataset, "backbone": job.backbone, "loss": job.loss,
           "seed": job.seed, "fold": job.fold, "settings": dict(job.settings), "loss_params": config_loss_params}
    blob = json.dumps({"job": old, "classes": meta["class_names"], "n_samples": meta["n_samples"]},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _same_job(info: dict[str, Any], job: Job) -> bool:
    old = info.get("job", {})
    settings = {k: v for k, v in old.get("settings", {}).items() if k not in RUNTIME_KEYS}
    params = {k: float(v) for k, v in old.get("loss_params", {}).items()}
    return json.dumps(settings, sort_keys=True, default=str) == json.dumps(dict(job.settings), sort_keys=True,
                                                                           default=str) \
        and params == dict(job.loss_params)


def migrate(config: dict[str, Any], dry_run: bool = False, snakefile: str | Path | None = None,
            configfile: str | Path | None = None) -> Migration:
    """Move the legacy runs and states of ``config``'s jobs into today's layout; returns what was done.

    With ``snakefile`` (and the ``configfile`` it runs with), Snakemake forgets the provenance of the
    prepared data and raw-data markers afterwards, so that it keeps them (and hence the moved runs).
    """
    layout, out = Layout.from_config(config), Migration()
    legacy = set(layout.legacy_runs())
    if not legacy and not layout.legacy_states():
        return out
    if not dry_run:
        out.stamped = _stamp_prepared(config, layout)
    for name, jobs in plan(config).experiments.items():
        for job in jobs:
            old = layout.legacy_run(name, job)
            if old in legacy:
                legacy.discard(old)
                _move_run(layout, job, old, out, dry_run)
            _move_state(layout, config, name, job, out, dry_run)
    out.left = sorted(legacy)
    if not dry_run:
        _remove_empty(layout.runs)
        _remove_empty(layout.states)
        if snakefile is not None:
            _touch_in_order(config, layout, [new for _, new in out.moved])
            _forget_provenance(config, layout, snakefile, configfile)
    return out


def _touch_in_order(config: dict[str, Any], layout: Layout, runs: list[Path]) -> None:
    """Modification times in the DAG's order, newer than the workflow's scripts: markers < prepared < runs."""
    import time

    from lfa.pipeline.plan import PREPARED_FILES, prepared_datasets

    specs = prepared_datasets(config)
    stages = [[layout.raw_marker(s) for s in {spec["source"] for spec in specs.values()}],
              [layout.prepared_file(d, n) for d in specs for n in PREPARED_FILES],
              [run / n for run in runs for n in RUN_OUTPUTS]]
    now = time.time()
    for offset, files in enumerate(stages):
        for f in files:
            if f.exists():
                os.utime(f, (now + offset, now + offset))


def _stamp_prepared(config: dict[str, Any], layout: Layout) -> list[str]:
    """Write the content hash into each prepared ``meta.json`` that lacks it."""

    from lfa.data.datasets import content_hash, file_stamps
    from lfa.pipeline.plan import prepared_datasets

    stamped = []
    for name in prepared_datasets(config):
        meta_path = layout.prepared_file(name, "meta.json")
        if not meta_path.exists():
            continue
        meta = read_json(meta_path)
        if meta.get("data_hash"):
            continue
        index = read_table(layout.prepared_file(name, "index.parquet"))
        meta["data_hash"] = content_hash(layout.prepared_file(name, "images.npy"), index, meta["class_names"])
        meta["stamps"] = file_stamps(meta_path.parent)
        tmp = meta_path.with_name(".meta.json.tmp")
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, meta_path)
        stamped.append(name)
    return stamped


def _forget_provenance(config: dict[str, Any], layout: Layout, snakefile: str | Path,
                       configfile: str | Path | None) -> None:
    import subprocess
    import sys

    from lfa.pipeline.plan import PREPARED_FILES, prepared_datasets

    specs = prepared_datasets(config)
    files = [str(layout.prepared_file(d, n)) for d in specs for n in PREPARED_FILES
             if layout.prepared_file(d, n).exists()]
    files += [str(layout.raw_marker(s)) for s in {spec["source"] for spec in specs.values()}
              if layout.raw_marker(s).exists()]
    if not files:
        return
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--snakefile", str(snakefile), "--cleanup-metadata",
           *files, *(["--configfile", str(configfile)] if configfile else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake --cleanup-metadata failed ({proc.returncode}): {proc.stderr[-2000:]}")


def _move_run(layout: Layout, job: Job, old: Path, out: Migration, dry_run: bool) -> None:
    info_path = old / "train_info.json"
    if not all((old / n).exists() for n in RUN_OUTPUTS) or not _same_job(read_json(info_path), job):
        out.left.append(old)
        return
    info = read_json(info_path)
    new = layout.run(job)
    if all((new / n).exists() for n in RUN_OUTPUTS) or any(dst == new for _, dst in out.moved):
        # moved already (or, in a dry run, to be moved) from the experiment that trained it
        out.duplicates.append(old)
        if not dry_run:
            shutil.rmtree(old)
        return
    out.moved.append((old, new))
    if dry_run:
        return
    new.parent.mkdir(parents=True, exist_ok=True)
    os.replace(old, new)
    (new / "metrics.parquet").unlink(missing_ok=True)
    if "shared_from" in info:  # the only copy left of a run an earlier version linked here
        info["wall_seconds"] = info.pop("original_wall_seconds", info["wall_seconds"])
        del info["shared_from"]
    info.update(job=job.to_dict(), key=job.key, migrated_from=str(old))
    tmp = new / ".train_info.json.tmp"
    tmp.write_text(json.dumps(info, indent=2, default=str))
    os.replace(tmp, new / "train_info.json")


def _move_state(layout: Layout, config: dict[str, Any], name: str, job: Job, out: Migration, dry_run: bool) -> None:
    old = layout.legacy_state(name, job)
    new = layout.state(job)
    meta_path = layout.prepared_file(job.dataset, "meta.json")
    if not (old / "last.pt").exists() or new.exists() or not meta_path.exists():
        return
    from lfa.errors import UnreadableCheckpoint
    from lfa.io import atomic_torch_save
    from lfa.training.checkpoints import fingerprint, read_checkpoint

    meta = read_json(meta_path)
    expected = _legacy_fingerprint(name, job, dict(config["loss_params"].get(job.loss, {})), meta)
    files = [old / n for n in ("last.pt", "best.pt") if (old / n).exists()]
    try:
        states = [read_checkpoint(f) for f in files]
    except UnreadableCheckpoint:  # a damaged old state is not worth moving: the job trains afresh
        out.left.append(old)
        return
    if any(s.get("fingerprint") != expected for s in states):
        return
    out.states.append((old, new))
    if dry_run:
        return
    new.mkdir(parents=True, exist_ok=True)
    for f, state in zip(files, states, strict=True):
        atomic_torch_save({**state, "fingerprint": fingerprint(job, meta)}, new / f.name)
    shutil.rmtree(old)


def _remove_empty(root: Path) -> None:
    if not root.is_dir():
        return
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(folder.iterdir()):
            folder.rmdir()


def check_results_layout(config: dict[str, Any]) -> None:
    """Stop before any job if ``results_dir`` holds runs of the layout before job keys that this config uses.

    Those results are expensive: they are moved (``lfa migrate``), never silently trained again.
    """
    from lfa.errors import ConfigError

    found = migrate(config, dry_run=True)
    if found.movable:
        raise ConfigError(
            f"{config['results_dir']}/runs holds {len(found.moved)} finished run(s) and {len(found.states)} resume "
            "state(s) in the layout before job keys (runs/<experiment>/<dataset>/<backbone>/<loss>/s<seed>_f<fold>). "
            f"Move them into today's layout, without retraining: lfa migrate --configfile <this config> "
            "(add --dry-run to see what moves); or delete them to train afresh.")
    if found.left:
        import sys

        print(f"note: {len(found.left)} run folder(s) of an older results layout under {config['results_dir']}/runs "
              f"match no job of this config and are ignored (e.g. {found.left[0]})", file=sys.stderr)
