"""Hugging Face reference models for ``pretrain_throughput.py --against hf``.

Each supported modality maps to a :class:`ReferenceSpec` in :data:`REFERENCES`: ``check(cfg)``
raises :class:`UnsupportedConfig` for an mpt config the reference cannot express (it needs no
transformers), and ``build(cfg, batch, device)`` returns a :class:`Reference`: the transformers
model built from the mpt config actually used, the same optimizer, and its forward pass on the
same inputs (``batch``: the benchmark's ``mpt.Batch``, or a plain tensor; see :func:`batch_tensor`).
The timing, FLOP counting and records stay in ``pretrain_throughput.py``.

transformers is a benchmark-only dependency: it is imported here, lazily, and nowhere in
``core/`` or ``plugins/``. To add a modality (as images with ``ViTMAEForPreTraining``, ``hf_vitmae.py``, and
videos with ``VideoMAEForPreTraining``, ``hf_videomae.py``), write its ``check`` / ``build`` pair and add it to
:data:`REFERENCES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mpt.errors import ConfigError

INSTALL_HINT = "pip install transformers (a benchmark-only dependency; mpt itself never imports it)"


class UnsupportedConfig(ConfigError):
    """The mpt config has no equivalent in the reference implementation."""


def require_transformers() -> Any:  # noqa: ANN401 - the transformers module
    """Import transformers, or raise ImportError saying how to install it."""
    try:
        import transformers
    except ImportError as exc:
        raise ImportError(f"--against hf needs transformers ({exc}): {INSTALL_HINT}") from None
    return transformers


def batch_tensor(batch: Any) -> Tensor:  # noqa: ANN401 - mpt.Batch or Tensor
    """The input tensor of a single-input batch: ``batch.tensor`` of an ``mpt.Batch``, or ``batch`` itself."""
    from mpt.contract import Batch

    return Batch.of(batch).tensor


def mae_section(cfg: Any) -> Any:  # noqa: ANN401 - mpt.config.Config → MAEConfig
    """The ``mae`` section of ``cfg`` (``cfg.objectives["mae"]``; the ``check_*`` functions verify
    ``cfg.objective == "mae"`` before reading it, so it is the chosen objective's section)."""
    return cfg.objectives["mae"]


@dataclass
class Reference:
    """One reference implementation, ready to train on the benchmark's batch."""

    impl: str  # the records' "impl"
    name: str  # e.g. "transformers.PatchTSTForPretraining"
    model: nn.Module
    optimizer: torch.optim.Optimizer
    forward: Callable[[], Tensor]  # one forward pass on the prepared inputs (masking included) → scalar loss
    params: int
    config: dict[str, Any]  # the reference's configuration as used
    kept_defaults: dict[str, Any]  # the reference's defaults kept where mpt has no equivalent setting
    mpt_config: dict[str, Any]  # the mpt settings that were mapped, for the mpt line
    differences: list[str] = field(default_factory=list)  # what still differs between the two models
    versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReferenceSpec:
    name: str
    check: Callable[[Any], None]  # cfg → None, or raise UnsupportedConfig (no transformers needed)
    build: Callable[[Any, Any, torch.device], Reference]  # (cfg, mpt.Batch or tensor, device) → Reference


# --------------------------------------------------------------------------- time series: PatchTST

PATCHTST = "transformers.PatchTSTForPretraining"

PATCHTST_DIFFERENCES = [
    "norm: mpt pre-norm LayerNorm blocks + a final LayerNorm; HF pre-norm BatchNorm1d over the patches "
    "(HF default norm_type='batchnorm' kept), no final norm",
    "attention projections: mpt one fused qkv Linear (timm Block); HF separate q/k/v Linears; both SDPA",
    "head: mpt Linear(d_model -> patch) on the masked patches only; HF on every patch, loss masked",
    "RevIN + patching: mpt tokenizer under no_grad before the forward (in the step time); HF scaler + "
    "patchify inside its forward",
    "masking: mpt index masker with a seeded generator; HF random_masking with the global RNG (seeded per "
    "step); both per sample and channel, int(N * (1 - ratio)) patches kept per row",
    "input layout: mpt [B, C, T]; HF past_values [B, T, C] (transposed once, outside the timed step)",
]


def _patchtst_patches(context: int, patch: int, stride: int) -> int:
    return (context - patch) // stride + 1


def check_patchtst(cfg: Any) -> None:  # noqa: ANN401 - mpt.config.Config
    """Raise :class:`UnsupportedConfig` when ``PatchTSTForPretraining`` cannot express ``cfg``."""
    if cfg.objective != "mae":
        raise UnsupportedConfig("objective", f"{PATCHTST} is masked-patch reconstruction (mae); "
                                             f"'{cfg.objective}' has no Hugging Face reference")
    mae, tok, model = mae_section(cfg), cfg.tokenizer, cfg.model
    if mae.masked_tokens != "zero":
        raise UnsupportedConfig("mae.masked_tokens", f"{PATCHTST} keeps masked patches in the encoder input, "
                                                     "zeroed (masked_tokens: zero); 'drop' (MAE encoder on the "
                                                     "visible patches + decoder) has no equivalent there")
    if mae.mask.name != "random":
        raise UnsupportedConfig("mae.mask.name", f"{PATCHTST} is compared with mask_type='random'; the mpt "
                                                 f"masker '{mae.mask.name}' has no equivalent there")
    if mae.target.name != "patch" or mae.target.normalize:
        key = "mae.target.name" if mae.target.name != "patch" else "mae.target.normalize"
        raise UnsupportedConfig(key, f"{PATCHTST} regresses the RevIN-normalised patch values: needs "
                                     "mae.target: {name: patch, normalize: false}")
    if tok.channels != "independent":
        raise UnsupportedConfig("tokenizer.channels", f"{PATCHTST} (channel_attention=False) is channel-"
                                                      f"independent; channels: {tok.channels} has no equivalent")
    if model.drop_path:
        raise UnsupportedConfig("model.drop_path", "HF PatchTST's path_dropout is element-wise dropout, not "
                                                   "stochastic depth; set model.drop_path=0")
    if model.pos_every_block:
        raise UnsupportedConfig("model.pos_every_block", f"{PATCHTST} adds positions once, at the input")
    context, patch, stride = cfg.data.context, tok.patch, tok.stride
    if context <= patch:
        raise UnsupportedConfig("tokenizer.patch", f"{PATCHTST} needs data.context ({context}) > tokenizer.patch "
                                                   f"({patch})")
    if (context - patch) % stride:
        raise UnsupportedConfig(
            "tokenizer.stride",
            f"HF PatchTST drops the first {(context - patch) % stride} steps where mpt pads the last patch "
            f"((data.context - patch) = {context - patch} is not a multiple of stride {stride}): the token "
            f"counts would differ; choose e.g. patch=stride=16 for context 512")
    n = _patchtst_patches(context, patch, stride)
    if int(n * (1 - mae.mask.ratio)) < 1 or int(n * (1 - mae.mask.ratio)) >= n:
        raise UnsupportedConfig("mae.mask.ratio", f"with {n} patches, ratio {mae.mask.ratio} keeps "
                                                  f"{int(n * (1 - mae.mask.ratio))}; mpt clamps to [1, {n - 1}], "
                                                  "HF does not: pick a ratio that keeps between 1 and N-1")


def patchtst_config(cfg: Any, num_channels: int) -> dict[str, Any]:  # noqa: ANN401
    """``PatchTSTConfig`` keyword arguments equivalent to the mpt config ``cfg`` with ``num_channels``
    input channels (checked with :func:`check_patchtst` first)."""
    check_patchtst(cfg)
    tok, model = cfg.tokenizer, cfg.model
    return {
        "num_input_channels": int(num_channels),
        "context_length": cfg.data.context,
        "patch_length": tok.patch,
        "patch_stride": tok.stride,
        "d_model": model.dim,
        "num_hidden_layers": model.depth,
        "num_attention_heads": model.heads,
        "ffn_dim": int(model.dim * model.mlp_ratio),  # timm Block: hidden = int(dim * mlp_ratio)
        "activation_function": "gelu",  # timm Block: nn.GELU (exact)
        "bias": True,  # qkv_bias=True, biased MLP
        "pre_norm": True,
        "share_embedding": True,  # one Linear(patch -> d_model) for every channel, as mpt
        "channel_attention": False,
        "positional_encoding_type": "random" if tok.pos == "learned" else "sincos",  # "random" = learned table
        "use_cls_token": model.cls_token,
        "scaling": "std" if tok.revin else None,  # RevIN without affine weights
        "do_mask_input": True,
        "mask_type": "random",
        "random_mask_ratio": mae_section(cfg).mask.ratio,
        "channel_consistent_masking": False,  # a mask per sample and channel, as mpt's folded rows
        "mask_value": 0,
        "loss": "mse",
        "attention_dropout": 0.0, "positional_dropout": 0.0, "path_dropout": 0.0, "ff_dropout": 0.0,
        "head_dropout": 0.0,
    }


def mpt_patchtst_summary(cfg: Any, num_channels: int) -> dict[str, Any]:  # noqa: ANN401
    tok, model, mae = cfg.tokenizer, cfg.model, mae_section(cfg)
    return {"channels": int(num_channels), "context": cfg.data.context, "patch": tok.patch, "stride": tok.stride,
            "num_patches": _patchtst_patches(cfg.data.context, tok.patch, tok.stride), "dim": model.dim,
            "depth": model.depth, "heads": model.heads, "mlp_ratio": model.mlp_ratio,
            "mask_ratio": mae.mask.ratio, "masked_tokens": mae.masked_tokens, "revin": tok.revin,
            "revin_eps": tok.revin_eps, "pos": tok.pos, "cls_token": model.cls_token,
            "norm": "pre-norm LayerNorm + final LayerNorm", "optimizer": optimizer_summary(cfg)}


def optimizer_summary(cfg: Any) -> dict[str, Any]:  # noqa: ANN401
    o = cfg.optim
    return {"name": "torch.optim.AdamW (mpt.optim.create_optimizer)", "lr": o.lr, "betas": list(o.betas),
            "weight_decay": o.weight_decay, "grad_clip": o.grad_clip}


def build_patchtst(cfg: Any, batch: Any, device: torch.device) -> Reference:  # noqa: ANN401
    """``PatchTSTForPretraining`` from the mpt config, AdamW as mpt builds it, inputs = ``batch``
    ``[B, C, T]`` (the raw collated series, before mpt's ``Tokenizer.normalize``: HF scales inside its
    forward) as ``past_values`` ``[B, T, C]`` (NaN → ``past_observed_mask``)."""
    from mpt.optim import create_optimizer

    batch = batch_tensor(batch)
    if batch.ndim != 3 or batch.shape[2] != cfg.data.context:
        raise UnsupportedConfig("data.context", f"expected a [B, C, {cfg.data.context}] batch, got "
                                                f"{tuple(batch.shape)}")
    kwargs = patchtst_config(cfg, batch.shape[1])
    transformers = require_transformers()
    config = transformers.PatchTSTConfig(**kwargs)
    config.minimum_scale = cfg.tokenizer.revin_eps  # PatchTSTStdScaler: sqrt(var + minimum_scale), as RevIN
    torch.manual_seed(cfg.train.seed)
    model = transformers.PatchTSTForPretraining(config).to(device)
    model.train()
    optimizer = create_optimizer(model, cfg.optim)  # the same AdamW and parameter groups as mpt's
    x = batch.to(device=device, dtype=torch.float32)
    observed = ~x.isnan()
    past_values = x.nan_to_num(0.0).transpose(1, 2).contiguous()  # [B, T, C]
    past_observed = None if bool(observed.all()) else observed.transpose(1, 2).contiguous()

    def forward() -> Tensor:
        return model(past_values=past_values, past_observed_mask=past_observed).loss

    differences = list(PATCHTST_DIFFERENCES)
    if past_observed is not None:
        differences.append("missing values: mpt ignores NaN steps in its loss; HF gets past_observed_mask "
                           "(used by its scaler only)")
    used = {**kwargs, "minimum_scale": config.minimum_scale,
            "attn_implementation": getattr(model.config, "_attn_implementation", None),
            "num_patches": model.model.patchifier.num_patches}
    kept = {k: getattr(config, k) for k in ("norm_type", "norm_eps", "init_std", "share_projection")}
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Reference(impl="hf", name=PATCHTST, model=model, optimizer=optimizer, forward=forward, params=params,
                     config=used, kept_defaults=kept, mpt_config=mpt_patchtst_summary(cfg, batch.shape[1]),
                     differences=differences, versions={"transformers": str(transformers.__version__)})


REFERENCES: dict[str, ReferenceSpec] = {
    "timeseries": ReferenceSpec(PATCHTST, check_patchtst, build_patchtst),
}


def supported() -> str:
    """``timeseries (transformers.PatchTSTForPretraining), ...`` for error messages."""
    return ", ".join(f"{m} ({s.name})" for m, s in sorted(REFERENCES.items()))


def _vitmae(name: str) -> Callable[..., Any]:
    """``benchmarks/hf_vitmae.py``'s ``name``, imported when called (that module imports this one)."""
    def call(*args: Any) -> Any:  # noqa: ANN401
        import hf_vitmae

        return getattr(hf_vitmae, name)(*args)
    return call


REFERENCES["image"] = ReferenceSpec("transformers.ViTMAEForPreTraining", _vitmae("check_vitmae"),
                                    _vitmae("build_vitmae"))


def _videomae(name: str) -> Callable[..., Any]:
    """``benchmarks/hf_videomae.py``'s ``name``, imported when called (that module imports this one)."""
    def call(*args: Any) -> Any:  # noqa: ANN401
        import hf_videomae

        return getattr(hf_videomae, name)(*args)
    return call


REFERENCES["video"] = ReferenceSpec("transformers.VideoMAEForPreTraining", _videomae("check_videomae"),
                                    _videomae("build_videomae"))
