"""Plugins: the user's own losses, backbones and dataset sources, from files or modules named in the config.

``plugins: [my_losses.py, mypackage.losses]`` (paths relative to the working directory, or importable module
names) are imported before any registry is read: by :func:`lfa.pipeline.config.check_config` (so when the Snakefile is
parsed, and by every ``lfa`` command that reads a config), by the jobs that use a registry (``lfa.training.train.train``
and ``lfa.data.datasets.prepare`` import the plugins their job or dataset spec carries, the ``lfa_curves`` script
those of the config), and by ``lfa … --plugin FILE``. A plugin registers with the package's own decorators
(``@register_loss``, ``@register_backbone``, ``@register_source``); :func:`load_plugin` records what each one
registered, so that

- the rules that use a plugin's entries list its file as an input (:func:`plugin_files`): editing it reruns
  exactly the jobs that use what it defines, and
- a training job's resume fingerprint and ``train_info.json`` carry the SHA-256 of its files
  (:func:`plugin_digests`): a state trained with an older version of the loss is never resumed.

A plugin's files are its own and the modules of the user's it imports (beside a plugin file, or inside a plugin
package); installed libraries are not among them. A backbone prefix resolver (``register_backbone_resolver``)
registered by a plugin is not tracked: its names are not the plugin's inputs.

Importing one plugin twice in a process (the Snakefile and a script, or ``--plugin`` and the config) is a
no-op; two plugins registering one name fail with both files named (:class:`lfa.registry.DuplicateNameError`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from lfa.errors import PluginError
from lfa.logs import error_line

#: The registries a plugin may add to, by kind (the names used in :attr:`Plugin.registered`).
KINDS = ("loss", "backbone", "source")


@dataclass
class Plugin:
    """One imported plugin: as written in the config, its files, and the names it registered per kind.

    ``files``: the plugin's own file first, then the modules of the user's it imported (those beside a plugin
    file, or inside a plugin package; never installed libraries): what its jobs depend on.
    """

    spec: str
    path: Path | None
    module: ModuleType
    registered: dict[str, list[str]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def sha256(self) -> str:
        """One SHA-256 of the contents of :attr:`files` (not of their names: a moved checkout is the same code)."""
        digest = hashlib.sha256()
        for f in self.files:
            digest.update(hashlib.sha256(f.read_bytes()).digest())
        return digest.hexdigest()


_LOADED: dict[str, Plugin] = {}


def _registered() -> dict[str, set[str]]:
    from lfa.losses import loss_names
    from lfa.models import backbone_names
    from lfa.sources import source_names

    return {"loss": set(loss_names()), "backbone": set(backbone_names()), "source": set(source_names())}


def _user_files(path: Path, module: ModuleType, file_plugin: bool, new_modules: set[str]) -> list[Path]:
    """``path`` and the files of ``new_modules`` under the plugin's home (a plugin file's folder, or a plugin
    module's top-level package), leaving out installed libraries and this package."""
    if file_plugin:
        home = path.parent
    else:
        top = sys.modules.get(module.__name__.split(".")[0], module)
        if not getattr(top, "__path__", None) or not getattr(top, "__file__", None):
            return [path]  # a single module: itself
        home = Path(top.__file__).resolve().parent
    skip = [Path(p).resolve() for p in {sys.prefix, sys.base_prefix}] + [Path(__file__).resolve().parent]
    found = []
    for name in sorted(new_modules):
        file = getattr(sys.modules.get(name), "__file__", None) or ""
        f = Path(file).resolve() if file.endswith(".py") else None
        if f and f != path and f.is_relative_to(home) and "site-packages" not in f.parts \
                and not any(f.is_relative_to(s) for s in skip):
            found.append(f)
    return [path, *found]


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def _import_file(path: Path) -> ModuleType:
    name = f"lfa_plugin_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:  # modules beside the plugin file import as they would beside a script
        sys.path.append(str(path.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_plugin(spec: str, key: str = "plugins") -> Plugin:
    """Import one plugin (a ``.py`` file or a module name) once; ``key`` names it in errors."""
    from lfa.errors import DuplicateNameError

    path = Path(spec).resolve() if _is_file(spec) else None
    ident = str(path) if path else spec
    if ident in _LOADED:
        return _LOADED[ident]
    if path is not None and not path.is_file():
        raise PluginError(f"{key}: plugin file {spec} not found (looked for {path}; paths are relative to the "
                          "working directory Snakemake or lfa runs in)")
    before, modules_before = _registered(), set(sys.modules)
    try:
        module = _import_file(path) if path else importlib.import_module(spec)
    except DuplicateNameError as err:
        raise PluginError(f"{key}: plugin {spec}: {err}") from None
    except Exception as err:
        hint = "" if path or not isinstance(err, ModuleNotFoundError) else (
            " (a module name must be importable: installed, or on PYTHONPATH; a file needs its .py path)")
        raise PluginError(f"{key}: plugin {spec} failed to import: {error_line(err)}{hint}") from None
    if path is None and getattr(module, "__file__", None):
        path = Path(module.__file__).resolve()
    after = _registered()
    files = _user_files(path, module, _is_file(spec), set(sys.modules) - modules_before) if path else []
    plugin = Plugin(spec, path, module, {kind: sorted(after[kind] - before[kind]) for kind in KINDS}, files)
    _LOADED[ident] = plugin
    return plugin


def load_plugins(specs: Iterable[str], key: str = "plugins") -> list[Plugin]:
    """Import each plugin of ``specs`` (in order; once per process)."""
    return [load_plugin(spec, f"{key}[{i}]") for i, spec in enumerate(specs)]


def use_config_plugins(config: dict[str, Any]) -> list[Plugin]:
    """Import the plugins of a config (``plugins:``): what every workflow script that reads a registry calls."""
    return load_plugins(config.get("plugins", []))


def loaded() -> list[Plugin]:
    """The plugins imported so far, in import order."""
    return list(_LOADED.values())


def _owners(losses: Iterable[str], backbones: Iterable[str], sources: Iterable[str]) -> list[Plugin]:
    wanted = {"loss": set(losses), "backbone": set(backbones), "source": set(sources)}
    return [p for p in _LOADED.values() if any(set(p.registered.get(k, ())) & wanted[k] for k in KINDS)]


def plugin_files(losses: Iterable[str] = (), backbones: Iterable[str] = (), sources: Iterable[str] = ()) -> list[str]:
    """The files of the loaded plugins that registered any of these names: a plugin file as the config wrote
    it, the others relative to the working directory where they are under it."""
    out = set()
    for p in _owners(losses, backbones, sources):
        for f in p.files:
            out.add(p.spec if f == p.path and _is_file(p.spec) else _relative(f))
    return sorted(out)


def _relative(path: Path) -> str:
    cwd = Path.cwd().resolve()
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)


def plugin_digests(losses: Iterable[str] = (), backbones: Iterable[str] = (),
                   sources: Iterable[str] = ()) -> dict[str, str]:
    """``{plugin: sha256 of its files}`` of the loaded plugins that registered any of these names."""
    return {p.spec: p.sha256() for p in _owners(losses, backbones, sources)}
