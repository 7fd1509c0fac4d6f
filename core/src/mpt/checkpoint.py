"""Training checkpoints: ``OUT/checkpoints/step-N/`` written atomically, the last K kept.

A checkpoint holds the objective's weights (``model.safetensors``), the optimizer state
(``optimizer.pt``, read back with ``weights_only=True``) and ``state.json`` (step, config digest).
It is written to a temporary folder and renamed into place, so an interrupted write never
leaves a half checkpoint under a final name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mpt.errors import CheckpointError

STEP_DIR = re.compile(r"^step-(\d+)$")


def atomic_dir(final: Path) -> Path:
    """A fresh temporary sibling of ``final`` to write into before :func:`commit_dir`."""
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit_dir(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final`` (replacing an older ``final``) with renames only."""
    old = None
    if final.exists():
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def state_dict_for_save(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def save_checkpoint(root: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], keep_last: int) -> Path:
    """Write ``root/step-{step}`` atomically and delete all but the newest ``keep_last``."""
    final = root / f"step-{step}"
    tmp = atomic_dir(final)
    save_file(state_dict_for_save(model), str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2))
    commit_dir(tmp, final)
    for old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def read_state(path: Path) -> dict[str, Any]:
    """``state.json`` of the checkpoint at ``path`` (step, config, …) without loading any tensor."""
    try:
        return json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({exc}); delete it to resume from an "
                              "earlier one") from None


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore ``model`` (strictly) and ``optimizer`` from ``path``; returns ``state.json``."""
    state = read_state(path)
    try:
        weights = load_file(str(path / "model.safetensors"))
        opt_state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({exc}); delete it to resume from an "
                              "earlier one") from None
    expected = model.state_dict()
    missing, unexpected = _key_diff(expected, weights)
    shapes = [f"{k}: file {tuple(weights[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in weights and weights[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise CheckpointError(f"checkpoint {path} does not match this model: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}, shape mismatches {shapes[:5]} "
                              "(did the config change since?)")
    model.load_state_dict(weights, strict=True)
    optimizer.load_state_dict(opt_state)
    return state


def _key_diff(expected: dict[str, Any], got: dict[str, Any]) -> tuple[list[str], list[str]]:
    return sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
