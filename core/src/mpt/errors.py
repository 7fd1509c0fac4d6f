"""Errors users are meant to read: each names the file or key at fault and what to do."""

from __future__ import annotations

from pathlib import Path


class MptError(Exception):
    """Base class of every error mpt raises on purpose (the CLI prints these without a traceback)."""


class ConfigError(MptError):
    """A config key is unknown, mistyped or out of range. ``key`` is the dotted path."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"config key '{key}': {message}")


class DataError(MptError):
    """A data file cannot be used. ``path`` is the file, ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class PluginError(MptError):
    """A modality plugin is unknown, failed to import, or was built for another contract."""


class CheckpointError(MptError):
    """A checkpoint or pretrained-encoder folder is missing, corrupt, or does not match."""


class TrainingError(MptError):
    """Training cannot go on (non-finite loss, …)."""
