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


# --------------------------------------------------------------------------- --against hf

import argparse  # noqa: E402

import numpy as np  # noqa: E402

import hf_reference as hf  # noqa: E402

TS_TINY = ["--recipe", "patchtst", "--set", "data.context=64", "--set", "tokenizer.patch=8",
           "--set", "tokenizer.stride=8", "--set", "model.dim=16", "--set", "model.depth=1",
           "--set", "model.heads=2", "--batch", "4"]


def ts_config(*sets: str, objective: str | None = None):
    from mpt.config import build_config
    from mpt.registry import get_modality

    return build_config(get_modality("timeseries"), "patchtst", None, list(sets),
                        {"objective": objective} if objective else None)


@pytest.fixture
def tiny_series(tmp_path: Path) -> Path:
    """Six 3-channel series of 64 steps, [N, C, T]."""
    path = tmp_path / "tiny.npy"
    np.save(path, np.random.default_rng(0).standard_normal((6, 3, 64)).astype(np.float32))
    return path


def test_patchtst_config_follows_the_mpt_config():
    """The issue's configuration, and `--set` changes reaching the HF side (no transformers needed)."""
    kw = hf.patchtst_config(ts_config("tokenizer.patch=16", "tokenizer.stride=16"), 7)
    assert {k: kw[k] for k in ("num_input_channels", "context_length", "patch_length", "patch_stride", "d_model",
                               "num_hidden_layers", "num_attention_heads", "ffn_dim", "random_mask_ratio")} == {
        "num_input_channels": 7, "context_length": 512, "patch_length": 16, "patch_stride": 16, "d_model": 128,
        "num_hidden_layers": 3, "num_attention_heads": 16, "ffn_dim": 512, "random_mask_ratio": 0.4}
    assert kw["mask_type"] == "random" and kw["do_mask_input"] and not kw["channel_attention"]
    assert kw["scaling"] == "std" and kw["positional_encoding_type"] == "random"  # RevIN, learned positions
    assert all(kw[k] == 0 for k in ("attention_dropout", "positional_dropout", "path_dropout", "ff_dropout",
                                    "head_dropout"))
    kw = hf.patchtst_config(ts_config("data.context=256", "tokenizer.patch=8", "tokenizer.stride=4",
                                      "model.dim=64", "model.depth=2", "model.heads=4", "model.mlp_ratio=2",
                                      "mae.mask.ratio=0.5", "tokenizer.revin=false", "tokenizer.pos=sincos"), 3)
    assert (kw["num_input_channels"], kw["context_length"], kw["patch_length"], kw["patch_stride"]) == (3, 256, 8, 4)
    assert (kw["d_model"], kw["num_hidden_layers"], kw["num_attention_heads"], kw["ffn_dim"]) == (64, 2, 4, 128)
    assert kw["random_mask_ratio"] == 0.5 and kw["scaling"] is None and kw["positional_encoding_type"] == "sincos"


@pytest.mark.parametrize(("sets", "objective", "key"), [
    (["mae.masked_tokens=drop"], None, "mae.masked_tokens"),
    ([], "jepa", "objective"),
    (["tokenizer.channels=mixed", "tokenizer.num_channels=7"], None, "tokenizer.channels"),
    (["mae.mask.name=block"], None, "mae.mask.name"),
    (["mae.target={name: patch, normalize: true}"], None, "mae.target.normalize"),
    (["model.drop_path=0.1"], None, "model.drop_path"),
    ([], None, "tokenizer.stride"),  # the recipe's patch 12 / stride 12 over 512 steps: HF 42 patches, mpt 43
])
def test_configs_patchtst_cannot_express_are_clear_errors(sets, objective, key):
    with pytest.raises(hf.UnsupportedConfig) as err:
        hf.check_patchtst(ts_config(*sets, objective=objective))
    assert err.value.key == key and key in str(err.value)
    with pytest.raises(hf.UnsupportedConfig):
        hf.patchtst_config(ts_config(*sets, objective=objective), 7)


def test_against_hf_for_a_modality_without_reference_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--modality", "pointcloud", "--against", "hf", "--steps", "1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no Hugging Face reference for modality 'pointcloud'" in err and "timeseries" in err


def test_against_hf_without_transformers_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    with pytest.raises(ImportError, match="pip install transformers"):
        hf.require_transformers()
    with pytest.raises(SystemExit):
        bench.main(["--modality", "timeseries", "--against", "hf", "--steps", "1"])
    assert "pip install transformers" in capsys.readouterr().err


def test_measure_alternates_implementations_step_by_step():
    calls: list[tuple[str, int]] = []

    def impl(name: str) -> bench.Impl:
        def step(i: int) -> tuple[float | None, float, float]:
            calls.append((name, i))
            return (None if name == "b" else 0.001), 0.01, 1.0
        return bench.Impl(name, step, params=1)

    cfg = ts_config()
    args = argparse.Namespace(steps=2, warmup=1, gemm_size=256)
    records = bench.measure([impl("mpt"), impl("b")], cfg, "no", args, torch.device("cpu"), 0.0)
    assert calls == [("mpt", 0), ("b", 0), ("mpt", 1), ("b", 1), ("mpt", 2), ("b", 2), ("mpt", 3), ("b", 3)]
    assert [r["impl"] for r in records] == ["mpt", "b"]
    assert records[0]["tokenize_share"] == pytest.approx(0.1) and records[1]["tokenize_share"] is None
    assert all(r["s_per_step"] == 0.01 and r["peak_rss_mib"] > 0 for r in records)


def test_without_against_the_records_have_no_comparison_fields(tiny_series, capsys):
    records = bench.main(["--modality", "timeseries", *TS_TINY, "--data", str(tiny_series), "--steps", "1",
                          "--warmup", "0", "--precision", "no", "--threads", "1", "--gemm-size", "256"])
    assert len(records) == 1 and len(capsys.readouterr().out.splitlines()) == 1
    assert not {"against", "config", "ratio", "peak_rss_scope"} & set(records[0])


def test_patchtst_builder_makes_the_same_model_shape():
    pytest.importorskip("transformers")
    cfg = ts_config("tokenizer.patch=16", "tokenizer.stride=16", "model.depth=1")
    batch = torch.randn(2, 7, 512)
    from mpt.contract import Batch

    ref = hf.build_patchtst(cfg, Batch.of(batch), torch.device("cpu"))  # the benchmark's batch (a tensor works too)
    c = ref.model.config
    assert (c.num_input_channels, c.context_length, c.patch_length, c.patch_stride) == (7, 512, 16, 16)
    assert (c.d_model, c.num_hidden_layers, c.num_attention_heads, c.ffn_dim) == (128, 1, 16, 512)
    assert c.random_mask_ratio == 0.4 and c.scaling == "std" and c.norm_type == "batchnorm"
    assert ref.config["num_patches"] == 32 == ref.mpt_config["num_patches"]
    assert ref.model.model.scaler.scaler.minimum_scale == cfg.tokenizer.revin_eps
    groups = ref.optimizer.param_groups
    assert isinstance(ref.optimizer, torch.optim.AdamW) and groups[0]["lr"] == cfg.optim.lr
    assert groups[0]["betas"] == cfg.optim.betas and groups[0]["weight_decay"] == cfg.optim.weight_decay
    loss = ref.forward()
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_main_against_hf_prints_both_implementations_and_the_ratio(tiny_series, capsys):
    pytest.importorskip("transformers")
    records = bench.main(["--modality", "timeseries", *TS_TINY, "--data", str(tiny_series), "--against", "hf",
                          "--steps", "1", "--warmup", "0", "--precision", "no", "--threads", "1",
                          "--gemm-size", "256"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == json.loads(json.dumps(records))  # stdout holds exactly the returned records
    mpt, ref, ratio = records
    assert (mpt["impl"], ref["impl"]) == ("mpt", "hf")
    for rec in (mpt, ref):
        for key, kind in DESIGN_FIELDS.items():
            if key == "tokenize_share" and rec["impl"] == "hf":
                assert rec[key] is None  # HF scales and patchifies inside its forward
                continue
            assert isinstance(rec[key], kind) or (kind is float and isinstance(rec[key], int)), (key, rec[key])
        assert rec["flops_per_step"] > 0 and rec["attention_flops_share"] > 0 and rec["mfu"] > 0
        assert rec["precision"] == "no" and rec["batch"] == 4 and rec["peak_rss_mib"] > 0
    assert ref["config"]["num_input_channels"] == 3 and ref["config"]["patch_length"] == 8
    assert ref["hf_defaults_kept"]["norm_type"] == "batchnorm" and ref["reference"] == hf.PATCHTST
    assert mpt["against"] == "hf" and mpt["config"]["channels"] == 3
    assert ratio["bench"] == "pretrain_throughput" and ratio["against"] == "hf" and ratio["precision"] == "no"
    assert ratio["modality"] == "timeseries"
    assert ratio["ratio"] == pytest.approx(mpt["samples_per_s"] / ref["samples_per_s"])


def test_main_against_hf_rejects_an_unsupported_config_before_training(capsys):
    pytest.importorskip("transformers")
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--modality", "timeseries", *TS_TINY, "--set", "mae.masked_tokens=drop", "--against", "hf"])
    assert exit_.value.code == 2
    assert "mae.masked_tokens" in capsys.readouterr().err
