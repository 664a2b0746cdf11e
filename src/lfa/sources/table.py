"""``source: csv``: images listed in a table of paths and labels, read as released (no converted copy needed).

Dataset keys (``datasets.<name>.<key>``, docs/datasets.md):

- ``csv``: the table (absolute, or relative to ``root``); ``root``: the folder the image paths are relative to;
- the image paths: ``path_column``, or ``path_template`` built from any columns (HAM10000's ``"{image_id}.jpg"``);
  ``roots``: several image folders searched in order (relative to ``root`` or absolute, globs allowed:
  ChestX-ray14's ``images_*/images``);
- labels, one of two ways:
  - ``labels_column`` with ``separator`` (default ``|``) and optional ``none_label``: one cell of label names
    per image, NIH ChestX-ray14's ``Finding Labels`` (``Cardiomegaly|Effusion``; ``No Finding`` with
    ``none_label: No Finding`` means no positive label; a blank cell too). Classes: the names found, sorted.
  - ``label_columns: [...]``: one column per label, CheXpert's ``1.0`` / ``0.0`` / ``-1.0`` (uncertain) /
    blank; ``uncertain: zero`` (default) or ``one`` says what -1 becomes, blank is 0. Classes: in this order.
- ``drop_classes``, ``allow_empty_classes``: a class without any positive image stops the check unless it is
  dropped or allowed;
- groups (all images of a group land in one fold): ``group_column`` (e.g. ``Patient ID``; ``none``: ungrouped on
  purpose) or ``group_pattern`` (a regex over the path whose first group is the group id); without either, a
  column or path component that looks like a patient or lesion stops the check (:mod:`lfa.sources.grouping`);
- ``join: {csv, key}``: a second table whose columns join each row by the key column ``key`` (ISIC 2019's metadata);
- ``partition_column`` (optional): each image's given partition, selectable with ``partitions:``;
- ``test_split``: a fixed test set (``{partition: v}``, ``{column: c, value: v}``, ``{file: list.txt}`` or
  ``{csv: second table}``); the folds then rotate over the rest;
- ``channels`` (optional, 1 or 3): see :mod:`lfa.sources.images`.

Single-label when every image has exactly one positive label, else multi-label. Every problem names its
cause, the key to fix and the CSV line numbers (the header being line 1). Never downloaded.
"""

from __future__ import annotations

import csv
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lfa.errors import ConfigError, RawDataInvalid, RawDataMissing
from lfa.sources.base import FileList, Source, register_source
from lfa.sources.grouping import NO_GROUPS, grouping_configured, groups_from_pattern, leak_hint, shared_groups
from lfa.sources.locate import absent_hint, locate, resolve_roots

#: What a cell of a label column may hold (after stripping blanks): 1, 0, -1 (uncertain), or nothing (0).
LABEL_VALUES = {1.0: 1, 0.0: 0, -1.0: -1}
UNCERTAIN = {"zero": 0, "one": 1}
#: The forms of ``test_split`` and what each names.
TEST_SPLIT_FORMS = {"partition": "a value of partition_column", "column": "a column (with value)",
                    "file": "a file listing the test images", "csv": "a second table of test images"}
#: Rows read by the config check's look at a table (the raw-data check reads all of them).
PEEK_ROWS = 2000


def _key(spec: dict[str, Any], key: str) -> str:
    return f"datasets.{spec.get('base', '<name>')}.{key}"


def _lines(bad: list[int]) -> str:
    """'line(s) 3, 7, 9' (the first five) and how many."""
    shown = ", ".join(str(n) for n in bad[:5])
    return f"{len(bad)} row(s), at line(s) {shown}{' ...' if len(bad) > 5 else ''}"


def table_path(root: Path, name: str) -> Path:
    """A table named by the config: absolute, or relative to ``root``."""
    path = Path(name)
    return path if path.is_absolute() else Path(root) / path


@dataclass
class Part:
    """One CSV file as read: header, rows (every field a string) and each row's line number."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[int]

    def index(self, spec: dict[str, Any], key: str, name: str) -> int:
        """The position of column ``name`` (given by ``key``), or an error listing the columns there are."""
        if name not in self.header:
            import difflib

            close = difflib.get_close_matches(name, self.header, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise RawDataInvalid(f"{self.path}: column {name!r} ({_key(spec, key)}) not found{hint}; the columns "
                                 f"are: {', '.join(repr(h) for h in self.header)}")
        return self.header.index(name)

    def values(self, spec: dict[str, Any], key: str, name: str, what: str, blank_ok: bool = False) -> list[str]:
        """The stripped cells of column ``name``; blank cells are an error naming their lines unless ``blank_ok``."""
        col = self.index(spec, key, name)
        values = [row[col].strip() for row in self.rows]
        empty = [line for line, v in zip(self.lines, values, strict=True) if not v]
        if empty and not blank_ok:
            raise RawDataInvalid(f"{self.path}: empty {what} in column {name!r} ({_key(spec, key)}): {_lines(empty)}")
        return values


def read_part(path: Path, limit: int | None = None) -> Part:
    """Read a CSV file (UTF-8, a BOM skipped, blank lines ignored); ``limit``: only its first rows."""
    try:
        return _parse_rows(path, limit)
    except UnicodeDecodeError as err:
        raise RawDataInvalid(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save the table as UTF-8 "
                             "(e.g. iconv -f latin1 -t utf-8)") from None


def _parse_rows(path: Path, limit: int | None) -> Part:
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
                if limit is not None and len(rows) >= limit:
                    break
        except csv.Error as err:
            raise RawDataInvalid(f"{path}:{reader.line_num}: not a CSV table ({err})") from None
    if wrong:
        raise RawDataInvalid(f"{path}: {_lines(wrong)} with another number of fields than the header's "
                             f"{len(header)}")
    if not rows:
        raise RawDataInvalid(f"{path}: the table has a header but no rows")
    return Part(path, header, rows, lines)


def _existing_table(root: Path, name: str, key: str) -> Path:
    path = table_path(root, name)
    if not path.is_file():
        raise RawDataMissing(f"table {path} ({key}) not found; give the CSV's path, absolute or relative to the "
                             f"root {root}")
    return path


def join_part(part: Part, root: Path, spec: dict[str, Any]) -> Part:
    """``part`` with the columns of the ``join`` table added to each row by the key column ``join.key`` (every
    key must be there; the first table's column wins where both have one)."""
    join = spec["join"]
    other = read_part(_existing_table(root, join["csv"], _key(spec, "join.csv")))
    mine, theirs = part.index(spec, "join.key", join["key"]), other.index(spec, "join.key", join["key"])
    by_key: dict[str, list[str]] = {}
    twice = []
    for line, row in zip(other.lines, other.rows, strict=True):
        if row[theirs].strip() in by_key:
            twice.append(line)
        by_key.setdefault(row[theirs].strip(), row)
    if twice:
        raise RawDataInvalid(f"{other.path}: key(s) in column {join['key']!r} listed twice in {_lines(twice)}; "
                             f"{_key(spec, 'join.key')} must name one row of the joined table per image")
    missing = [line for line, row in zip(part.lines, part.rows, strict=True) if row[mine].strip() not in by_key]
    if missing:
        raise RawDataInvalid(f"{part.path}: {_lines(missing)} have no row in the joined table {other.path} "
                             f"(key column {join['key']!r}, {_key(spec, 'join')}); every image must be in it")
    extra = [c for c, name in enumerate(other.header) if name not in part.header]
    rows = [row + [by_key[row[mine].strip()][c] for c in extra] for row in part.rows]
    return Part(part.path, part.header + [other.header[c] for c in extra], rows, part.lines)


def image_paths(part: Part, spec: dict[str, Any]) -> list[str]:
    """Each row's image path: ``path_template`` filled from the row's cells, or the ``path_column`` cell."""
    template = spec.get("path_template")
    if not template:
        return part.values(spec, "path_column", spec["path_column"], "image path(s)")
    key = "path_template"
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise ConfigError(f"{_key(spec, key)}: {template!r} is not a template of column names ({err})") from None
    if not fields:
        raise ConfigError(f"{_key(spec, key)}: {template!r} names no column (e.g. \"{{image_id}}.jpg\")")
    cells = {name: part.values(spec, key, name, "image path part(s)") for name in dict.fromkeys(fields)}
    return [template.format_map({name: cells[name][r] for name in cells}) for r in range(len(part.rows))]


def _label_names(part: Part, spec: dict[str, Any]) -> list[list[str]]:
    """``labels_column``: each row's label names (``none_label`` kept, to be dropped after the checks)."""
    sep, none = spec.get("separator", "|"), spec.get("none_label")
    cells = part.values(spec, "labels_column", spec["labels_column"], "labels", blank_ok=True)
    names = [[n.strip() for n in cell.split(sep) if n.strip()] for cell in cells]
    mixed = [line for line, found in zip(part.lines, names, strict=True)
             if none is not None and none in found and len(found) > 1]
    if mixed:
        raise RawDataInvalid(f"{part.path}: {spec['labels_column']!r} combines the none_label {none!r} with other "
                             f"labels in {_lines(mixed)}")
    return names


def _one_hot_names(names: list[list[str]], spec: dict[str, Any], path: Path) -> tuple[np.ndarray, list[str]]:
    none = spec.get("none_label")
    classes = sorted({n for found in names for n in found} - {none})
    if not classes:
        raise RawDataInvalid(f"{path}: column {spec['labels_column']!r} holds no label names (separator "
                             f"{spec.get('separator', '|')!r}, none_label {none!r})")
    index = {c: i for i, c in enumerate(classes)}
    labels = np.zeros((len(names), len(classes)), dtype=np.int8)
    for row, found in enumerate(names):
        for n in found:
            if n != none:
                labels[row, index[n]] = 1
    return labels, classes


def _label_columns(part: Part, spec: dict[str, Any]) -> np.ndarray:
    """``label_columns``: 1 / 0 / -1 (uncertain, as ``uncertain`` says) / blank (0) per row and label."""
    uncertain = UNCERTAIN[spec.get("uncertain", "zero")]
    names = list(spec["label_columns"])
    cols = [part.index(spec, "label_columns", name) for name in names]
    labels = np.zeros((len(part.rows), len(cols)), dtype=np.int8)
    bad: list[tuple[int, str, str]] = []
    for r, row in enumerate(part.rows):
        for j, col in enumerate(cols):
            cell = row[col].strip()
            if not cell:
                continue
            try:
                value = LABEL_VALUES[float(cell)]
            except (ValueError, KeyError):
                bad.append((part.lines[r], names[j], cell))
                continue
            labels[r, j] = uncertain if value == -1 else value
    if bad:
        shown = ", ".join(f"line {line} ({name}: {cell!r})" for line, name, cell in bad[:5])
        raise RawDataInvalid(f"{part.path}: {len(bad)} value(s) outside 1, 0, -1 (uncertain) and blank in the label "
                             f"columns ({_key(spec, 'label_columns')}), at {shown}{' ...' if len(bad) > 5 else ''}")
    return labels


def _groups(part: Part, paths: list[str], spec: dict[str, Any]) -> list[str] | None:
    """Each row's group: ``group_column`` (a blank cell: its own image where the source says so), or the first
    group of ``group_pattern`` in its path; None without grouping."""
    column = spec.get("group_column")
    if column and column != NO_GROUPS:
        blank_is_image = bool(spec.get("blank_group_is_image"))
        values = part.values(spec, "group_column", column, "group(s)", blank_ok=blank_is_image)
        return [value or path for value, path in zip(values, paths, strict=True)]
    if spec.get("group_pattern"):
        groups, unmatched = groups_from_pattern(paths, spec["group_pattern"])
        if unmatched:
            raise RawDataInvalid(f"{part.path}: {_key(spec, 'group_pattern')} '{spec['group_pattern']}' finds no "
                                 f"group in the path of {_lines([part.lines[r] for r in unmatched])} (e.g. "
                                 f"{paths[unmatched[0]]!r}); its first parenthesised group must match every path")
        return groups
    return None


def _test_rows(part: Part, spec: dict[str, Any], root: Path, partition: list[str] | None) -> np.ndarray | None:
    """Which rows of the main table form the fixed test set (``test_split``'s partition, column or file forms);
    None without one (the ``csv`` form adds its own rows, :func:`read_table`)."""
    split = spec.get("test_split")
    if not split or "csv" in split:
        return None
    if "partition" in split:
        if partition is None:
            raise ConfigError(f"{_key(spec, 'test_split.partition')}: set {_key(spec, 'partition_column')} to name "
                              "the test partition by one of its values")
        values, wanted, where = partition, str(split["partition"]), f"column {spec['partition_column']!r}"
    elif "column" in split:
        values = part.values(spec, "test_split.column", split["column"], "values", blank_ok=True)
        wanted, where = str(split.get("value", "")), f"column {split['column']!r}"
    else:
        return _listed_rows(part, spec, root, split["file"])
    test = np.array([v == wanted for v in values])
    if not test.any():
        found = sorted(set(values))
        raise RawDataInvalid(f"{part.path}: no row has {wanted!r} in {where} ({_key(spec, 'test_split')}); it holds "
                             f"{found[:10]}{' ...' if len(found) > 10 else ''}")
    return test


def _listed_rows(part: Part, spec: dict[str, Any], root: Path, name: str) -> np.ndarray:
    """Rows whose image is listed in the file ``name`` (one per line, as the path column or the path gives it)."""
    path = _existing_table(root, name, _key(spec, "test_split.file"))
    listed = {line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()}
    column = spec.get("path_column")
    cells = part.values(spec, "path_column", column, "image path(s)") if column else []
    paths = image_paths(part, spec)
    test = np.array([p in listed or (bool(cells) and cells[r] in listed) for r, p in enumerate(paths)])
    unknown = listed - set(paths) - set(cells)
    if unknown:
        shown = ", ".join(sorted(unknown)[:5])
        raise RawDataInvalid(f"{path}: {len(unknown)} listed image(s) are not in the table {part.path} "
                             f"({_key(spec, 'test_split.file')}); the first five: {shown}")
    return test


@dataclass
class Table:
    """What a table says, after its checks: image paths (as the table gives them, before ``roots``), labels (N, C)
    int8, classes, partitions, groups, test-split rows, the task, each row's CSV file and line, and notes for
    meta.json (dropped and empty classes, the grouping, the test split)."""

    csv: Path
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    partition: list[str] | None
    groups: list[str] | None
    test: np.ndarray | None
    lines: list[int]
    files: list[Path]
    header: list[str]
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return "single_label" if len(self.labels) and (self.labels.sum(axis=1) == 1).all() else "multi_label"

    def take(self, rows: np.ndarray | list[int]) -> Table:
        rows = list(rows)
        pick = lambda values: None if values is None else [values[r] for r in rows]  # noqa: E731
        return Table(self.csv, [self.paths[r] for r in rows], self.labels[rows], self.class_names,
                     pick(self.partition), pick(self.groups), None if self.test is None else self.test[rows],
                     [self.lines[r] for r in rows], [self.files[r] for r in rows], self.header, dict(self.notes))


def _part_of(root: Path, name: str, spec: dict[str, Any], key: str, limit: int | None) -> Part:
    part = read_part(_existing_table(root, name, _key(spec, key)), limit)
    return join_part(part, root, spec) if spec.get("join") else part


def read_table(root: Path, spec: dict[str, Any], limit: int | None = None) -> Table:
    """Read and check every row of a dataset's table (and of its test table, ``test_split: {csv: ...}``)."""
    root = Path(root)
    parts = [(_part_of(root, spec["csv"], spec, "csv", limit), False)]
    if "csv" in (spec.get("test_split") or {}):
        parts.append((_part_of(root, spec["test_split"]["csv"], spec, "test_split.csv", limit), True))
    paths: list[str] = []
    groups: list[str] | None = []
    partition: list[str] | None = [] if spec.get("partition_column") else None
    test, names, label_blocks, lines, files = [], [], [], [], []
    for part, is_test in parts:
        part_paths = image_paths(part, spec)
        part_groups = _groups(part, part_paths, spec)
        groups = None if part_groups is None else [*groups, *part_groups]
        if partition is not None:
            partition += part.values(spec, "partition_column", spec["partition_column"], "partition(s)")
        flags = _test_rows(part, spec, root, partition[len(paths):] if partition is not None else None)
        test.append(np.full(len(part.rows), is_test) if flags is None else flags)
        if spec.get("labels_column"):
            names += _label_names(part, spec)
        else:
            label_blocks.append(_label_columns(part, spec))
        paths += part_paths
        lines += part.lines
        files += [part.path] * len(part.rows)
    _refuse_duplicates(paths, lines, files)
    if spec.get("labels_column"):
        labels, classes = _one_hot_names(names, spec, parts[0][0].path)
    else:
        labels, classes = np.concatenate(label_blocks), list(spec["label_columns"])
    main = parts[0][0]
    return Table(main.path, paths, labels, classes, partition, groups,
                 np.concatenate(test) if spec.get("test_split") else None, lines, files, main.header)


def _refuse_duplicates(paths: list[str], lines: list[int], files: list[Path]) -> None:
    first: dict[str, int] = {}
    dup = []
    for row, path in enumerate(paths):
        if path in first:
            dup.append(row)
        first.setdefault(path, row)
    if dup:
        where = files[dup[0]]
        raise RawDataInvalid(f"{where}: image paths listed twice in {_lines([lines[r] for r in dup])}"
                             f"{'' if all(files[r] == where for r in dup) else ' (of the test table)'}; each image "
                             "must be one row")


def select_partitions(table: Table, spec: dict[str, Any]) -> Table:
    """The rows of the partitions ``datasets.<name>.partitions`` selects (every row without it)."""
    if table.partition is None:
        if spec.get("partitions"):
            raise RawDataInvalid(f"{_key(spec, 'partitions')}: set {_key(spec, 'partition_column')} to draw "
                                 "from partitions of a table")
        return table
    found = sorted(set(table.partition))
    wanted = list(spec.get("partitions") or found)
    unknown = [p for p in wanted if p not in found]
    if unknown:
        raise RawDataInvalid(f"{_key(spec, 'partitions')}: unknown partition(s) {unknown}; column "
                             f"{spec['partition_column']!r} of {table.csv} holds {found}")
    kept = table.take([i for i, p in enumerate(table.partition) if p in set(wanted)])
    if table.test is not None and table.test.any() and not kept.test.any():
        raise RawDataInvalid(f"{_key(spec, 'test_split')}: none of the {int(table.test.sum())} test images of "
                             f"{table.csv} is in the partitions {wanted} ({_key(spec, 'partitions')}); list their "
                             "partition too, or leave test_split out")
    return kept


def settle_classes(table: Table, spec: dict[str, Any]) -> Table:
    """Drop the classes of ``drop_classes`` (single-label data: with their images), then stop on a class without
    any positive image unless ``allow_empty_classes``, naming it and both ways on."""
    drop = list(spec.get("drop_classes") or [])
    unknown = [c for c in drop if c not in table.class_names]
    if unknown:
        raise RawDataInvalid(f"{_key(spec, 'drop_classes')}: {unknown} are not classes of {table.csv}; its classes: "
                             f"{table.class_names}")
    if drop:
        single = table.task == "single_label"
        keep = [c for c, name in enumerate(table.class_names) if name not in drop]
        table = Table(**{**table.__dict__, "labels": table.labels[:, keep],
                         "class_names": [table.class_names[c] for c in keep]})
        table.notes["dropped_classes"] = drop
        if single:
            kept = np.flatnonzero(table.labels.sum(axis=1) == 1)
            table.notes["dropped_images"] = len(table.paths) - len(kept)
            table = table.take(kept)
    empty = [name for name, n in zip(table.class_names, table.labels.sum(axis=0), strict=True) if n == 0]
    if empty and not spec.get("allow_empty_classes"):
        raise RawDataInvalid(
            f"{table.csv}: class(es) {', '.join(repr(c) for c in empty)} have no positive image"
            f"{' in the selected partitions' if spec.get('partitions') else ''}; nothing can be learnt or measured "
            f"for them. Set {_key(spec, 'drop_classes')}: {empty} to leave them out, or "
            f"{_key(spec, 'allow_empty_classes')}: true to keep them (the report then says 'no positives')")
    if empty:
        table.notes["empty_classes"] = empty
    return table


def check_grouping(table: Table, spec: dict[str, Any]) -> None:
    """Stop on a table whose images look grouped (patients, lesions) with no grouping configured, and on groups
    with images both in the test split and in the rest."""
    if not grouping_configured(spec):
        hint = leak_hint(table.header, table.paths, f"datasets.{spec.get('base', '<name>')}")
        if hint:
            raise ConfigError(hint)
    if table.groups is not None and table.test is not None:
        shared = shared_groups(table.groups, table.test)
        if shared:
            raise RawDataInvalid(f"{table.csv}: {len(shared)} group(s) have images both in the test split "
                                 f"({_key(spec, 'test_split')}) and in the rest, e.g. {', '.join(shared[:5])}; the "
                                 "test split must hold whole groups (check the split, or the grouping)")


def find_images(root: Path, table: Table, spec: dict[str, Any]) -> Table:
    """The table with each image's path relative to ``root`` as found on disk (over ``roots``, in order); images
    found nowhere are an error saying how many, the first five, and what the disk suggests instead."""
    if not root.is_dir():
        raise RawDataMissing(f"the root {root} ({_key(spec, 'root')}) is not a folder; it must be the folder "
                             f"the image paths of {table.csv} are relative to")
    folders = resolve_roots(root, spec.get("roots"), _key(spec, "roots"))
    found, absent = locate(root, folders, table.paths)
    if absent:
        where = (f"in {', '.join(str(f) for f in folders[:4])}{' ...' if len(folders) > 4 else ''}"
                 if spec.get("roots") else f"under {root}")
        hint = absent_hint(root, folders, absent, _key(spec, "path_template"), _key(spec, "roots"),
                           None if spec.get("path_template") else spec.get("path_column"))
        raise RawDataMissing(
            f"{len(absent)} of the {len(table.paths)} images listed in {table.csv} are not {where}; the first "
            f"five: {', '.join(absent[:5])}. "
            + (f"The cause: {hint}" if hint else f"{_key(spec, 'root')} must be the folder the paths are relative "
               f"to{'' if spec.get('roots') else ' (or set roots: the image folders)'}"))
    return Table(**{**table.__dict__, "paths": found})


def load_table(root: Path, spec: dict[str, Any], check_files: bool = True) -> Table:
    """A dataset's table, checked as the raw-data check and prepare read it: rows, partitions, classes,
    grouping and (``check_files``) every image found."""
    table = read_table(Path(root), spec)
    check_grouping(table, spec)
    table = settle_classes(select_partitions(table, spec), spec)
    return find_images(Path(root), table, spec) if check_files else table


def peek_grouping(root: Path, spec: dict[str, Any]) -> None:
    """The config check's look at a table already in place: its header and first rows, for images that look
    grouped with no grouping configured (the raw-data check reads every row)."""
    if grouping_configured(spec) or not table_path(root, spec["csv"]).is_file():
        return
    try:
        table = read_table(root, {k: v for k, v in spec.items() if k != "test_split"}, limit=PEEK_ROWS)
    except (RawDataInvalid, RawDataMissing):
        return  # the raw-data check names these, with every row read
    check_grouping(table, spec)


def check_table_keys(key: str, spec: dict[str, Any]) -> None:
    """The config check of a table's keys (before any file is read): what is required, what excludes what."""
    for needed, what in (("csv", "the table of image paths and labels"),):
        if not spec.get(needed):
            raise ConfigError(f"{key}.{needed}: required by source 'csv' ({what})")
    if not spec.get("path_column") and not spec.get("path_template"):
        raise ConfigError(f"{key}.path_column: required by source 'csv' (the table's column of image paths), or "
                          "path_template to build the paths from columns (e.g. \"{image_id}.jpg\")")
    if ("labels_column" in spec) == ("label_columns" in spec):
        raise ConfigError(
            f"{key}.labels_column: source 'csv' needs exactly one of labels_column (one column of label "
            f"names joined by separator) or label_columns (one 1/0/-1/blank column per label)"
            f"{', not both' if 'labels_column' in spec else ''}")
    only = {"labels_column": ("separator", "none_label"), "label_columns": ("uncertain",)}
    for given, keys in only.items():
        for k in keys:
            if given not in spec and k in spec:
                raise ConfigError(f"{key}.{k}: only used with {given}")
    labels = list(spec.get("label_columns") or [spec["labels_column"]])
    for k in ("path_column", "group_column", "partition_column"):
        if spec.get(k) in labels:
            raise ConfigError(f"{key}.{k}: {spec[k]!r} is also a label column")
    _check_group_keys(key, spec)
    _check_test_split(key, spec.get("test_split"))


def _check_group_keys(key: str, spec: dict[str, Any]) -> None:
    import re

    if spec.get("group_column") and spec.get("group_pattern"):
        raise ConfigError(f"{key}.group_pattern: give group_column or group_pattern, not both")
    pattern = spec.get("group_pattern")
    if pattern:
        try:
            groups = re.compile(pattern).groups
        except re.error as err:
            raise ConfigError(f"{key}.group_pattern: {pattern!r} is not a regular expression ({err})") from None
        if groups < 1:
            raise ConfigError(f"{key}.group_pattern: {pattern!r} has no parenthesised group; its first group is the "
                              "group id, e.g. '(patient\\d+)'")


def _check_test_split(key: str, split: Any) -> None:
    if not split:
        return
    if not isinstance(split, dict):
        raise ConfigError(f"{key}.test_split: {split!r}: 'official' is the release's own split of a named source "
                          f"(chexpert, chestxray14); source 'csv' takes one of {sorted(TEST_SPLIT_FORMS)}")
    forms = [form for form in TEST_SPLIT_FORMS if form in split]
    if len(forms) != 1:
        shown = "; ".join(f"{form}: {what}" for form, what in TEST_SPLIT_FORMS.items())
        raise ConfigError(f"{key}.test_split: give exactly one of {shown}")
    if forms == ["column"] and "value" not in split:
        raise ConfigError(f"{key}.test_split.value: required with test_split.column (the value marking test images)")
    if "value" in split and forms != ["column"]:
        raise ConfigError(f"{key}.test_split.value: only used with test_split.column")


@register_source
class CsvSource(Source):
    name = "csv"
    title = "Image table (CSV)"
    manual = True
    task = ""  # from the data: single-label when every image has exactly one positive label
    options = frozenset({"csv", "path_column", "path_template", "roots", "labels_column", "separator", "none_label",
                         "label_columns", "uncertain", "group_column", "group_pattern", "join", "partition_column",
                         "test_split", "drop_classes", "allow_empty_classes", "channels"})
    default_image_size = 128
    prepare_threads = 8
    root_per_dataset = True

    def instructions(self, root: Path) -> str:
        return (
            "source: csv reads your own table of image paths and labels; it is never downloaded.\n"
            f"Expected: the images under {root} (any layout), and a CSV table (datasets.<name>.csv, absolute or "
            "relative to the root) with a header line, the image paths (path_column, or path_template built from "
            "columns; roots: several image folders) and the labels: one column of separator-joined names "
            "(labels_column, e.g. NIH ChestX-ray14's 'Finding Labels', none_label: No Finding) or one column of "
            "1/0/-1/blank per label (label_columns, CheXpert's train.csv).\n"
            "Point datasets.<name>.root at the folder the paths are relative to, then rerun."
        )

    def present(self, root: Path) -> bool:
        return root.is_dir()

    def table_spec(self, root: Path, spec: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        """The root and the table keys the reader uses: the dataset's own (a named release adds its preset)."""
        return Path(root), spec

    def check_spec(self, key: str, spec: dict[str, Any]) -> None:
        check_table_keys(key, spec)

    def check_layout(self, key: str, spec: dict[str, Any], root: Path) -> None:
        root, full = self.table_spec(root, {**spec, "base": key.split(".", 1)[1]})
        peek_grouping(root, full)

    def input_files(self, root: Path, spec: dict[str, Any]) -> list[Path]:
        root, spec = self.table_spec(root, spec)
        split = spec.get("test_split") or {}
        names = [spec["csv"], (spec.get("join") or {}).get("csv"), split.get("csv"), split.get("file")]
        return [table_path(root, name) for name in names if name]

    def known_partitions(self, spec: dict[str, Any]) -> list[str] | None:
        return None if spec.get("partition_column") else []

    def check(self, root: Path, specs: list[dict[str, Any]], strict: bool) -> dict[str, Any]:
        tables = []
        for spec in specs:
            table = load_table(*self.table_spec(Path(spec.get("root", root)), spec))
            tables.append({"csv": str(table.csv), "images": len(table.paths), "classes": len(table.class_names),
                           "groups": len(set(table.groups)) if table.groups is not None else None,
                           "test_images": int(table.test.sum()) if table.test is not None else None})
        return {"tables": tables}

    def load(self, root: Path, spec: dict[str, Any]) -> FileList:
        root, spec = self.table_spec(root, spec)
        table = load_table(root, spec)
        return FileList(root, table.paths, table.labels, table.class_names, table.task, table.partition,
                        groups=table.groups, test=table.test, notes={**table.notes, **grouping_note(spec, table)})


def grouping_note(spec: dict[str, Any], table: Table) -> dict[str, Any]:
    """How the images were grouped and split, as meta.json records it for the report."""
    if spec.get("group_pattern"):
        grouping = f"group_pattern '{spec['group_pattern']}'"
    elif spec.get("group_column") and spec["group_column"] != NO_GROUPS:
        grouping = f"group_column {spec['group_column']!r}"
    else:
        grouping = "none (group_column: none)" if spec.get("group_column") == NO_GROUPS else "none"
    note: dict[str, Any] = {"grouping": grouping}
    if table.test is not None:
        split = spec["test_split"]
        form = next(form for form in TEST_SPLIT_FORMS if form in split)
        note["test_split"] = {"rule": f"{form}: {split[form]}" + (f" = {split['value']}" if form == "column" else ""),
                              "images": int(table.test.sum())}
    return note
