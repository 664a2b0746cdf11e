"""``source: csv``: your own images listed in a table of paths and labels, as medical multi-label sets ship.

Dataset keys (``datasets.<name>.<key>``):

- ``csv``: the table (absolute, or relative to ``root``); ``root``: the folder the image paths are relative to;
- ``path_column``: the column of image paths;
- labels, one of two ways:
  - ``labels_column`` with ``separator`` (default ``|``) and optional ``none_label``: one cell of label names
    per image, NIH ChestX-ray14's ``Finding Labels`` (``Cardiomegaly|Effusion``; ``No Finding`` with
    ``none_label: No Finding`` means no positive label; a blank cell too). Classes: the names found, sorted.
  - ``label_columns: [...]``: one column per label, CheXpert's ``1.0`` / ``0.0`` / ``-1.0`` (uncertain) /
    blank; ``uncertain: zero`` (default) or ``one`` says what -1 becomes, blank is 0. Classes: in this order.
- ``group_column`` (optional, e.g. ``Patient ID``): all images of a group land in one fold (group k-fold);
- ``partition_column`` (optional): each image's given partition, selectable with ``partitions:``;
- ``channels`` (optional, 1 or 3): see :mod:`lfa.sources.images`.

Multi-label. Every problem names its cause: a missing table or root, a column not found (with the columns
there are), a row with another number of fields, empty or duplicate paths, label values outside the
allowed set (with their CSV line numbers, the header being line 1), images listed but absent (how many, the
first five). Never downloaded.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lfa.errors import ConfigError, RawDataInvalid, RawDataMissing
from lfa.sources.base import FileList, Source, register_source

#: What a cell of a label column may hold (after stripping blanks): 1, 0, -1 (uncertain), or nothing (0).
LABEL_VALUES = {1.0: 1, 0.0: 0, -1.0: -1}
UNCERTAIN = {"zero": 0, "one": 1}


def _key(spec: dict[str, Any], key: str) -> str:
    return f"datasets.{spec.get('base', '<name>')}.{key}"


def _lines(bad: list[int]) -> str:
    """'line(s) 3, 7, 9' (the first five) and how many."""
    shown = ", ".join(str(n) for n in bad[:5])
    return f"{len(bad)} row(s), at line(s) {shown}{' ...' if len(bad) > 5 else ''}"


def table_path(root: Path, spec: dict[str, Any]) -> Path:
    """The table ``csv``: absolute, or relative to ``root``."""
    path = Path(spec["csv"])
    return path if path.is_absolute() else Path(root) / path


@dataclass
class Table:
    """What a table says: image paths (relative to root), labels (N, C) int8, classes, partitions, groups, and
    each row's line number in the CSV file."""

    csv: Path
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    partition: list[str] | None
    groups: list[str] | None
    lines: list[int]


def _read_rows(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    try:
        return _parse_rows(path)
    except UnicodeDecodeError as err:
        raise RawDataInvalid(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save the table as UTF-8 "
                             "(e.g. iconv -f latin1 -t utf-8)") from None


def _parse_rows(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise RawDataInvalid(f"{path}: the table is empty (no header line)") from None
        except csv.Error as err:
            raise RawDataInvalid(f"{path}: not a CSV table ({err})") from None
        rows, lines, wrong = [], [], []
        try:
            for row in reader:
                if not row or not any(cell.strip() for cell in row):
                    continue  # blank lines
                if len(row) != len(header):
                    wrong.append(reader.line_num)
                rows.append(row)
                lines.append(reader.line_num)
        except csv.Error as err:
            raise RawDataInvalid(f"{path}:{reader.line_num}: not a CSV table ({err})") from None
    if wrong:
        raise RawDataInvalid(f"{path}: {_lines(wrong)} with another number of fields than the header's "
                             f"{len(header)}")
    if not rows:
        raise RawDataInvalid(f"{path}: the table has a header but no rows")
    return header, rows, lines


def _column(header: list[str], spec: dict[str, Any], key: str, name: str, path: Path) -> int:
    if name not in header:
        import difflib

        close = difflib.get_close_matches(name, header, n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise RawDataInvalid(f"{path}: column {name!r} ({_key(spec, key)}) not found{hint}; the columns are: "
                             f"{', '.join(repr(h) for h in header)}")
    return header.index(name)


def _labels_from_names(cells: list[str], lines: list[int], spec: dict[str, Any], path: Path
                       ) -> tuple[np.ndarray, list[str]]:
    sep, none = spec.get("separator", "|"), spec.get("none_label")
    names = [[n.strip() for n in cell.split(sep) if n.strip()] for cell in cells]
    mixed = [line for line, found in zip(lines, names, strict=True) if none is not None and none in found
             and len(found) > 1]
    if mixed:
        raise RawDataInvalid(f"{path}: {spec['labels_column']!r} combines the none_label {none!r} with other labels "
                             f"in {_lines(mixed)}")
    classes = sorted({n for found in names for n in found} - {none})
    if not classes:
        raise RawDataInvalid(f"{path}: column {spec['labels_column']!r} holds no label names (separator "
                             f"{sep!r}, none_label {none!r})")
    index = {c: i for i, c in enumerate(classes)}
    labels = np.zeros((len(cells), len(classes)), dtype=np.int8)
    for row, found in enumerate(names):
        for n in found:
            if n != none:
                labels[row, index[n]] = 1
    return labels, classes


def _labels_from_columns(rows: list[list[str]], cols: list[int], lines: list[int], spec: dict[str, Any],
                         path: Path) -> tuple[np.ndarray, list[str]]:
    uncertain = UNCERTAIN[spec.get("uncertain", "zero")]
    names = list(spec["label_columns"])
    labels = np.zeros((len(rows), len(cols)), dtype=np.int8)
    bad: list[tuple[int, str, str]] = []
    for r, row in enumerate(rows):
        for j, col in enumerate(cols):
            cell = row[col].strip()
            if not cell:
                continue
            try:
                value = LABEL_VALUES[float(cell)]
            except (ValueError, KeyError):
                bad.append((lines[r], names[j], cell))
                continue
            labels[r, j] = uncertain if value == -1 else value
    if bad:
        shown = ", ".join(f"line {line} ({name}: {cell!r})" for line, name, cell in bad[:5])
        raise RawDataInvalid(f"{path}: {len(bad)} value(s) outside 1, 0, -1 (uncertain) and blank in the label "
                             f"columns ({_key(spec, 'label_columns')}), at {shown}{' ...' if len(bad) > 5 else ''}")
    return labels, names


def _values(rows: list[list[str]], col: int, lines: list[int], what: str, path: Path, spec: dict[str, Any],
            key: str) -> list[str]:
    values = [row[col].strip() for row in rows]
    empty = [line for line, v in zip(lines, values, strict=True) if not v]
    if empty:
        raise RawDataInvalid(f"{path}: empty {what} in column {spec[key]!r} ({_key(spec, key)}): {_lines(empty)}")
    return values


def read_image_table(root: Path, spec: dict[str, Any], check_files: bool = True) -> Table:
    """Read and check the table of one dataset spec (every row; the partitions are selected by :meth:`load`)."""
    root = Path(root)
    path = table_path(root, spec)
    if not path.is_file():
        raise RawDataMissing(f"table {path} ({_key(spec, 'csv')}) not found; give the CSV's path, absolute or "
                             f"relative to the root {root}")
    header, rows, lines = _read_rows(path)
    path_col = _column(header, spec, "path_column", spec["path_column"], path)
    paths = _values(rows, path_col, lines, "image path(s)", path, spec, "path_column")
    first: dict[str, int] = {}
    dup = []
    for line, p in zip(lines, paths, strict=True):
        if p in first:
            dup.append(line)
        first.setdefault(p, line)
    if dup:
        raise RawDataInvalid(f"{path}: image paths listed twice in {_lines(dup)}; each image must be one row")
    if spec.get("labels_column"):
        col = _column(header, spec, "labels_column", spec["labels_column"], path)
        labels, classes = _labels_from_names([row[col] for row in rows], lines, spec, path)
    else:
        cols = [_column(header, spec, "label_columns", name, path) for name in spec["label_columns"]]
        labels, classes = _labels_from_columns(rows, cols, lines, spec, path)
    groups = partition = None
    if spec.get("group_column"):
        col = _column(header, spec, "group_column", spec["group_column"], path)
        groups = _values(rows, col, lines, "group(s)", path, spec, "group_column")
    if spec.get("partition_column"):
        col = _column(header, spec, "partition_column", spec["partition_column"], path)
        partition = _values(rows, col, lines, "partition(s)", path, spec, "partition_column")
    if check_files:
        if not root.is_dir():
            raise RawDataMissing(f"the root {root} ({_key(spec, 'root')}) is not a folder; it must be the folder "
                                 f"the image paths of {path} are relative to")
        absent = [p for p in paths if not (root / p).is_file()]
        if absent:
            raise RawDataMissing(
                f"{len(absent)} of the {len(paths)} images listed in {path} (column {spec['path_column']!r}) are not "
                f"under {root}; the first five: {', '.join(absent[:5])}. {_key(spec, 'root')} must be the folder "
                "the paths are relative to")
    return Table(path, paths, labels, classes, partition, groups, lines)


def _partition_rows(table: Table, spec: dict[str, Any]) -> list[int]:
    """The rows of the partitions ``datasets.<name>.partitions`` selects (every row without it)."""
    if table.partition is None:
        if spec.get("partitions"):
            raise RawDataInvalid(f"{_key(spec, 'partitions')}: set {_key(spec, 'partition_column')} to draw "
                                 "from partitions of a table")
        return list(range(len(table.paths)))
    found = sorted(set(table.partition))
    wanted = list(spec.get("partitions") or found)
    unknown = [p for p in wanted if p not in found]
    if unknown:
        raise RawDataInvalid(f"{_key(spec, 'partitions')}: unknown partition(s) {unknown}; column "
                             f"{spec['partition_column']!r} of {table.csv} holds {found}")
    return [i for i, p in enumerate(table.partition) if p in set(wanted)]


@register_source
class CsvSource(Source):
    name = "csv"
    title = "Image table (CSV)"
    manual = True
    task = "multi_label"
    options = frozenset({"csv", "path_column", "labels_column", "separator", "none_label", "label_columns",
                         "uncertain", "group_column", "partition_column", "channels"})
    default_image_size = 128
    prepare_threads = 8
    root_per_dataset = True

    def instructions(self, root: Path) -> str:
        return (
            "source: csv reads your own table of image paths and labels; it is never downloaded.\n"
            f"Expected: the images under {root} (any layout), and a CSV table (datasets.<name>.csv, absolute or "
            "relative to the root) with a header line, a column of image paths relative to the root "
            "(datasets.<name>.path_column) and the labels: one column of separator-joined names "
            "(labels_column, e.g. NIH ChestX-ray14's 'Finding Labels', none_label: No Finding) or one column of "
            "1/0/-1/blank per label (label_columns, CheXpert's train.csv).\n"
            "Point datasets.<name>.root at the folder the paths are relative to, then rerun."
        )

    def present(self, root: Path) -> bool:
        return root.is_dir()

    def check_spec(self, key: str, spec: dict[str, Any]) -> None:
        for needed, what in (("csv", "the table of image paths and labels"),
                             ("path_column", "the table's column of image paths")):
            if not spec.get(needed):
                raise ConfigError(f"{key}.{needed}: required by source 'csv' ({what})")
        if ("labels_column" in spec) == ("label_columns" in spec):
            raise ConfigError(
                f"{key}.labels_column: source 'csv' needs exactly one of labels_column (one column of label "
                f"names joined by separator) or label_columns (one 1/0/-1/blank column per label)"
                f"{', not both' if 'labels_column' in spec else ''}")
        only = {"labels_column": ("separator", "none_label"), "label_columns": ("uncertain",)}
        for given, keys in only.items():
            if given not in spec:
                for k in keys:
                    if k in spec:
                        raise ConfigError(f"{key}.{k}: only used with {given}")
        labels = list(spec.get("label_columns") or [spec["labels_column"]])
        for k in ("path_column", "group_column", "partition_column"):
            if spec.get(k) in labels:
                raise ConfigError(f"{key}.{k}: {spec[k]!r} is also a label column")

    def input_files(self, root: Path, spec: dict[str, Any]) -> list[Path]:
        return [table_path(root, spec)]

    def known_partitions(self, spec: dict[str, Any]) -> list[str] | None:
        return None if spec.get("partition_column") else []

    def check(self, root: Path, specs: list[dict[str, Any]], strict: bool) -> dict[str, Any]:
        tables = []
        for spec in specs:
            table = read_image_table(Path(spec.get("root", root)), spec)
            _partition_rows(table, spec)
            tables.append({"csv": str(table.csv), "images": len(table.paths), "classes": len(table.class_names),
                           "groups": len(set(table.groups)) if table.groups is not None else None})
        return {"tables": tables}

    def load(self, root: Path, spec: dict[str, Any]) -> FileList:
        table = read_image_table(Path(root), spec)
        pick = _partition_rows(table, spec)
        return FileList(Path(root), [table.paths[i] for i in pick], table.labels[pick], table.class_names,
                        "multi_label", None if table.partition is None else [table.partition[i] for i in pick],
                        groups=None if table.groups is None else [table.groups[i] for i in pick])
