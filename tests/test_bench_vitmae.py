"""benchmarks/hf_vitmae.py: the image reference of ``pretrain_throughput.py --against hf``
(``transformers.ViTMAEForPreTraining``). Nothing here asserts performance."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import hf_reference as hf  # noqa: E402
import hf_vitmae  # noqa: E402
import pretrain_throughput as bench  # noqa: E402

TINY_SETS = ["data.size=32", "tokenizer.patch=8", "model.dim=32", "model.depth=1", "model.heads=2",
             "mae.decoder_dim=32", "mae.decoder_depth=1", "mae.decoder_heads=2"]
TINY = [*(x for s in TINY_SETS for x in ("--set", s)), "--batch", "4"]


def image_config(*sets: str, recipe: str = "mae-vit-b", objective: str | None = None):
    from mpt.config import build_config
    from mpt.registry import get_modality

    flags = {"objective": objective} if objective else None
    return build_config(get_modality("image"), recipe, None, list(sets), flags)


@pytest.fixture
def tiny_images(tmp_path: Path) -> Path:
    """Three small RGB PNGs of random pixels."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    return tmp_path


def test_image_is_registered():
    spec = hf.REFERENCES["image"]
    assert spec.name == hf_vitmae.VITMAE == "transformers.ViTMAEForPreTraining"
    assert "image (transformers.ViTMAEForPreTraining)" in hf.supported()


def test_vitmae_config_follows_the_mpt_config():
    """The mae-vit-b recipe, and `--set` changes reaching the HF side (no transformers needed)."""
    cfg = image_config()
    kw = hf_vitmae.vitmae_config(cfg, 3)
    assert cfg.model.norm_eps != hf_vitmae.HF_LAYER_NORM_EPS  # a mapping that dropped it would keep HF's 1e-12
    assert kw == {
        "image_size": 224, "patch_size": 16, "num_channels": 3, "hidden_size": 768, "num_hidden_layers": 12,
        "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu", "qkv_bias": True,
        "layer_norm_eps": cfg.model.norm_eps, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "decoder_hidden_size": 512, "decoder_num_hidden_layers": 8, "decoder_num_attention_heads": 16,
        "decoder_intermediate_size": 2048, "mask_ratio": 0.75, "norm_pix_loss": True}
    kw = hf_vitmae.vitmae_config(image_config("model.dim=384", "model.heads=6", "data.size=96", "tokenizer.patch=8",
                                              "model.mlp_ratio=2", "mae.decoder_dim=128", "mae.decoder_depth=2",
                                              "mae.decoder_heads=4", "mae.mask.ratio=0.5",
                                              "mae.target.normalize=false", "model.norm_eps=1e-5"), 1)
    assert (kw["image_size"], kw["patch_size"], kw["num_channels"]) == (96, 8, 1)
    assert (kw["hidden_size"], kw["num_attention_heads"], kw["num_hidden_layers"], kw["intermediate_size"]) == (
        384, 6, 12, 768)
    assert (kw["decoder_hidden_size"], kw["decoder_num_hidden_layers"], kw["decoder_num_attention_heads"],
            kw["decoder_intermediate_size"]) == (128, 2, 4, 512)
    assert kw["mask_ratio"] == 0.5 and kw["norm_pix_loss"] is False
    assert kw["layer_norm_eps"] == 1e-5  # model.norm_eps reaches HF: not a constant of the mapping


@pytest.mark.parametrize("sets", [[], ["model.norm_eps=1e-5"]])
def test_layer_norm_eps_and_decoder_width_are_mpts(sets):
    """The mapping's LayerNorm eps is what every LayerNorm of mpt's model (encoder and MAE decoder)
    really uses, for the default and a changed model.norm_eps; the decoder MLP width likewise."""
    from mpt.registry import get_modality
    from mpt.trainer import build_model

    cfg = image_config(*TINY_SETS, *sets)
    objective, _ = build_model(cfg, get_modality("image"))
    eps = {m.eps for m in objective.modules() if isinstance(m, nn.LayerNorm)}
    decoder_eps = {m.eps for m in objective.decoder.modules() if isinstance(m, nn.LayerNorm)}
    assert decoder_eps and eps == decoder_eps == {cfg.model.norm_eps}
    assert hf_vitmae.vitmae_config(cfg, 3)["layer_norm_eps"] == cfg.model.norm_eps
    fc1 = objective.decoder.blocks.blocks[0].mlp.fc1
    assert fc1.out_features == int(cfg.objectives["mae"].decoder_dim * hf_vitmae.DECODER_MLP_RATIO)


@pytest.mark.parametrize(("sets", "objective", "key"), [
    ([], "jepa", "objective"),
    (["mae.masked_tokens=zero"], None, "mae.masked_tokens"),
    (["mae.mask.name=block"], None, "mae.mask.name"),
    (["model.drop_path=0.1"], None, "model.drop_path"),
    (["model.pos_every_block=true"], None, "model.pos_every_block"),
    (["data.size=200"], None, "data.size"),  # not a multiple of the 16-pixel patch
    (["model.dim=390", "model.heads=6"], None, "model.dim"),  # HF's 2-D sin-cos table needs dim % 4 == 0
    (["data.size=32", "mae.mask.ratio=0.9"], None, "mae.mask.ratio"),  # 4 patches, keeps 0 (mpt clamps to 1)
])
def test_configs_vitmae_cannot_express_are_clear_errors(sets, objective, key):
    cfg = image_config(*sets, objective=objective)
    with pytest.raises(hf.UnsupportedConfig) as err:
        hf_vitmae.check_vitmae(cfg)
    assert err.value.key == key and key in str(err.value)
    with pytest.raises(hf.UnsupportedConfig):
        hf_vitmae.vitmae_config(cfg, 3)


def test_vitmae_builder_sees_the_same_standardised_pixels():
    pytest.importorskip("transformers")
    from mpt.optim import param_groups

    cfg = image_config(*TINY_SETS)
    batch = torch.rand(2, 3, 32, 32)
    ref = hf_vitmae.build_vitmae(cfg, batch, torch.device("cpu"))
    c = ref.model.config
    assert (c.image_size, c.patch_size, c.hidden_size, c.decoder_hidden_size) == (32, 8, 32, 32)
    assert c.layer_norm_eps == cfg.model.norm_eps != hf_vitmae.HF_LAYER_NORM_EPS  # mpt's eps, not HF's default
    assert any("layer_norm_eps" in d for d in ref.differences)
    assert ref.model.config._attn_implementation == "sdpa" and ref.config["num_patches"] == 16
    values, (mean, std) = hf_vitmae.pixel_values(cfg, batch, torch.device("cpu"))
    assert (mean, std) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert (ref.mpt_config["mean"], ref.mpt_config["std"]) == (mean, std)
    expected = (batch - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(values, expected)
    from mpt_image.tokenizer import patchify

    tokens = ref.model.patchify(values)  # HF's target layout [p, p, C] vs mpt's tokens [C, p, p]: same numbers
    mpt_tokens = patchify(values, 8).permute(0, 1, 3, 4, 2).flatten(2)
    assert torch.equal(tokens, mpt_tokens)
    groups = ref.optimizer.param_groups
    assert isinstance(ref.optimizer, torch.optim.AdamW) and groups[0]["lr"] == cfg.optim.lr
    assert groups[0]["betas"] == cfg.optim.betas and groups[0]["weight_decay"] == cfg.optim.weight_decay
    expected = param_groups(ref.model, cfg.optim.weight_decay)  # mpt's rule: cls/mask tokens, norms, biases
    assert [len(g["params"]) for g in groups] == [len(g["params"]) for g in expected]
    assert not any(d.startswith("CLS token") for d in ref.differences)  # the recipe has cls_token: true
    loss = ref.forward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    with pytest.raises(hf.UnsupportedConfig):
        hf_vitmae.build_vitmae(cfg, torch.rand(2, 3, 32, 40), torch.device("cpu"))


def test_main_against_hf_for_images_prints_both_and_the_ratio(tiny_images, capsys):
    pytest.importorskip("transformers")
    records = bench.main(["--modality", "image", *TINY, "--data", str(tiny_images), "--against", "hf",
                          "--steps", "1", "--warmup", "0", "--precision", "no", "--threads", "1",
                          "--gemm-size", "256"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == json.loads(json.dumps(records))
    mpt, ref, ratio = records
    assert (mpt["impl"], ref["impl"]) == ("mpt", "hf") and ref["reference"] == hf_vitmae.VITMAE
    for rec in (mpt, ref):
        assert rec["modality"] == "image" and rec["precision"] == "no" and rec["batch"] == 4
        assert rec["flops_per_step"] > 0 and rec["attention_flops_share"] > 0 and rec["s_per_step"] > 0
    assert ref["tokenize_share"] is None and 0 < mpt["tokenize_share"] < 1
    assert ref["config"]["hidden_size"] == 32 and ref["config"]["image_size"] == 32
    assert mpt["against"] == "hf" and mpt["config"]["cls_token"] is False  # the demo recipe has none
    assert ratio["ratio"] == pytest.approx(mpt["samples_per_s"] / ref["samples_per_s"])
    assert ratio["differences"][0].startswith("CLS token")


def test_main_against_hf_rejects_jepa_for_images(capsys):
    pytest.importorskip("transformers")
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--modality", "image", *TINY, "--objective", "jepa", "--against", "hf"])
    assert exit_.value.code == 2
    assert "objective" in capsys.readouterr().err
