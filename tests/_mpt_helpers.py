"""Helpers shared by the cross-package tests (tiny configs, metrics, CLI invocation)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# A model small enough that 30 steps take seconds on one CPU thread.
TINY_SETS = [
    "model.dim=32", "model.depth=1", "model.heads=2",
    "mae.decoder_dim=32", "mae.decoder_depth=1", "mae.decoder_heads=2",
    "jepa.predictor_dim=32", "jepa.predictor_depth=1", "jepa.predictor_heads=2",
    "tokenizer.num_groups=16", "tokenizer.group_size=16", "tokenizer.hidden=32",
    "data.num_points=256", "data.cache_points=512",
]


def tiny_args(*extra_sets: str, batch_size: int = 8) -> list[str]:
    """CLI arguments of a tiny run: ``--set`` for each tiny key and each of ``extra_sets``."""
    args: list[str] = []
    for s in [*TINY_SETS, *extra_sets]:
        args += ["--set", s]
    return [*args, "--batch-size", str(batch_size)]


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def invoke(*args: str):  # noqa: ANN201 - click.testing.Result
    """Run ``mpt ARGS`` in-process; stdout and stderr are kept apart (``.stdout`` / ``.stderr``)."""
    from mpt_cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def interrupt_after_checkpoint(monkeypatch, step: int) -> None:  # noqa: ANN001 - pytest.MonkeyPatch
    """Make the next run raise KeyboardInterrupt (as Ctrl-C would) right after its step-``step``
    checkpoint is written; ``monkeypatch.undo()`` restores the trainer."""
    import mpt.trainer

    real_save = mpt.trainer.save_checkpoint

    def save_then_interrupt(root, at, *args, **kwargs):  # noqa: ANN001, ANN202
        path = real_save(root, at, *args, **kwargs)
        if at == step:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(mpt.trainer, "save_checkpoint", save_then_interrupt)
