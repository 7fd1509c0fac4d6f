"""The full `make demo` run (300 steps of the demo recipe on the shipped meshes): `make test-slow`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mpt
from _mpt_helpers import invoke, read_metrics


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["mae", "jepa"])
def test_demo_recipe_trains(tmp_path: Path, objective: str) -> None:
    out = tmp_path / objective
    result = invoke("pretrain", "--modality", "pointcloud", "--objective", objective, "--out", str(out))
    assert result.exit_code == 0, result.output
    metrics = read_metrics(out)
    assert metrics[-1]["step"] == 300
    first = metrics[0]["loss"]
    last = sum(m["loss"] for m in metrics[-5:]) / 5
    assert last < 0.25 * first, (first, last)  # the demo's promise: the loss ends clearly lower
    assert (out / "figures" / "step-000300.png").is_file()
    encoder = mpt.load_encoder(out / "encoder")
    assert encoder(torch.rand(2, 2048, 3)).pooled.shape == (2, 192)
