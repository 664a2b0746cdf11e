"""Common ground of the raw-data sources: in-memory and on-disk raw datasets, the Source interface, errors.

A source turns a raw dataset in its official on-disk layout into one of two forms:

- :class:`RawData`: every image decoded in memory (small datasets: digits, CIFAR-10);
- :class:`FileList`: relative image paths plus labels (large or many-file datasets: ImageNet, CAD-CAP,
  CelebA, Breast Histopathology). Only the selected subset is decoded, once, by the packer in
  :mod:`lfa.sources.images`, which writes ``images.npy`` in chunks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lfa.errors import ConfigError, RawDataMissing
from lfa.registry import Registry, origin_of

#: Extensions taken as images when a folder is listed (compared lower-case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class RawData:
    """A raw dataset in memory: images (N, H, W, C) uint8, labels (N, C) int8, names and ids.

    ``partition`` is each sample's official partition (e.g. CIFAR-10's ``train``/``test``), or None.
    ``groups``: each sample's group (e.g. a patient), or None; the folds then keep every group in one fold.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    ids: list[str]
    task: str = "single_label"  # or "multi_label"
    partition: list[str] | None = None
    groups: list[str] | None = None
    test: np.ndarray | None = None  # as FileList.test
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError("images must be uint8 of shape (N, H, W, C)")
        if self.labels.shape != (len(self.images), len(self.class_names)):
            raise ValueError("labels must have shape (N, number of classes)")
        if self.partition is not None and len(self.partition) != len(self.images):
            raise ValueError("partition must have one entry per image")
        if self.groups is not None and len(self.groups) != len(self.images):
            raise ValueError("groups must have one entry per image")


@dataclass
class FileList:
    """A raw dataset on disk: image paths relative to ``root``, labels (N, C) int8, names.

    ``ids`` default to the relative paths (unique within a dataset). ``groups``: each file's group (e.g. a
    patient), or None; the folds then keep every group in one fold (:func:`lfa.data.datasets.assign_folds`).
    ``test``: each file's membership of a fixed test split (e.g. a release's official test list), or None; the
    folds then rotate over the other files. ``notes``: what meta.json records besides (grouping, dropped classes).
    """

    root: Path
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    task: str = "single_label"
    partition: list[str] | None = None
    ids: list[str] = field(default_factory=list)
    groups: list[str] | None = None
    test: np.ndarray | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.ids:
            self.ids = list(self.paths)
        if self.labels.shape != (len(self.paths), len(self.class_names)):
            raise ValueError("labels must have shape (N, number of classes)")
        if self.partition is not None and len(self.partition) != len(self.paths):
            raise ValueError("partition must have one entry per file")
        if self.groups is not None and len(self.groups) != len(self.paths):
            raise ValueError("groups must have one entry per file")
        if self.test is not None and len(self.test) != len(self.paths):
            raise ValueError("test must have one entry per file")


class Source:
    """One raw dataset of the paper: where it comes from, its layout check, its download, its loader.

    Subclasses set the class attributes and implement :meth:`check` and :meth:`load`; automatic sources
    also implement :meth:`download`.
    """

    name: str = ""
    title: str = ""
    #: False for sources shipped with a package (no raw folder, no download rule).
    needs_raw: bool = True
    #: True: the pipeline never downloads it (licence or release on request); the user puts it in place.
    manual: bool = True
    #: Official partitions a dataset may draw from (``datasets.<name>.partitions``); empty: none.
    partitions: tuple[str, ...] = ()
    default_partitions: tuple[str, ...] = ()
    #: Dataset keys this source understands beyond the common ones (e.g. ``split_lists``). The config check
    #: refuses them on datasets of other sources; :func:`lfa.sources.check_specs` passes them to :meth:`check`.
    #: A source listing ``channels`` packs its images with 1 or 3 channels (others: always RGB).
    options: frozenset[str] = frozenset()
    task: str = "single_label"
    #: Side length of the packed images unless ``datasets.<name>.image_size`` says otherwise (0: native).
    default_image_size: int = 0
    #: Threads of the prepare job (image decoding runs in a thread pool).
    prepare_threads: int = 1
    #: True: :meth:`load` returns every image decoded (:class:`RawData`); False: files, packed as they stream.
    loads_in_memory: bool = False
    #: The seed's count table (lfa.data.reference) the whole dataset is compared with, if any.
    reference_table: str | None = None
    #: The seed's count table of the largest imbalance-ratio subset, if any.
    ratio_reference_table: str | None = None
    #: False: the datasets of this source share one raw root (the paper's sources: one official copy). True:
    #: each dataset has its own (``datasets.<name>.root``; the user's folders and tables), which
    #: :func:`lfa.sources.ensure_raw` passes to :meth:`check` as each spec's ``root``.
    root_per_dataset: bool = False

    def instructions(self, root: Path) -> str:
        """Where to get the data, where to put it, and the layout expected."""
        raise NotImplementedError

    def check(self, root: Path, specs: list[dict[str, Any]], strict: bool) -> dict[str, Any]:
        """Check the raw data under ``root`` (raise :class:`RawDataMissing` or :class:`RawDataInvalid`).

        ``strict``: also compare with the official checksums and published file counts. Returns a small
        JSON-able summary of what was checked.
        """
        raise NotImplementedError

    def present(self, root: Path) -> bool:
        """Whether the official layout seems to be there (cheap; :meth:`check` decides)."""
        raise NotImplementedError

    def download(self, root: Path, specs: list[dict[str, Any]]) -> None:
        """Fetch the raw data into ``root`` (automatic sources only)."""
        raise RawDataMissing(self.missing_message(root))

    def load(self, root: Path, spec: dict[str, Any]) -> RawData | FileList:
        raise NotImplementedError

    def missing_message(self, root: Path, problem: str = "") -> str:
        head = f"{self.title}: raw data not found under {root}" + (f" ({problem})" if problem else "")
        return f"{head}.\n{self.instructions(root)}"

    def input_files(self, root: Path, spec: dict[str, Any]) -> list[Path]:
        """Files besides the images that a dataset of this source is read from (e.g. a CSV table): inputs of
        its check and prepare jobs, so that editing one prepares the dataset again."""
        return []

    def check_spec(self, key: str, spec: dict[str, Any]) -> None:
        """Config check of this source's own keys of one dataset (``key``: ``datasets.<name>``); raise
        ValueError with a message naming the key (the config check turns it into a ConfigError)."""

    def check_layout(self, key: str, spec: dict[str, Any], root: Path) -> None:
        """The config check's look at raw data already in place under ``root`` (cheap: e.g. a table's header and
        first rows); raise :class:`lfa.errors.LfaError` naming the key. Missing data is the raw-data check's."""

    def known_partitions(self, spec: dict[str, Any]) -> list[str] | None:
        """The partition names ``datasets.<name>.partitions`` may use; None: they depend on the data and are
        checked when it is read (e.g. a CSV's partition column)."""
        return list(spec.get("split_lists") or self.partitions)

    def check_partitions(self, spec: dict[str, Any]) -> list[str]:
        parts = list(spec.get("partitions") or self.default_partitions)
        bad = [p for p in parts if p not in self.partitions]
        if bad:
            raise ConfigError(f"{self.name}: unknown partition(s) {bad}; known: {list(self.partitions)}")
        return parts


def list_images(folder: Path) -> list[str]:
    """Names of the image files directly inside ``folder``, sorted (hidden files skipped)."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it
                      if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file())


def list_dirs(folder: Path) -> list[str]:
    """Names of the sub-folders of ``folder``, sorted (hidden ones skipped)."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())


def one_hot(target: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.int8)[np.asarray(target, dtype=np.int64)]


_SOURCES: Registry[Source] = Registry("dataset source")


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator adding (an instance of) a :class:`Source` subclass to the registry under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Source)):
        raise TypeError(f"register_source expects a subclass of lfa.sources.Source, got {cls!r}")
    _SOURCES.register(cls.name, cls(), cls.title, origin_of(cls))
    return cls


def source_names() -> list[str]:
    return _SOURCES.names()


def get_source(name: str) -> Source:
    """The registered source ``name`` (an instance: its check, download and loader)."""
    return _SOURCES.get(name)
