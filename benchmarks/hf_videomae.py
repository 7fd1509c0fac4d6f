"""Video reference for ``pretrain_throughput.py --against hf``: ``transformers.VideoMAEForPreTraining``.

``check_videomae(cfg)`` / ``build_videomae(cfg, batch, device)`` follow the contract of
``hf_reference.ReferenceSpec`` (see the PatchTST pair there and ``hf_vitmae.py``): the HF model is built
from the mpt config actually used (recipe ← ``--set`` ← flags, channels from the batch), gets the same AdamW
and parameter groups (``mpt.optim.create_optimizer``), and trains on the same batch: the mpt video batch
``[B, C, T, H, W]`` of raw ``[0, 1]`` pixels (an ``mpt.Batch`` or a plain tensor), normalised once (outside
the timed step) by the mpt tokenizer's own ``Tokenizer.normalize`` (``(x - mean) / std`` with
``tokenizer.mean`` / ``tokenizer.std``) and handed to HF as ``pixel_values`` ``[B, T, C, H, W]``.

``VideoMAEForPreTraining`` takes the mask as ``bool_masked_pos`` ``[B, N]`` (the same number of masked
tubelets in every sample): every step draws it inside the timed forward, by mpt's rule for the configured
masker (``tube``: ``int(S · ratio)`` of the S spatial cells, clamped to [1, S - 1], hidden at every time
slot; ``random``: MAE's ``int(N · (1 - ratio))`` kept tubelets per clip) with the global RNG, which the
benchmark seeds per step.

Registered in ``hf_reference.REFERENCES["video"]``; transformers is imported lazily, in ``build_videomae`` only.
"""

from __future__ import annotations

import math
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

VIDEOMAE = "transformers.VideoMAEForPreTraining"
HF_LAYER_NORM_EPS = 1e-12  # VideoMAEConfig's default layer_norm_eps, which the mapping replaces
HF_DECODER_NORM_EPS = 1e-5  # VideoMAEDecoder.norm is nn.LayerNorm(decoder_hidden_size): torch's default eps
HF_TARGET_EPS = 1e-6  # VideoMAE's norm_pix_loss: (x - mean) / (sqrt(unbiased var) + 1e-6)
MASKERS = ("tube", "random")  # mpt maskers whose rule build_videomae draws as bool_masked_pos

# mpt's MAE decoder (``mpt.objectives.MaskedPredictor``) is a ``Transformer`` with the default mlp_ratio.
DECODER_MLP_RATIO = 4.0

VIDEOMAE_DIFFERENCES = [
    "attention projections: mpt one fused qkv Linear with biases on q, k and v (timm Block); HF separate "
    "q/k/v Linears, bias on q and v only (qv_bias; a key bias does not change the softmax); both SDPA "
    "(HF attn_implementation='sdpa', set explicitly)",
    "tubelet stem: mpt tokenizer normalises + cuts tubelets under no_grad every step (in the step time), then "
    "Linear(C*t*p*p -> D) on the kept tubelets only; HF gets pixel_values normalised once (outside the timed "
    "step, the same numbers), permutes them to [B, C, T, H, W] and runs Conv3d(C, D, (t, p, p)) on every "
    "tubelet inside its forward, before masking",
    "positions: mpt 3-D sin-cos of the (time, row, col) tubelet indices computed every step (encoder and "
    "decoder); HF fixed 1-D sinusoid tables over the flattened token index (as the original VideoMAE), added "
    "to every tubelet before masking (encoder) and gathered for the visible / masked tokens (decoder)",
    "masking: mpt's masker with a seeded generator; HF bool_masked_pos drawn here by the same rule and counts "
    "with the global RNG (seeded per step): different tubelets, the same number",
    "encoder -> decoder projection: mpt Linear with bias; HF encoder_to_decoder Linear(bias=False)",
    f"decoder final LayerNorm: mpt eps model.norm_eps; HF VideoMAEDecoder.norm is nn.LayerNorm with torch's "
    f"default eps {HF_DECODER_NORM_EPS:g} (its decoder blocks use layer_norm_eps)",
    "decoder input order: both [encoded visible tokens, mask tokens] without unshuffling, the head on the "
    "masked tokens only (no difference in work)",
    "target: both regress the masked tubelets standardised per tubelet and channel over its t*p*p values "
    "(VideoMAE's normlize_target); mpt on the tokenizer-standardised values with sqrt(unbiased var + 1e-6), "
    "[C, t, p, p] order; HF on the frames it un-normalises with the fixed ImageNet mean/std (3 channels), "
    "with sqrt(unbiased var) + 1e-6, [t, p, p, C] order, inside its forward under no_grad: the same values up "
    "to the eps (a per-channel affine map cancels in the standardisation)",
    "encoder final LayerNorm: both (HF use_mean_pooling=False keeps VideoMAEModel.layernorm; the HF default "
    "True would drop it)",
    "initialisation differs (mpt trunc_normal 0.02 and a xavier stem, HF normal 0.02): irrelevant to throughput",
]


def layer_norm_eps(cfg: Any) -> float:  # noqa: ANN401 - mpt.config.Config
    """The eps of every LayerNorm of the mpt model: ``model.norm_eps`` (encoder and MAE decoder)."""
    return float(cfg.model.norm_eps)


def _grid(cfg: Any) -> tuple[int, int, int]:  # noqa: ANN401 - mpt.config.Config
    """The tubelet grid ``(T / t, H / p, W / p)`` of a ``data.frames × data.size²`` clip."""
    tok = cfg.tokenizer
    side = cfg.data.size // tok.patch
    return cfg.data.frames // tok.tubelet, side, side


def masked_count(cfg: Any) -> int:  # noqa: ANN401 - mpt.config.Config
    """Tubelets hidden per clip by the configured mpt masker (its own rule and clamping, mpt.masking)."""
    mask = mae_section(cfg).mask
    gt, gh, gw = _grid(cfg)
    n, s = gt * gh * gw, gh * gw
    if mask.name == "tube":  # tube_mask: _n_pred(S, ratio) spatial cells at every time slot
        return gt * min(max(int(s * mask.ratio), 1), s - 1)
    keep = min(max(int(n * (1 - mask.ratio)), 1), n - 1)  # random_mask: random_keep's int(n * (1 - ratio))
    return n - keep


def check_videomae(cfg: Any) -> None:  # noqa: ANN401 - mpt.config.Config
    """Raise :class:`UnsupportedConfig` when ``VideoMAEForPreTraining`` cannot express ``cfg``."""
    if cfg.objective != "mae":
        raise UnsupportedConfig("objective", f"{VIDEOMAE} is masked-tubelet reconstruction (mae); "
                                             f"'{cfg.objective}' has no Hugging Face reference")
    mae, model, tok, data = mae_section(cfg), cfg.model, cfg.tokenizer, cfg.data
    if mae.masked_tokens != "drop":
        raise UnsupportedConfig("mae.masked_tokens", f"{VIDEOMAE} encodes the visible tubelets only and decodes "
                                                     "with mask tokens (masked_tokens: drop); "
                                                     f"'{mae.masked_tokens}' has no equivalent there")
    if mae.mask.name not in MASKERS:
        hint = (" (VideoMAE V2's decoder masking is not in transformers; compare it with mpt itself: "
                "pretrain_throughput.py --variant)" if mae.mask.name == "dual" else "")
        raise UnsupportedConfig("mae.mask.name", f"{VIDEOMAE} is compared with the {' / '.join(MASKERS)} maskers; "
                                                 f"the mpt masker '{mae.mask.name}' has no equivalent there{hint}")
    target = mae.target
    if target.name != "patch":
        raise UnsupportedConfig("mae.target.name", f"{VIDEOMAE} regresses pixel tubelets: needs "
                                                   f"mae.target.name=patch, got '{target.name}'")
    if target.normalize and not target.per_channel:
        raise UnsupportedConfig("mae.target.per_channel", f"{VIDEOMAE}'s norm_pix_loss standardises every tubelet "
                                                          "per channel: needs mae.target.per_channel=true with "
                                                          "normalize=true")
    if not target.normalize and tok.channels != 3:
        raise UnsupportedConfig("mae.target.normalize", f"{VIDEOMAE} without norm_pix_loss un-normalises RGB with "
                                                        "the ImageNet statistics and refuses other channel counts")
    if model.cls_token or model.num_registers:
        key = "model.cls_token" if model.cls_token else "model.num_registers"
        raise UnsupportedConfig(key, f"{VIDEOMAE} has no CLS or register tokens")
    if model.layer_scale is not None:
        raise UnsupportedConfig("model.layer_scale", f"{VIDEOMAE} has no LayerScale")
    if model.drop_path:
        raise UnsupportedConfig("model.drop_path", f"{VIDEOMAE} has no stochastic depth; set model.drop_path=0")
    if model.pos_every_block:
        raise UnsupportedConfig("model.pos_every_block", f"{VIDEOMAE} adds positions once, at the input")
    if mae.decoder_window is not None:
        raise UnsupportedConfig("mae.decoder_window", f"{VIDEOMAE}'s decoder attends globally")
    if data.size % tok.patch:
        raise UnsupportedConfig("data.size", f"{VIDEOMAE} needs the frame side ({data.size}) to be a multiple of "
                                             f"tokenizer.patch ({tok.patch})")
    if data.frames % tok.tubelet:
        raise UnsupportedConfig("data.frames", f"{VIDEOMAE} needs data.frames ({data.frames}) to be a multiple of "
                                               f"tokenizer.tubelet ({tok.tubelet})")
    gt, gh, gw = _grid(cfg)
    if (mae.mask.name == "tube" and gh * gw < 2) or gt * gh * gw < 2:
        raise UnsupportedConfig("data.size", f"tubelet grid {(gt, gh, gw)}: too few tubelets to mask")


def videomae_config(cfg: Any, num_channels: int) -> dict[str, Any]:  # noqa: ANN401
    """``VideoMAEConfig`` keyword arguments equivalent to the mpt config ``cfg`` for ``num_channels``-channel
    clips (checked with :func:`check_videomae` first)."""
    check_videomae(cfg)
    model, mae, tok = cfg.model, mae_section(cfg), cfg.tokenizer
    return {
        "image_size": cfg.data.size,  # square crops of data.size pixels
        "patch_size": tok.patch,
        "num_channels": int(num_channels),
        "num_frames": cfg.data.frames,
        "tubelet_size": tok.tubelet,
        "hidden_size": model.dim,
        "num_hidden_layers": model.depth,
        "num_attention_heads": model.heads,
        "intermediate_size": int(model.dim * model.mlp_ratio),  # timm Block: hidden = int(dim * mlp_ratio)
        "hidden_act": "gelu",  # timm Block: nn.GELU (exact)
        "qv_bias": True,  # mpt: Block(qkv_bias=True); HF has no key bias (softmax-invariant)
        "layer_norm_eps": layer_norm_eps(cfg),  # mpt's model.norm_eps, encoder and decoder blocks (HF default 1e-12)
        "use_mean_pooling": False,  # keeps the encoder's final LayerNorm, as mpt's Transformer.norm
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "decoder_hidden_size": mae.decoder_dim,
        "decoder_num_hidden_layers": mae.decoder_depth,
        "decoder_num_attention_heads": mae.decoder_heads,
        "decoder_intermediate_size": int(mae.decoder_dim * DECODER_MLP_RATIO),
        "norm_pix_loss": bool(mae.target.normalize),  # per tubelet and channel in both (check_videomae)
    }


def mpt_videomae_summary(cfg: Any, num_channels: int, stats: tuple[list[float], list[float]]) -> dict[str, Any]:  # noqa: ANN401
    from mpt.config import to_plain

    model, mae = cfg.model, mae_section(cfg)
    grid = _grid(cfg)
    n = math.prod(grid)
    return {"frames": cfg.data.frames, "size": cfg.data.size, "channels": int(num_channels),
            "tubelet": cfg.tokenizer.tubelet, "patch": cfg.tokenizer.patch, "grid": list(grid), "num_tokens": n,
            "masked_tokens_per_clip": masked_count(cfg), "dim": model.dim, "depth": model.depth,
            "heads": model.heads, "mlp_ratio": model.mlp_ratio, "decoder_dim": mae.decoder_dim,
            "decoder_depth": mae.decoder_depth, "decoder_heads": mae.decoder_heads,
            "decoder_mlp_ratio": DECODER_MLP_RATIO, "mask": to_plain(mae.mask), "masked_tokens": mae.masked_tokens,
            "target": to_plain(mae.target), "layer_norm_eps": layer_norm_eps(cfg), "mean": stats[0],
            "std": stats[1], "pos": "3-D sin-cos of the (time, row, col) tubelet indices",
            "optimizer": optimizer_summary(cfg)}


def _video_tokenizer(cfg: Any):  # noqa: ANN202, ANN401 - the modality's tokenizer
    """The modality's own tokenizer (its ``normalize`` is what mpt applies to the batch every step)."""
    from mpt.registry import get_modality

    with torch.random.fork_rng(devices=[]):  # its random stem must not touch the seeded RNG
        return get_modality(cfg.modality).tokenizer(cfg.tokenizer, cfg.model.dim)


def _tubeletify(videos: Tensor, tubelet: int, patch: int) -> Tensor:
    """``[B, C, T, H, W]`` → ``[B, N, C, t, p, p]`` in (time, row, col) order: the order of HF's Conv3d
    output (``flatten(2)`` of ``[B, D, T', H', W']``) and, checked in :func:`pixel_values`, of mpt's tokens."""
    b, c, t, h, w = videos.shape
    x = videos.reshape(b, c, t // tubelet, tubelet, h // patch, patch, w // patch, patch)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(b, (t // tubelet) * (h // patch) * (w // patch), c, tubelet, patch, patch)


def pixel_values(cfg: Any, batch: Any, device: torch.device) -> tuple[Tensor, tuple[list[float], list[float]]]:  # noqa: ANN401
    """HF's ``pixel_values`` ``[B, T, C, H, W]``: the raw ``[0, 1]`` batch ``[B, C, T, H, W]`` (an ``mpt.Batch``
    or a tensor) normalised by the mpt tokenizer's own ``normalize``, and its (mean, std).

    Checked once: the tokens mpt cuts from that normalised batch are exactly its ``t × p × p`` tubelets in
    HF's token order, so both models embed and regress the same numbers and one mask index means one tubelet."""
    from mpt.contract import Batch

    tokenizer = _video_tokenizer(cfg).to(device)
    with torch.no_grad():
        normalized = tokenizer.normalize(Batch.of(batch_tensor(batch).to(device)))
        values = normalized.tensor.float().contiguous()
        patches = tokenizer.tokenize(normalized).patches
    expected = _tubeletify(values, cfg.tokenizer.tubelet, cfg.tokenizer.patch)
    if patches.shape != expected.shape or not torch.allclose(patches.float(), expected):
        raise UnsupportedConfig("modality", f"{VIDEOMAE} cuts the normalised pixels itself, but the tokens of "
                                            f"{type(tokenizer).__name__} are not the [C, t, p, p] tubelets of its "
                                            "normalised batch in (time, row, col) order: the two models would not "
                                            "see the same numbers")
    return values.transpose(1, 2).contiguous(), tuple(getattr(tokenizer, "stats", ([], [])))


def bool_masked_pos(cfg: Any, batch_size: int, device: torch.device) -> Tensor:  # noqa: ANN401
    """``[B, N]`` bool, True = hidden: the configured mpt masker's rule (``tube``: the same spatial cells at
    every time slot; ``random``: per clip), :func:`masked_count` per clip, drawn with the global RNG."""
    gt, gh, gw = _grid(cfg)
    s, n = gh * gw, gt * gh * gw
    hidden = masked_count(cfg)
    if mae_section(cfg).mask.name == "tube":
        order = torch.rand(batch_size, s, device=device).argsort(dim=1)[:, : hidden // gt]
        spatial = torch.zeros(batch_size, s, dtype=torch.bool, device=device).scatter_(1, order, True)
        return spatial[:, None].expand(batch_size, gt, s).reshape(batch_size, n)
    order = torch.rand(batch_size, n, device=device).argsort(dim=1)[:, :hidden]
    return torch.zeros(batch_size, n, dtype=torch.bool, device=device).scatter_(1, order, True)


def build_videomae(cfg: Any, batch: Any, device: torch.device) -> Reference:  # noqa: ANN401
    """``VideoMAEForPreTraining`` from the mpt config, AdamW as mpt builds it, inputs = ``batch``
    ``[B, C, T, H, W]`` (raw ``[0, 1]`` pixels; an ``mpt.Batch`` or a tensor) standardised with the mpt
    tokenizer's mean/std as ``pixel_values`` ``[B, T, C, H, W]``; a fresh ``bool_masked_pos`` every forward."""
    from mpt.optim import create_optimizer

    batch = batch_tensor(batch)
    frames, size = cfg.data.frames, cfg.data.size
    if batch.ndim != 5 or tuple(batch.shape[2:]) != (frames, size, size):
        raise UnsupportedConfig("data.size", f"expected a [B, C, {frames}, {size}, {size}] video batch, got "
                                             f"{tuple(batch.shape)}")
    kwargs = videomae_config(cfg, batch.shape[1])
    transformers = require_transformers()
    inputs, stats = pixel_values(cfg, batch, device)  # once, outside the timed step
    config = transformers.VideoMAEConfig(**kwargs, attn_implementation="sdpa")  # mpt's timm blocks use SDPA
    torch.manual_seed(cfg.train.seed)
    model = transformers.VideoMAEForPreTraining(config).to(device)
    model.train()
    optimizer = create_optimizer(model, cfg.optim)  # the same AdamW and parameter-group rule as mpt's
    b = inputs.shape[0]

    def forward() -> Tensor:
        mask = bool_masked_pos(cfg, b, device)  # in the timed step, as mpt's masker; seeded per step
        return model(pixel_values=inputs, bool_masked_pos=mask).loss

    differences = [*VIDEOMAE_DIFFERENCES,
                   f"layer_norm_eps: HF default {HF_LAYER_NORM_EPS:g} set to mpt's model.norm_eps "
                   f"({config.layer_norm_eps:g}), which mpt's encoder and MAE decoder both use"]
    if not cfg.objectives["mae"].target.normalize:
        differences.append("target without norm_pix_loss: mpt regresses the tokenizer-standardised tubelets, HF "
                           "the [0, 1] pixels it recovers with the ImageNet mean/std (same work, other numbers)")
    from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    mean, std = stats
    if config.norm_pix_loss and kwargs["num_channels"] == 3 and (
            list(mean) != list(IMAGENET_DEFAULT_MEAN) or list(std) != list(IMAGENET_DEFAULT_STD)):
        differences.append(f"tokenizer mean/std {mean} / {std} are not ImageNet's: HF un-normalises with "
                           "ImageNet's (a per-channel affine map: cancels in the per-channel target standardisation)")
    embeddings = model.videomae.embeddings
    used = {**kwargs, "attn_implementation": getattr(model.config, "_attn_implementation", None),
            "num_patches": embeddings.num_patches, "masked_per_clip": masked_count(cfg),
            "mask": f"bool_masked_pos by mpt's '{mae_section(cfg).mask.name}' rule, global RNG seeded per step",
            "pixel_values": "mpt batch normalised by the mpt tokenizer's normalize, (x - mean) / std, once, "
                            "as [B, T, C, H, W]"}
    kept = {"initializer_range": config.initializer_range,
            "position_embeddings": "fixed 1-D sinusoid tables over the token index (encoder and decoder)",
            "decoder_norm_eps": model.decoder.norm.eps,
            "encoder_to_decoder_bias": model.encoder_to_decoder.bias is not None}
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Reference(impl="hf", name=VIDEOMAE, model=model, optimizer=optimizer, forward=forward, params=params,
                     config=used, kept_defaults=kept, mpt_config=mpt_videomae_summary(cfg, batch.shape[1], stats),
                     differences=differences, versions={"transformers": str(transformers.__version__)})
