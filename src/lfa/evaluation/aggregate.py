"""Aggregation of per-job, per-class metrics into the paper's summaries, comparisons and Parquet files.

The input of every function is a *metrics frame*: the concatenation of per-job ``metrics.parquet`` files,
one row per (job, class), with the key columns ``experiment, dataset, backbone, loss, seed, fold``
(optionally ``ratio_k`` and ``class_name``), the column ``class`` and the metric columns of
:data:`lfa.evaluation.metrics.METRIC_COLUMNS`.  Missing values (NaN) are dropped and counted, never imputed.
See ``docs/schema.md`` for the file layouts.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lfa import __version__
from lfa.evaluation.metrics import METRIC_COLUMNS
from lfa.io import read_table, write_parquet
from lfa.pipeline.plan import Plan

__all__ = [
    "KEYS",
    "aggregate",
    "experiment_metrics",
    "runs_table",
    "RUN_KEYS",
    "compare",
    "per_class_summary",
    "summarize",
]

#: Columns identifying one aggregated configuration.
KEYS: list[str] = ["experiment", "dataset", "backbone", "loss"]
#: Columns identifying one job (training run) within a configuration.
RUN_KEYS: list[str] = ["seed", "fold"]

def _metric_columns(metrics: pd.DataFrame) -> list[str]:
    cols = [c for c in METRIC_COLUMNS if c in metrics.columns]
    if not cols:
        raise ValueError(f"no metric column found; expected some of {METRIC_COLUMNS}")
    return cols


def _require(metrics: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in metrics.columns]
    if missing:
        raise ValueError(f"metrics frame lacks column(s) {missing}")


def _long(metrics: pd.DataFrame, id_vars: list[str], cols: list[str]) -> pd.DataFrame:
    """Melt the metric columns into ``metric``/``value``; ``metric`` is categorical in column order."""
    long = metrics.melt(id_vars=id_vars, value_vars=cols, var_name="metric", value_name="value")
    long["metric"] = pd.Categorical(long["metric"], categories=cols, ordered=True)
    long["value"] = long["value"].astype(np.float64)
    return long


def _ratio_k(metrics: pd.DataFrame) -> pd.DataFrame | None:
    """``ratio_k`` per configuration (it is a property of the dataset, so it must be unique)."""
    if "ratio_k" not in metrics.columns:
        return None
    per_key = metrics.groupby(KEYS, sort=False, dropna=False)["ratio_k"]
    n_unique = per_key.nunique(dropna=False)
    if (n_unique > 1).any():
        bad = n_unique[n_unique > 1].index.tolist()
        raise ValueError(f"ratio_k is not constant within configuration(s) {bad[:3]}")
    return per_key.first().reset_index()


def _between_runs(long: pd.DataFrame) -> pd.Series:
    """Per configuration and metric: the sample std (ddof=1) over its runs of each run's mean over classes (NaN
    values dropped; NaN with fewer than two runs): the spread that decides whether one loss beats another."""
    per_run = long.groupby([*KEYS, *RUN_KEYS, "metric"], sort=True, observed=True, dropna=False)["value"].mean()
    return per_run.groupby(level=[*KEYS, "metric"], sort=True, observed=True, dropna=False).std(ddof=1)


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and population std of each metric over all classes, folds and seeds of a configuration.

    This is the seed's aggregation: for one (experiment, dataset, backbone, loss) every per-class value of
    every (seed, fold) job is pooled; NaN values are dropped (and counted in ``n_nan``); ``std`` uses
    ``ddof=0`` (numpy's default). ``run_std`` is the between-run spread beside it (:func:`_between_runs`).

    Returns:
        Long format, one row per configuration and metric, columns ``experiment, dataset, backbone, loss,
        [ratio_k,] metric, mean, std, run_std, n, n_nan, n_folds`` where ``n`` is the number of values used and
        ``n_folds`` the number of distinct (seed, fold) jobs.  Metrics keep the order of
        :data:`lfa.evaluation.metrics.METRIC_COLUMNS`.
    """
    _require(metrics, [*KEYS, *RUN_KEYS])
    cols = _metric_columns(metrics)
    long = _long(metrics, [*KEYS, *RUN_KEYS], cols)
    grouped = long.groupby([*KEYS, "metric"], sort=True, observed=True, dropna=False)["value"]
    out = grouped.agg(mean="mean", n="count", size="size")
    out["std"] = grouped.std(ddof=0)
    out["run_std"] = _between_runs(long)
    out["n_nan"] = out.pop("size") - out["n"]
    out = out.reset_index()
    jobs = metrics[[*KEYS, *RUN_KEYS]].drop_duplicates().groupby(KEYS, dropna=False).size()
    out = out.merge(jobs.rename("n_folds").reset_index(), on=KEYS, how="left")
    order = [*KEYS, "metric", "mean", "std", "run_std", "n", "n_nan", "n_folds"]
    ratio = _ratio_k(metrics)
    if ratio is not None:
        out = out.merge(ratio, on=KEYS, how="left")
        order.insert(len(KEYS), "ratio_k")
    out["metric"] = out["metric"].astype(str)
    out[["n", "n_nan", "n_folds"]] = out[["n", "n_nan", "n_folds"]].astype(np.int64)
    return out[order]


def per_class_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and population std (ddof=0) of each metric per class over the folds and seeds.

    Returns:
        Columns ``experiment, dataset, backbone, loss, class, class_name, metric, mean, std, n`` (``n``:
        non-NaN values used).  ``class_name`` is taken from the frame (empty string if absent).
    """
    _require(metrics, [*KEYS, "class"])
    cols = _metric_columns(metrics)
    frame = metrics
    if "class_name" not in frame.columns:
        frame = frame.assign(class_name="")
    names = frame.groupby([*KEYS, "class"], sort=False, dropna=False)["class_name"].first()
    long = _long(frame, [*KEYS, "class"], cols)
    grouped = long.groupby([*KEYS, "class", "metric"], sort=True, observed=True, dropna=False)["value"]
    out = grouped.agg(mean="mean", n="count")
    out["std"] = grouped.std(ddof=0)
    out = out.reset_index().merge(names.reset_index(), on=[*KEYS, "class"], how="left")
    out["metric"] = out["metric"].astype(str)
    out["n"] = out["n"].astype(np.int64)
    return out[[*KEYS, "class", "class_name", "metric", "mean", "std", "n"]]


def _smallest_p(n: int) -> float:
    """Smallest two-sided p-value an exact Wilcoxon signed-rank test can reach with n non-zero pairs."""
    return 2.0 / 2.0**n


def _paired_test(diff: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float, float, list[str]]:
    """Mean difference, bootstrap 95% interval, Wilcoxon p-value and notes for paired differences."""
    notes: list[str] = []
    n = diff.size
    if n == 0:
        return np.nan, np.nan, np.nan, np.nan, ["no paired (seed, fold) runs"]
    mean_diff = float(np.mean(diff))
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    ci_low, ci_high = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    n_nonzero = int(np.count_nonzero(diff))
    p_value = np.nan
    if n_nonzero < 2:
        notes.append(f"{n_nonzero} non-zero difference(s): Wilcoxon test needs at least 2, p-value is NaN")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                from scipy.stats import wilcoxon  # imported here: scipy.stats costs ~1 s per job at import

                p_value = float(wilcoxon(diff).pvalue)
            except (ValueError, ZeroDivisionError) as err:
                notes.append(f"Wilcoxon test failed: {err}")
    if n < 6:
        notes.append(
            f"n_pairs < 6: Wilcoxon cannot reach p<0.05 (with {n} pairs the smallest possible two-sided "
            f"p is 2/2^{n} = {_smallest_p(n):.4g})"
        )
    elif 2 <= n_nonzero < 6:
        notes.append(
            f"only {n_nonzero} non-zero differences (zeros are dropped): Wilcoxon cannot reach p<0.05 "
            f"(smallest possible two-sided p is 2/2^{n_nonzero} = {_smallest_p(n_nonzero):.4g})"
        )
    return mean_diff, ci_low, ci_high, p_value, notes


def _compare_pair(head: dict[str, object], ref: pd.DataFrame, other: pd.DataFrame, cols: list[str], n_boot: int,
                  seed: int) -> list[dict[str, object]]:
    """One row per metric: the paired test of the reference's fold means against another loss's."""
    paired = ref[cols].merge(other[cols], how="inner", left_index=True, right_index=True, suffixes=("_ref", "_other"))
    n_unpaired = len(ref.index.symmetric_difference(other.index))
    rows = []
    for metric in cols:
        a = paired[f"{metric}_ref"].to_numpy(dtype=np.float64)
        b = paired[f"{metric}_other"].to_numpy(dtype=np.float64)
        ok = ~(np.isnan(a) | np.isnan(b))
        diff = a[ok] - b[ok]
        mean_diff, ci_low, ci_high, p_value, notes = _paired_test(diff, n_boot, seed)
        if n_unpaired:
            notes.insert(0, f"{n_unpaired} unpaired (seed, fold) run(s) left out")
        if (~ok).any():
            notes.insert(0, f"{int((~ok).sum())} pair(s) with a NaN fold mean left out")
        rows.append({**head, "metric": metric, "n_pairs": int(diff.size), "mean_diff": mean_diff, "ci_low": ci_low,
                     "ci_high": ci_high, "p_value": p_value, "note": "; ".join(notes)})
    return rows


def compare(metrics: pd.DataFrame, reference: str = "fece", n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Paired comparison of the ``reference`` loss against every other loss, per metric.

    Within each (experiment, dataset, backbone), every job is reduced to its *fold mean* (the mean over
    classes of a metric, NaN dropped).  The reference's fold means are paired with another loss's by
    (seed, fold); runs present for only one of the two are left out (and counted in ``note``), as are pairs
    where either fold mean is NaN.  For the paired differences ``d = reference - other``:

    - ``mean_diff``: mean of ``d``;
    - ``ci_low``/``ci_high``: percentile bootstrap 95% interval of the mean over pairs (``n_boot``
      resamples from ``numpy.random.default_rng(seed)``, a fresh generator for every comparison, so a
      result does not depend on which other comparisons are made);
    - ``p_value``: two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon(d)``, zero differences
      dropped); NaN with fewer than 2 non-zero differences or if the test fails.

    With n non-zero pairs the smallest two-sided p-value the exact test can reach is 2/2^n, so fewer than
    6 pairs can never give p < 0.05; ``note`` says so.

    Returns:
        Columns ``experiment, dataset, backbone, loss, reference, metric, n_pairs, mean_diff, ci_low,
        ci_high, p_value, note`` (``loss`` is the other loss).  Configurations without the reference loss
        produce no rows.
    """
    _require(metrics, [*KEYS, *RUN_KEYS])
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    cols = _metric_columns(metrics)
    group_keys = KEYS[:-1]
    fold_means = (
        metrics.groupby([*KEYS, *RUN_KEYS], sort=True, dropna=False)[cols]
        .mean()  # skips NaN; NaN when a job has no value
        .reset_index()
    )
    rows: list[dict[str, object]] = []
    for group, frame in fold_means.groupby(group_keys, sort=True, dropna=False):
        group_values = dict(zip(group_keys, group, strict=True))
        ref = frame[frame["loss"] == reference].set_index(RUN_KEYS)
        if ref.empty:
            continue
        for other_loss, other in frame[frame["loss"] != reference].groupby("loss", sort=True):
            head = {**group_values, "loss": other_loss, "reference": reference}
            rows += _compare_pair(head, ref, other.set_index(RUN_KEYS), cols, n_boot, seed)
    columns = [*group_keys, "loss", "reference", "metric", "n_pairs", "mean_diff", "ci_low", "ci_high",
               "p_value", "note"]
    out = pd.DataFrame(rows, columns=columns)
    out["n_pairs"] = out["n_pairs"].astype(np.int64)
    for col in ("mean_diff", "ci_low", "ci_high", "p_value"):
        out[col] = out[col].astype(np.float64)
    return out


#: The metrics of an experiment's comparison table in the report: the family the Holm adjustment counts.
COMPARED_METRICS = ["auc", "sensitivity", "average_precision", "f1"]


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN left out of the family and kept NaN): the i-th
    smallest of m becomes max over j <= i of min(1, (m - j + 1) p_(j))."""
    p_values = np.asarray(p_values, dtype=np.float64)
    out = np.full(p_values.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p_values))
    order = valid[np.argsort(p_values[valid], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * p_values[order])
    out[order] = np.maximum.accumulate(scaled) if m else scaled
    return out


def holm_per_experiment(comparisons: pd.DataFrame) -> pd.DataFrame:
    """``p_holm``: the p-values of each experiment's comparison table (its blocks, losses and
    :data:`COMPARED_METRICS`) adjusted together by :func:`holm`; NaN for the other metrics' rows."""
    out = comparisons.assign(p_holm=np.nan)
    family = out["metric"].isin(COMPARED_METRICS)
    for _, rows in out[family].groupby("experiment", sort=False):
        out.loc[rows.index, "p_holm"] = holm(rows["p_value"].to_numpy())
    return out


def experiment_overall(runs: Mapping[str, Sequence[str | Path]]) -> pd.DataFrame:
    """Each experiment's runs' ``overall.parquet`` (beside their ``metrics.parquet``), ``experiment`` in front; a
    run evaluated before the file existed is left out (evaluate it again to have it)."""
    frames = []
    for experiment, files in runs.items():
        for path in files:
            overall = Path(path).with_name("overall.parquet")
            if overall.exists():
                df = read_table(overall, fix="delete it and rerun, to evaluate the run again")
                frames.append(df.assign(experiment=experiment)[["experiment", *df.columns]])
    if not frames:
        return pd.DataFrame({"experiment": pd.Series(dtype=str)})
    return pd.concat(frames, ignore_index=True)


def experiment_metrics(runs: Mapping[str, Sequence[str | Path]]) -> pd.DataFrame:
    """The metrics frame of every experiment: each of its runs' ``metrics.parquet``, ``experiment`` in front.

    A run shared by several experiments (one job, one folder) appears once per experiment.
    """
    cache: dict[str, pd.DataFrame] = {}
    frames = []
    for experiment, files in runs.items():
        for path in files:
            df = cache.setdefault(str(path), read_table(path, fix="delete it and rerun, to evaluate the run again"))
            frames.append(df.assign(experiment=experiment)[["experiment", *df.columns]])
    return pd.concat(frames, ignore_index=True)


def aggregate(runs: Mapping[str, Sequence[str | Path]], out_dir: str | Path,
              metadata: Mapping[str, str], reference: str = "fece") -> dict[str, Path]:
    """``metrics``, ``summary``, ``per_class``, ``comparisons`` and ``overall`` Parquet files from each experiment's
    runs.

    ``runs``: experiment → the ``metrics.parquet`` of each of its runs (:meth:`lfa.pipeline.plan.Plan.experiments`);
    ``reference``: the loss the others are compared with (``report.reference_loss``).
    """
    out_dir = Path(out_dir)
    metrics = experiment_metrics(runs)
    tables = {"metrics": metrics, "summary": summarize(metrics), "per_class": per_class_summary(metrics),
              "comparisons": holm_per_experiment(compare(metrics, reference)), "overall": experiment_overall(runs)}
    paths = {}
    for name, df in tables.items():
        paths[name] = out_dir / f"{name}.parquet"
        write_parquet(df, paths[name], {"lfa.version": __version__, **metadata})
    return paths


def runs_table(the_plan: Plan) -> pd.DataFrame:
    """Which run each experiment uses: one row per (experiment, job), with the experiment that trains it.

    ``trained_by`` differs from ``experiment`` for a shared job (one run, read by both experiments' tables).
    """
    first = the_plan.trained_by()
    rows = [{"experiment": name, "run": job.path, "key": job.key, "dataset": job.dataset, "backbone": job.backbone,
             "loss": job.loss, "seed": job.seed, "fold": job.fold, "trained_by": first[job.key]}
            for name, jobs in the_plan.experiments.items() for job in jobs]
    return pd.DataFrame(rows, columns=["experiment", "run", "key", "dataset", "backbone", "loss", "seed", "fold",
                                       "trained_by"])
