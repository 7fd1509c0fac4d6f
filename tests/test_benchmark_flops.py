"""benchmarks/pretrain_throughput.py: SDPA FLOP formulas on CPU and the shape of its JSON lines.

Nothing here asserts performance: only analytic FLOP counts and that the output is well formed.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import pretrain_throughput as bench  # noqa: E402

DESIGN_FIELDS = {  # DESIGN.md §7, plus the fields this benchmark promises
    "bench": str, "modality": str, "impl": str, "recipe": str, "precision": str, "batch": int,
    "s_per_step": float, "s_per_step_min": float, "s_per_step_max": float, "samples_per_s": float,
    "flops_per_step": float, "gemm_peak_gflops": float, "mfu": float, "peak_rss_mib": float,
    "threads": int, "torch": str, "tokenize_share": float, "params": int, "cpu_load": float,
    "objective": str, "flops_note": str,
}

TINY = ["--set", "model.dim=32", "--set", "model.depth=1", "--set", "model.heads=2",
        "--set", "mae.decoder_dim=32", "--set", "mae.decoder_depth=1", "--set", "mae.decoder_heads=2",
        "--set", "tokenizer.num_groups=8", "--set", "tokenizer.group_size=8", "--set", "tokenizer.hidden=16",
        "--set", "data.num_points=128", "--set", "data.cache_points=256"]


def qkv(b: int, h: int, lq: int, lk: int, d: int, grad: bool = False) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(b, h, lq, d, generator=g, requires_grad=grad)
    k = torch.randn(b, h, lk, d, generator=g, requires_grad=grad)
    v = torch.randn(b, h, lk, d, generator=g, requires_grad=grad)
    return q, k, v


@pytest.mark.parametrize("shape", [(2, 3, 17, 17, 8), (1, 2, 5, 11, 16)])
def test_sdpa_forward_flops_are_analytic(shape):
    b, h, lq, lk, d = shape
    q, k, v = qkv(*shape)
    total, per_op = bench.count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
    assert total == 4 * b * h * lq * lk * d
    assert any("flash_attention_for_cpu" in op for op in per_op), per_op  # the CPU kernel ran


@pytest.mark.parametrize("shape", [(2, 3, 17, 17, 8), (1, 2, 5, 11, 16)])
def test_sdpa_forward_backward_flops_are_analytic(shape):
    b, h, lq, lk, d = shape
    q, k, v = qkv(*shape, grad=True)
    total, per_op = bench.count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    fwd = 4 * b * h * lq * lk * d
    assert total == fwd + 2 * fwd  # backward = 2 × forward = 8·B·H·Lq·Lk·d
    assert any(op.endswith("_backward") or "backward" in op for op in per_op), per_op


def test_sdpa_formulas_count_once_and_keep_linear_counts():
    """Registering twice (import, then repeated calls) neither raises nor double counts; other ops
    keep torch's own formulas."""
    bench.sdpa_flop_mapping()
    bench.sdpa_flop_mapping()
    q, k, v = qkv(1, 2, 4, 4, 8)
    w = torch.randn(8, 8)
    total, _ = bench.count_flops(lambda: F.linear(F.scaled_dot_product_attention(q, k, v), w))
    assert total == 4 * 2 * 4 * 4 * 8 + 2 * (1 * 2 * 4) * 8 * 8


def test_main_prints_one_json_line_with_the_design_fields(capsys):
    records = bench.main(["--modality", "pointcloud", *TINY, "--batch", "2", "--steps", "1", "--warmup", "0",
                          "--precision", "no", "--threads", "1", "--gemm-size", "256"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(records) == 1
    rec = json.loads(lines[0])
    for key, kind in DESIGN_FIELDS.items():
        assert key in rec, key
        assert isinstance(rec[key], kind) or (kind is float and isinstance(rec[key], int)), (key, rec[key])
    assert rec["bench"] == "pretrain_throughput" and rec["impl"] == "mpt" and rec["modality"] == "pointcloud"
    assert rec["precision"] == "no" and rec["batch"] == 2 and rec["threads"] == 1 and rec["recipe"] == "demo"
    for key in ("s_per_step", "s_per_step_min", "s_per_step_max", "samples_per_s", "flops_per_step",
                "gemm_peak_gflops", "mfu", "peak_rss_mib", "tokenize_share", "params"):
        assert math.isfinite(rec[key]) and rec[key] > 0, (key, rec[key])
    assert rec["s_per_step_min"] <= rec["s_per_step"] <= rec["s_per_step_max"]
    assert 0 < rec["tokenize_share"] < 1
    assert rec["attention_flops_share"] > 0  # the CPU SDPA kernels were counted
