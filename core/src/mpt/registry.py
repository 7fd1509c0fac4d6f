"""Registries: modality plugins (``mpt.modalities``) and components chosen by name — maskers
(``mpt.maskers``), objectives (``mpt.objectives``) and MAE targets (``mpt.targets``).

Discovery is lazy: listing reads entry-point metadata only; a plugin module is imported the first
time its modality (or component) is asked for. A plugin that fails to import is reported with its
reason and does not affect the others. A registry is the only place a name is resolved: configs,
the CLI's choices and ``mpt list`` all read them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from mpt.contract import PLUGIN_API, Modality
from mpt.errors import ConfigError, PluginError


def optional_import(module: str, needed_for: str, install: str) -> Any:  # noqa: ANN401 - the module
    """``importlib.import_module(module)``, or a :class:`PluginError` that says what needs it and how to
    install it — for the heavy dependencies a plugin imports lazily (PyAV, soundfile, rasterio). An
    ``OSError`` counts too: a wheel whose shared library is missing fails that way."""
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:
        raise PluginError(f"{needed_for} needs {module} ({exc}): {install}") from None

GROUP = "mpt.modalities"

_loaded: dict[str, Modality] = {}

API_CHANGES = (
    ". What changed from API 1 to 2 (docs/migrating-to-api-2.md): collate returns an "
    "mpt.Batch (input + meta), tokenize/normalize receive that Batch, embed receives the TokenSet, "
    "Tokenizer declares patch_shape and grid_axes, Target.loss takes a per-token weight, MAE targets and "
    "maskers are configured as {name: ..., params}")


@dataclass
class PluginStatus:
    """One installed plugin: its entry point, distribution and whether it loads."""

    name: str
    target: str
    dist: str
    version: str
    error: str | None = None


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def list_modalities() -> list[str]:
    """Names of the installed modalities, sorted. Imports no plugin code."""
    return sorted(_entry_points())


def get_modality(name: str) -> Modality:
    """The modality registered as ``name`` (imported on first use, then cached).

    Raises :class:`PluginError` for an unknown name (listing the known ones), a plugin that fails
    to import (with its reason), or one built for another :data:`~mpt.PLUGIN_API`.
    """
    if name in _loaded:
        return _loaded[name]
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise PluginError(f"unknown modality '{name}'; installed modalities: {known}")
    ep = eps[name]
    try:
        obj = ep.load()
    except Exception as exc:  # any import failure of third-party code is reported, not raised raw
        dist = ep.dist.name if ep.dist else "its package"
        raise PluginError(
            f"modality '{name}' ({ep.value}) failed to import: {type(exc).__name__}: {exc}. "
            f"Reinstall or fix {dist}; other modalities are unaffected."
        ) from exc
    modality = obj() if isinstance(obj, type) else obj
    if not isinstance(modality, Modality):
        raise PluginError(f"entry point '{name}' ({ep.value}) is not an mpt.Modality")
    api = getattr(modality, "plugin_api", None)
    if api != PLUGIN_API:
        dist = ep.dist.name if ep.dist else ep.value
        raise PluginError(
            f"modality '{name}' ({dist}) was built for plugin API {api}, this mpt-core speaks {PLUGIN_API}; "
            "install a matching version of the plugin or of mpt-core" + (API_CHANGES if api == 1 else "")
        )
    _loaded[name] = modality
    return modality


def plugin_version(name: str) -> str:
    """``"<distribution> <version>"`` of the plugin registered as ``name`` (``"unknown"`` if none)."""
    ep = _entry_points().get(name)
    return f"{ep.dist.name} {ep.dist.version}" if ep is not None and ep.dist is not None else "unknown"


def plugin_status() -> list[PluginStatus]:
    """Every installed plugin with its version and, if it cannot be used, why (loads each one)."""
    out = []
    for name, ep in sorted(_entry_points().items()):
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        status = PluginStatus(name=name, target=ep.value, dist=dist, version=version)
        try:
            get_modality(name)
        except PluginError as exc:
            status.error = str(exc)
        out.append(status)
    return out


# ----------------------------------------------------------------------------------------------
# components chosen by name: maskers, objectives, targets


@dataclass
class Registered:
    """A component registered by name.

    ``build(params, **context)`` makes it from ``params``, an instance of the dataclass ``config``
    (validated like the rest of the run config; None = no parameters). ``grid_axes`` (maskers): the
    least number of token-grid axes it needs (0 = works on unordered sets).
    """

    name: str
    build: Callable[..., Any]
    config: type | None = None
    description: str = ""
    grid_axes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Name → :class:`Registered` for one kind of component: the core's own (registered when
    ``core_module`` is imported) plus the entry points of ``group`` (each pointing at a
    :class:`Registered` or a zero-argument callable returning one), loaded on first use."""

    def __init__(self, kind: str, group: str, core_module: str) -> None:
        self.kind, self.group, self.core_module = kind, group, core_module
        self._items: dict[str, Registered] = {}
        self._plugins_loaded = False

    def register(self, item: Registered) -> Registered:
        if item.name in self._items and self._items[item.name] is not item:
            raise PluginError(f"{self.kind} '{item.name}' is registered twice")
        self._items[item.name] = item
        return item

    def _load(self) -> None:
        importlib.import_module(self.core_module)
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self._items:
                continue
            try:
                obj = ep.load()
                item = obj() if callable(obj) and not isinstance(obj, Registered) else obj
            except Exception as exc:  # a broken plugin is reported when its name is asked for
                item = Registered(ep.name, _broken(self.kind, ep, exc))
            if not isinstance(item, Registered) or item.name != ep.name:
                raise PluginError(f"entry point '{ep.name}' ({ep.value}) in group {self.group} must give an "
                                  f"mpt.registry.Registered named '{ep.name}'")
            self._items[ep.name] = item

    def names(self, extra: dict[str, Registered] | None = None) -> list[str]:
        self._load()
        return sorted({*self._items, *(extra or {})})

    def get(self, name: str, key: str, extra: dict[str, Registered] | None = None) -> Registered:
        """The component ``name``; an unknown name is a ConfigError on ``key`` listing the choices.
        ``extra`` adds modality-scoped entries (a modality's own targets)."""
        self._load()
        items = {**self._items, **(extra or {})}
        if name not in items:
            raise ConfigError(key, f"unknown {self.kind} {name!r}; choose one of {', '.join(sorted(items))}")
        return items[name]


def _broken(kind: str, ep: EntryPoint, exc: Exception) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise PluginError(f"{kind} '{ep.name}' ({ep.value}) failed to import: {type(exc).__name__}: {exc}")

    return fail


MASKERS = Registry("masker", "mpt.maskers", "mpt.masking")
OBJECTIVES = Registry("objective", "mpt.objectives", "mpt.objectives")
TARGETS = Registry("target", "mpt.targets", "mpt.targets")
REGISTRIES = {"maskers": MASKERS, "objectives": OBJECTIVES, "targets": TARGETS}
