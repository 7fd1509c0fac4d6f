"""Modality plugins, discovered through the ``mpt.modalities`` entry-point group.

Discovery is lazy: listing reads entry-point metadata only; a plugin module is imported the first
time its modality is asked for. A plugin that fails to import is reported with its reason and
does not affect the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from mpt.contract import PLUGIN_API, Modality
from mpt.errors import PluginError

GROUP = "mpt.modalities"

_loaded: dict[str, Modality] = {}


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
        raise PluginError(
            f"modality '{name}' was built for plugin API {api}, this mpt-core speaks {PLUGIN_API}; "
            "install a matching version of the plugin or of mpt-core"
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
