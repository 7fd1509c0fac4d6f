"""benchmarks/hf_videomae.py (the video reference of ``pretrain_throughput.py --against hf``,
``transformers.VideoMAEForPreTraining``), ``--variant`` and the data-loading fields. Nothing here asserts
performance."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("mpt_video")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import hf_reference as hf  # noqa: E402
import hf_videomae  # noqa: E402
import pretrain_throughput as bench  # noqa: E402

TINY_SETS = ["data.frames=4", "data.size=32", "data.clips=2", "tokenizer.patch=8", "model.dim=32", "model.depth=1",
             "model.heads=2", "mae.decoder_dim=32", "mae.decoder_depth=1", "mae.decoder_heads=2"]
TINY = [*(x for s in TINY_SETS for x in ("--set", s)), "--batch", "2"]
QUICK = ["--steps", "1", "--warmup", "0", "--precision", "no", "--threads", "1", "--gemm-size", "256"]
DUAL = "mae.mask={name: dual, encoder: {name: tube, ratio: 0.9}, decoder_ratio: 0.5}"
DATA_FIELDS = ("data_s_per_batch", "data_samples_per_s", "data_share", "data_first_batch_s")


def video_config(*sets: str, recipe: str = "videomae-s", objective: str | None = None):
    from mpt.config import build_config
    from mpt.registry import get_modality

    flags = {"objective": objective} if objective else None
    return build_config(get_modality("video"), recipe, None, list(sets), flags)


def test_video_is_registered():
    assert hf.REFERENCES["video"].name == hf_videomae.VIDEOMAE == "transformers.VideoMAEForPreTraining"
    assert "video (transformers.VideoMAEForPreTraining)" in hf.supported()


def test_videomae_config_follows_the_mpt_config():
    """The videomae-s recipe (ViT-S, 16×224², decoder 4×192), and `--set` changes reaching HF (no transformers)."""
    cfg = video_config()
    assert hf_videomae.videomae_config(cfg, 3) == {
        "image_size": 224, "patch_size": 16, "num_channels": 3, "num_frames": 16, "tubelet_size": 2,
        "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "intermediate_size": 1536,
        "hidden_act": "gelu", "qv_bias": True, "layer_norm_eps": cfg.model.norm_eps, "use_mean_pooling": False,
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "decoder_hidden_size": 192,
        "decoder_num_hidden_layers": 4, "decoder_num_attention_heads": 3, "decoder_intermediate_size": 768,
        "norm_pix_loss": True}
    assert hf_videomae.masked_count(cfg) == 8 * int(196 * 0.9)  # tube: 176 of 196 cells at each of 8 slots
    kw = hf_videomae.videomae_config(video_config("data.frames=8", "data.size=64", "tokenizer.tubelet=4",
                                                  "tokenizer.patch=8", "model.dim=64", "model.mlp_ratio=2",
                                                  "mae.decoder_dim=48", "model.norm_eps=1e-5"), 3)
    assert (kw["num_frames"], kw["image_size"], kw["tubelet_size"], kw["patch_size"]) == (8, 64, 4, 8)
    assert (kw["hidden_size"], kw["intermediate_size"], kw["decoder_hidden_size"]) == (64, 128, 48)
    assert kw["layer_norm_eps"] == 1e-5


@pytest.mark.parametrize(("sets", "objective", "key"), [
    ([], "jepa", "objective"),
    (["mae.masked_tokens=zero"], None, "mae.masked_tokens"),
    ([DUAL], None, "mae.mask.name"),
    (["mae.target.per_channel=false"], None, "mae.target.per_channel"),
    (["model.cls_token=true"], None, "model.cls_token"),
    (["model.drop_path=0.1"], None, "model.drop_path"),
    (["data.size=200"], None, "data.size"),
    (["data.frames=15"], None, "data.frames"),
])
def test_configs_videomae_cannot_express_are_clear_errors(sets, objective, key):
    cfg = video_config(*sets, objective=objective)
    with pytest.raises(hf.UnsupportedConfig) as err:
        hf_videomae.check_videomae(cfg)
    assert err.value.key == key and key in str(err.value)


def test_videomae_builder_sees_the_same_tubelets_and_a_tube_mask():
    pytest.importorskip("transformers")
    cfg = video_config(*TINY_SETS)
    batch = torch.rand(2, 3, 4, 32, 32)
    ref = hf_videomae.build_videomae(cfg, batch, torch.device("cpu"))
    assert ref.model.config.use_mean_pooling is False and ref.model.videomae.layernorm is not None
    assert ref.model.config._attn_implementation == "sdpa" and ref.config["num_patches"] == 2 * 16
    values, (mean, std) = hf_videomae.pixel_values(cfg, batch, torch.device("cpu"))
    expected = (batch - torch.tensor(mean).view(1, 3, 1, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1, 1)
    assert values.shape == (2, 4, 3, 32, 32) and torch.allclose(values, expected.transpose(1, 2))
    mask = hf_videomae.bool_masked_pos(cfg, 2, torch.device("cpu")).view(2, 2, 16)
    assert torch.equal(mask[:, 0], mask[:, 1])  # tube: the same cells at every time slot
    assert (mask.sum((1, 2)) == hf_videomae.masked_count(cfg)).all() and hf_videomae.masked_count(cfg) == 2 * 14
    assert isinstance(ref.optimizer, torch.optim.AdamW) and ref.optimizer.param_groups[0]["lr"] == cfg.optim.lr
    loss = ref.forward()
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_main_against_hf_for_video_prints_both_the_ratio_and_data_fields(capsys):
    pytest.importorskip("transformers")
    records = bench.main(["--modality", "video", *TINY, "--against", "hf", *QUICK, "--data-batches", "2"])
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == json.loads(json.dumps(records))
    mpt, ref, ratio = records
    assert (mpt["impl"], ref["impl"], ref["reference"]) == ("mpt", "hf", hf_videomae.VIDEOMAE)
    assert mpt["flops_per_step"] > 0 and ref["flops_per_step"] > 0 and ratio["flops_ratio"] > 0
    assert ratio["ratio"] == pytest.approx(mpt["samples_per_s"] / ref["samples_per_s"])
    assert all(mpt[k] > 0 for k in DATA_FIELDS) and mpt["data_workers"] == 0 and mpt["data_batches"] == 2
    assert mpt["data_share"] == pytest.approx(mpt["data_s_per_batch"] / (mpt["data_s_per_batch"] + mpt["s_per_step"]))
    assert not any(k.startswith("data_") for k in ref)  # data fields belong to the mpt runs
    assert any("1-D sinusoid" in d for d in ratio["differences"])


def test_variant_trains_a_second_mpt_run_with_the_overrides(capsys):
    records = bench.main(["--modality", "video", *TINY, "--variant", DUAL, *QUICK, "--data-batches", "1"])
    mpt, variant, ratio = records
    assert (mpt["impl"], variant["impl"], ratio["against"]) == ("mpt", "mpt-variant", "mpt-variant")
    assert variant["variant_changes"]["mae.mask.name"] == ["tube", "dual"] == ratio["variant_changes"]["mae.mask.name"]
    assert ratio["variant"] == [DUAL]
    assert ratio["flops_ratio"] > 1  # the decoder sees half the tokens: the override reached the model
    assert ratio["ratio"] == pytest.approx(mpt["samples_per_s"] / variant["samples_per_s"])
    assert ratio["variant_s_per_step"] == variant["s_per_step"]
    assert all(r[k] > 0 for r in (mpt, variant) for k in DATA_FIELDS)
    assert len(capsys.readouterr().out.splitlines()) == 3


@pytest.mark.parametrize(("extra", "says"), [
    (["--variant", DUAL, "--against", "hf"], "mutually exclusive"),
    (["--variant", "mae.mask.ratio=0.9"], "change nothing"),
    (["--variant", "model.nope=1"], "--variant"),
    (["--data-batches", "-1"], "--data-batches"),
])
def test_variant_and_data_batches_errors(extra, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--modality", "video", *TINY, *QUICK, *extra])
    assert exit_.value.code == 2 and says in capsys.readouterr().err


def test_data_batches_zero_skips_the_data_fields():
    (record,) = bench.main(["--modality", "video", *TINY, *QUICK, "--data-batches", "0"])
    assert not any(k.startswith("data_") for k in record)
