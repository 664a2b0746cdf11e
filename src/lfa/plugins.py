"""Plugins: the user's own losses, backbones and dataset sources, from files or modules named in the config.

``plugins: [my_losses.py, mypackage.losses]`` (paths relative to the working directory, or importable module
names) are imported before any registry is read: by :func:`lfa.config.check_config` (so when the Snakefile is
parsed, and by every ``lfa`` command that reads a config), by each workflow script that uses a registry, and by
``lfa … --plugin FILE``. A plugin registers with the package's own decorators (``@register_loss``,
``@register_backbone``, ``@register_source``); :func:`load_plugin` records what each one registered, so that

- the rules that use a plugin's entries list its file as an input (:func:`plugin_files`): editing it reruns
  exactly the jobs that use what it defines, and
- a training job's resume fingerprint and ``train_info.json`` carry the file's SHA-256
  (:func:`plugin_digests`): a state trained with an older version of the loss is never resumed.

Importing one plugin twice in a process (the Snakefile and a script, or ``--plugin`` and the config) is a
no-op; two plugins registering one name fail with both files named (:class:`lfa.registry.DuplicateNameError`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

#: The registries a plugin may add to, by kind (the names used in :attr:`Plugin.registered`).
KINDS = ("loss", "backbone", "source")


class PluginError(ValueError):
    """A plugin that cannot be used: missing, failing to import, or registering a name twice (the config check
    raises it as a :class:`lfa.config.ConfigError`)."""


@dataclass
class Plugin:
    """One imported plugin: as written in the config, its file, and the names it registered per kind."""

    spec: str
    path: Path | None
    module: ModuleType
    registered: dict[str, list[str]] = field(default_factory=dict)

    def sha256(self) -> str:
        """The SHA-256 of the plugin's file (of its module's file for a module name)."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest() if self.path else ""


_LOADED: dict[str, Plugin] = {}


def _registered() -> dict[str, set[str]]:
    from lfa.losses import loss_names
    from lfa.models import backbone_names
    from lfa.sources import source_names

    return {"loss": set(loss_names()), "backbone": set(backbone_names()), "source": set(source_names())}


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def _last_line(err: BaseException) -> str:
    """The last line of an exception's traceback, with the plugin's line it came from."""
    frames = [(f.filename, f.lineno) for f in traceback.extract_tb(err.__traceback__)
              if not f.filename.startswith("<frozen") and "importlib" not in Path(f.filename).parts
              and Path(f.filename).resolve() != Path(__file__).resolve()]
    if isinstance(err, SyntaxError) and err.filename:  # raised while compiling: the file has no frame yet
        frames.append((err.filename, err.lineno))
    where = f" (at {Path(frames[-1][0]).name}, line {frames[-1][1]})" if frames else ""
    return f"{traceback.format_exception_only(type(err), err)[-1].strip()}{where}"


def _import_file(path: Path) -> ModuleType:
    name = f"lfa_plugin_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_plugin(spec: str, key: str = "plugins") -> Plugin:
    """Import one plugin (a ``.py`` file or a module name) once; ``key`` names it in errors."""
    from lfa.registry import DuplicateNameError

    path = Path(spec).resolve() if _is_file(spec) else None
    ident = str(path) if path else spec
    if ident in _LOADED:
        return _LOADED[ident]
    if path is not None and not path.is_file():
        raise PluginError(f"{key}: plugin file {spec} not found (looked for {path}; paths are relative to the "
                          "working directory Snakemake or lfa runs in)")
    before = _registered()
    try:
        module = _import_file(path) if path else importlib.import_module(spec)
    except DuplicateNameError as err:
        raise PluginError(f"{key}: plugin {spec}: {err}") from None
    except Exception as err:
        hint = "" if path or not isinstance(err, ModuleNotFoundError) else (
            " (a module name must be importable: installed, or on PYTHONPATH; a file needs its .py path)")
        raise PluginError(f"{key}: plugin {spec} failed to import: {_last_line(err)}{hint}") from None
    if path is None and getattr(module, "__file__", None):
        path = Path(module.__file__).resolve()
    after = _registered()
    plugin = Plugin(spec, path, module, {kind: sorted(after[kind] - before[kind]) for kind in KINDS})
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
    """The files of the loaded plugins that registered any of these names (as the config wrote them)."""
    return sorted({p.spec if _is_file(p.spec) else str(p.path) for p in _owners(losses, backbones, sources)
                   if p.path is not None})


def plugin_digests(losses: Iterable[str] = (), backbones: Iterable[str] = (),
                   sources: Iterable[str] = ()) -> dict[str, str]:
    """``{plugin: sha256 of its file}`` of the loaded plugins that registered any of these names."""
    return {p.spec: p.sha256() for p in _owners(losses, backbones, sources)}
