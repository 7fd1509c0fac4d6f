"""Image reference for ``pretrain_throughput.py --against hf``: ``transformers.ViTMAEForPreTraining``.

``check_vitmae(cfg)`` / ``build_vitmae(cfg, batch, device)`` follow the contract of
``hf_reference.ReferenceSpec`` (see the PatchTST pair there): the HF model is built from the mpt config
actually used (recipe ← ``--set`` ← flags, channels from the batch), gets the same AdamW and parameter
groups (``mpt.optim.create_optimizer``), and trains on the same batch: the mpt image batch ``[B, C, H, W]``
of raw ``[0, 1]`` pixels (an ``mpt.Batch`` or a plain tensor), normalised once (outside the timed step)
by the mpt tokenizer's own ``Tokenizer.normalize`` (``(x - mean) / std`` with ``tokenizer.mean`` /
``tokenizer.std``: the one place mpt normalises its input), so both models see the same numbers. Both
sides use one LayerNorm eps, ``model.norm_eps`` (mpt's encoder and its MAE decoder).

Registered in ``hf_reference.REFERENCES["image"]``; transformers is imported lazily, in ``build_vitmae`` only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hf_reference import (
    Reference,
    UnsupportedConfig,
    batch_tensor,
    mae_section,
    optimizer_summary,
    require_transformers,
)

VITMAE = "transformers.ViTMAEForPreTraining"
HF_LAYER_NORM_EPS = 1e-12  # ViTMAEConfig's default layer_norm_eps, which the mapping replaces


def layer_norm_eps(cfg: Any) -> float:  # noqa: ANN401 - mpt.config.Config
    """The eps of every LayerNorm of the mpt model: ``model.norm_eps`` (the encoder's blocks and final
    norm; mpt's MAE decoder uses the encoder's eps). HF ViTMAE uses its ``layer_norm_eps`` for both too."""
    return float(cfg.model.norm_eps)


# mpt's MAE decoder (``mpt.objectives.MaskedPredictor``) is a ``Transformer`` with the default mlp_ratio.
DECODER_MLP_RATIO = 4.0

VITMAE_DIFFERENCES = [
    "attention projections: mpt one fused qkv Linear (timm Block); HF separate q/k/v Linears; both SDPA "
    "(HF attn_implementation='sdpa', set explicitly)",
    "patch stem: mpt tokenizer normalises + patchifies under no_grad every step (in the step time), then "
    "Linear(C*p*p -> D) on the kept patches only; HF gets pixel_values normalised once (outside the timed "
    "step, the same numbers) and runs Conv2d(C, D, p, stride=p) on every patch inside its forward, before masking",
    "positions: mpt 2-D sin-cos computed from the patch coordinates every step (encoder and decoder); HF fixed "
    "2-D sin-cos tables (requires_grad=False), added to every patch before masking",
    "masking: mpt index masker with a seeded generator; HF random_masking with the global RNG (seeded per "
    "step); both keep int(N * (1 - ratio)) patches per image",
    "decoder input order: mpt [encoded kept tokens, mask tokens] as they come (positions follow the tokens); HF "
    "gathers them back into image order (ids_restore)",
    "decoder head: mpt Linear(decoder_dim -> C*p*p) on the masked patches only; HF on every token (CLS and "
    "visible included), loss masked",
    "target: mpt regresses the patches as its tokenizer cut them ([C, p, p] order); HF patchifies pixel_values "
    "([p, p, C] order) inside its forward; same per-patch norm_pix statistics and the same loss value",
    "initialisation differs (mpt trunc_normal 0.02, HF normal 0.02; both xavier for the patch stem): "
    "irrelevant to throughput",
]


def _num_patches(cfg: Any) -> int:  # noqa: ANN401 - mpt.config.Config
    return (cfg.data.size // cfg.tokenizer.patch) ** 2


def check_vitmae(cfg: Any) -> None:  # noqa: ANN401 - mpt.config.Config
    """Raise :class:`UnsupportedConfig` when ``ViTMAEForPreTraining`` cannot express ``cfg``."""
    if cfg.objective != "mae":
        raise UnsupportedConfig("objective", f"{VITMAE} is masked-patch reconstruction (mae); "
                                             f"'{cfg.objective}' has no Hugging Face reference")
    mae, model, tok = mae_section(cfg), cfg.model, cfg.tokenizer
    if mae.masked_tokens != "drop":
        raise UnsupportedConfig("mae.masked_tokens", f"{VITMAE} encodes the visible patches only and decodes "
                                                     "with mask tokens (masked_tokens: drop); "
                                                     f"'{mae.masked_tokens}' has no equivalent there")
    if mae.mask.name != "random":
        raise UnsupportedConfig("mae.mask.name", f"{VITMAE} masks uniformly at random per image (random_masking); "
                                                 f"the mpt masker '{mae.mask.name}' has no equivalent there")
    if mae.target.name != "patch":
        raise UnsupportedConfig("mae.target.name", f"{VITMAE} regresses pixel patches: needs mae.target.name=patch, "
                                                   f"got '{mae.target.name}'")
    if model.drop_path:
        raise UnsupportedConfig("model.drop_path", f"{VITMAE} has no stochastic depth; set model.drop_path=0")
    if model.pos_every_block:
        raise UnsupportedConfig("model.pos_every_block", f"{VITMAE} adds positions once, at the input")
    size, patch = cfg.data.size, tok.patch
    if size % patch:
        raise UnsupportedConfig("data.size", f"{VITMAE} needs the image side ({size}) to be a multiple of "
                                             f"tokenizer.patch ({patch})")
    for key, dim in (("model.dim", model.dim), ("mae.decoder_dim", mae.decoder_dim)):
        if dim % 4:
            raise UnsupportedConfig(key, f"{VITMAE}'s 2-D sin-cos position table needs a width divisible by 4, "
                                         f"got {dim}")
    n = _num_patches(cfg)
    keep = int(n * (1 - mae.mask.ratio))
    if keep < 1:
        raise UnsupportedConfig("mae.mask.ratio", f"with {n} patches, ratio {mae.mask.ratio} keeps {keep}; mpt "
                                                  f"clamps to [1, {n - 1}], HF does not: pick a ratio that keeps "
                                                  "at least one patch")


def vitmae_config(cfg: Any, num_channels: int) -> dict[str, Any]:  # noqa: ANN401
    """``ViTMAEConfig`` keyword arguments equivalent to the mpt config ``cfg`` for ``num_channels``-channel
    images (checked with :func:`check_vitmae` first)."""
    check_vitmae(cfg)
    model, mae = cfg.model, mae_section(cfg)
    return {
        "image_size": cfg.data.size,  # square crops of data.size pixels
        "patch_size": cfg.tokenizer.patch,
        "num_channels": int(num_channels),
        "hidden_size": model.dim,
        "num_hidden_layers": model.depth,
        "num_attention_heads": model.heads,
        "intermediate_size": int(model.dim * model.mlp_ratio),  # timm Block: hidden = int(dim * mlp_ratio)
        "hidden_act": "gelu",  # timm Block: nn.GELU (exact)
        "qkv_bias": True,  # mpt: Block(qkv_bias=True)
        "layer_norm_eps": layer_norm_eps(cfg),  # mpt's model.norm_eps, encoder and decoder (HF default 1e-12)
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "decoder_hidden_size": mae.decoder_dim,
        "decoder_num_hidden_layers": mae.decoder_depth,
        "decoder_num_attention_heads": mae.decoder_heads,
        "decoder_intermediate_size": int(mae.decoder_dim * DECODER_MLP_RATIO),
        "mask_ratio": mae.mask.ratio,
        "norm_pix_loss": bool(mae.target.normalize),  # mpt PatchTarget(normalize): (x - mean) / sqrt(var + 1e-6)
    }


def mpt_vitmae_summary(cfg: Any, num_channels: int, stats: tuple[list[float], list[float]]) -> dict[str, Any]:  # noqa: ANN401
    from mpt.config import to_plain

    model, mae = cfg.model, mae_section(cfg)
    n = _num_patches(cfg)
    return {"size": cfg.data.size, "channels": int(num_channels), "patch": cfg.tokenizer.patch, "num_patches": n,
            "kept_patches": min(max(int(n * (1 - mae.mask.ratio)), 1), n - 1), "dim": model.dim,
            "depth": model.depth, "heads": model.heads, "mlp_ratio": model.mlp_ratio, "cls_token": model.cls_token,
            "decoder_dim": mae.decoder_dim, "decoder_depth": mae.decoder_depth, "decoder_heads": mae.decoder_heads,
            "decoder_mlp_ratio": DECODER_MLP_RATIO, "mask": mae.mask.name, "mask_ratio": mae.mask.ratio,
            "masked_tokens": mae.masked_tokens, "target": to_plain(mae.target), "layer_norm_eps": layer_norm_eps(cfg),
            "mean": stats[0], "std": stats[1], "pos": "2-D sin-cos from the patch coordinates",
            "optimizer": optimizer_summary(cfg)}


def _image_tokenizer(cfg: Any):  # noqa: ANN202, ANN401 - the modality's tokenizer
    """The modality's own tokenizer (its ``normalize`` is what mpt applies to the batch every step)."""
    from mpt.registry import get_modality

    with torch.random.fork_rng(devices=[]):  # its random patch stem must not touch the seeded RNG
        return get_modality(cfg.modality).tokenizer(cfg.tokenizer, cfg.model.dim)


def _patchify(images: Tensor, patch: int) -> Tensor:
    """``[B, C, H, W]`` → ``[B, N, C, p, p]``, row-major patches (the layout of the mpt image tokens)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // patch) * (w // patch), c, patch, patch)


def pixel_values(cfg: Any, batch: Any, device: torch.device) -> tuple[Tensor, tuple[list[float], list[float]]]:  # noqa: ANN401
    """HF's ``pixel_values``: the raw ``[0, 1]`` batch (an ``mpt.Batch`` or a tensor) normalised by the mpt
    tokenizer's own ``normalize`` (``(x - mean) / std`` with ``tokenizer.mean`` / ``tokenizer.std``), and
    those (mean, std).

    Checked once: the tokens mpt cuts from that normalised batch are exactly its ``p × p`` patches, so the
    HF model, which patchifies ``pixel_values`` itself, regresses and embeds the same numbers as mpt."""
    from mpt.contract import Batch

    tokenizer = _image_tokenizer(cfg).to(device)
    with torch.no_grad():
        normalized = tokenizer.normalize(Batch.of(batch_tensor(batch).to(device)))
        values = normalized.tensor.float().contiguous()
        patches = tokenizer.tokenize(normalized).patches
    expected = _patchify(values, cfg.tokenizer.patch)
    if patches.shape != expected.shape or not torch.allclose(patches.float(), expected):
        raise UnsupportedConfig("modality", f"{VITMAE} patchifies the normalised pixels itself, but the tokens of "
                                            f"{type(tokenizer).__name__} are not the [C, p, p] patches of its "
                                            "normalised batch: the two models would not see the same numbers")
    return values, tuple(getattr(tokenizer, "stats", ([], [])))


def build_vitmae(cfg: Any, batch: Any, device: torch.device) -> Reference:  # noqa: ANN401
    """``ViTMAEForPreTraining`` from the mpt config, AdamW as mpt builds it, inputs = ``batch``
    ``[B, C, H, W]`` (raw ``[0, 1]`` pixels; an ``mpt.Batch`` or a tensor) standardised with the mpt
    tokenizer's mean/std as ``pixel_values``."""
    from mpt.optim import create_optimizer

    batch = batch_tensor(batch)
    size = cfg.data.size
    if batch.ndim != 4 or tuple(batch.shape[2:]) != (size, size):
        raise UnsupportedConfig("data.size", f"expected a [B, C, {size}, {size}] image batch, got "
                                             f"{tuple(batch.shape)}")
    kwargs = vitmae_config(cfg, batch.shape[1])
    transformers = require_transformers()
    inputs, stats = pixel_values(cfg, batch, device)  # once, outside the timed step
    config = transformers.ViTMAEConfig(**kwargs, attn_implementation="sdpa")  # mpt's timm blocks use SDPA
    torch.manual_seed(cfg.train.seed)
    model = transformers.ViTMAEForPreTraining(config).to(device)
    model.train()
    optimizer = create_optimizer(model, cfg.optim)  # the same AdamW and parameter-group rule as mpt's

    def forward() -> Tensor:
        return model(pixel_values=inputs).loss

    differences = [*VITMAE_DIFFERENCES,
                   f"layer_norm_eps: HF default {HF_LAYER_NORM_EPS:g} set to mpt's model.norm_eps "
                   f"({config.layer_norm_eps:g}), which mpt's encoder and MAE decoder both use"]
    if not cfg.model.cls_token:
        differences.insert(0, "CLS token: HF ViTMAE always prepends one (encoder 1 + kept tokens, decoder 1 + N); "
                              "mpt has none (model.cls_token=false)")
    used = {**kwargs, "attn_implementation": getattr(model.config, "_attn_implementation", None),
            "num_patches": model.vit.embeddings.patch_embeddings.num_patches, "cls_token": True,
            "pixel_values": "mpt batch normalised by the mpt tokenizer's normalize, (x - mean) / std, once"}
    kept = {"initializer_range": config.initializer_range,
            "position_embeddings": "fixed 2-D sin-cos tables (requires_grad=False)"}
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Reference(impl="hf", name=VITMAE, model=model, optimizer=optimizer, forward=forward, params=params,
                     config=used, kept_defaults=kept, mpt_config=mpt_vitmae_summary(cfg, batch.shape[1], stats),
                     differences=differences, versions={"transformers": str(transformers.__version__)})
