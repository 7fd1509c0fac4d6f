"""Pretrained encoders: ``encoder/`` = ``model.safetensors`` + ``config.json`` (+ ``README.md``).

``config.json`` is the encoder card: modality, plugin and core versions, tokenizer settings,
encoder size, position-embedding kind, objective and the data it was trained on — everything
:func:`load_encoder` needs to rebuild the tokenizer and encoder. Loading is strict: missing or
unexpected tensors and shape mismatches are errors that say what differs. Tokenizer overrides
(``load_encoder(path, tokenizer={...})``) load an encoder at another input size: learned position
tables are resampled and other changed tokenizer tensors adapted by the plugin's documented rule
(:meth:`mpt.contract.Tokenizer.adapt_weight`; :func:`adapt_channels` for channel counts).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from mpt.backbone import Backbone, build_backbone
from mpt.checkpoint import atomic_dir, commit_dir, state_dict_for_save
from mpt.config import Config, ModelConfig, deep_merge, parse, to_plain
from mpt.contract import PLUGIN_API, Modality, Tokenizer
from mpt.errors import CheckpointError, ConfigError
from mpt.pos_embed import RESAMPLE_MODES, LearnedPosEmbed, resample_pos_table
from mpt.registry import get_modality, plugin_version

FORMAT = "mpt-encoder"
FORMAT_VERSION = 2
# Encoder settings whose default changed since a card format: the value older cards were trained with.
LEGACY_ENCODER_DEFAULTS = {1: {"norm_eps": 1e-5}}


def dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def encoder_card(cfg: Config, backbone: Backbone, trained_on: dict[str, Any],
                 objective: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``config.json`` describing ``backbone`` trained with ``cfg``; ``objective`` holds the
    objective's own entries (``Objective.card()``: e.g. which JEPA encoder was exported)."""
    tok = backbone.tokenizer
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "modality": cfg.modality,
        "plugin_api": PLUGIN_API,
        "versions": {"mpt-core": dist_version("mpt-core"), "plugin": plugin_version(cfg.modality),
                     "torch": str(torch.__version__)},
        "tokenizer": {"config": to_plain(cfg.tokenizer), "settings": tok.card()},
        "pos_embed": {"kind": tok.pos_kind, "coord_dim": tok.coord_dim, "size": tok.pos_size},
        "encoder": to_plain(cfg.model),
        "num_params": sum(p.numel() for p in backbone.parameters()),
        "objective": cfg.objective,
        "objective_config": to_plain(cfg.objective_config),
        **(objective or {}),
        "data": to_plain(cfg.data),
        "recipe": cfg.recipe,
        "trained_on": trained_on,
    }


def save_encoder(backbone: Backbone, card: dict[str, Any], path: Path) -> Path:
    """Write ``path/`` atomically: weights, card and a short model card README."""
    path = Path(path)
    tmp = atomic_dir(path)
    save_file(state_dict_for_save(backbone), str(tmp / "model.safetensors"), metadata={"format": FORMAT})
    (tmp / "config.json").write_text(json.dumps(card, indent=2))
    (tmp / "README.md").write_text(model_card(card, path))
    commit_dir(tmp, path)
    return path


def model_card(card: dict[str, Any], path: Path) -> str:
    enc = card["encoder"]
    return (
        f"# mpt {card['modality']} encoder\n\n"
        f"Pretrained with {card['objective'].upper()} (recipe `{card['recipe']}`) by mpt.\n"
        f"ViT {enc['depth']}×{enc['dim']}, {enc['heads']} heads, {card['num_params']:,} parameters.\n\n"
        f"```python\nimport mpt\nencoder = mpt.load_encoder(\"{path}\")\n"
        f"out = encoder(batch)  # out.tokens [B, N, D], out.pooled [B, D]\n```\n\n"
        f"Trained on: {json.dumps(card['trained_on'])}\n"
    )


def read_card(path: Path) -> dict[str, Any]:
    """The encoder card of ``path``; a missing or malformed card is a CheckpointError."""
    path = Path(path)
    card_file = path / "config.json"
    if not card_file.is_file():
        hint = " (this is a run folder: use its encoder/ subfolder)" if (path / "encoder").is_dir() else ""
        raise CheckpointError(f"{path} is not an mpt encoder: {card_file.name} is missing{hint}")
    try:
        card = json.loads(card_file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{card_file}: not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise CheckpointError(f"{card_file}: not an mpt encoder card (format != '{FORMAT}')")
    if card.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{card_file}: written by a newer mpt (card format {card['format_version']}); "
                              "upgrade mpt-core")
    return card


def card_configs(card: dict[str, Any], path: Path) -> tuple[Modality, Any, ModelConfig]:
    """The modality, tokenizer config and encoder config an encoder card describes (validated);
    a card that does not describe a valid encoder is a CheckpointError naming its file."""
    modality = get_modality(card["modality"])
    try:
        tok_cfg = parse(modality.tokenizer_config, card["tokenizer"]["config"], "tokenizer")
        legacy = LEGACY_ENCODER_DEFAULTS.get(int(card.get("format_version", FORMAT_VERSION)), {})
        model_cfg = parse(ModelConfig, {**legacy, **card["encoder"]}, "encoder")
    except (ConfigError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path / 'config.json'}: card does not describe a valid encoder: {exc}") from None
    return modality, tok_cfg, model_cfg


def load_encoder(path: str | PathLike[str], device: str | torch.device = "cpu", *,
                 tokenizer: Mapping[str, Any] | None = None) -> Backbone:
    """Rebuild the tokenizer + encoder saved in ``path`` and load its weights strictly.

    Returns a :class:`~mpt.backbone.Backbone` in eval mode: ``encoder(batch)`` takes a raw batch of
    the modality and returns ``.tokens`` ``[B, N, D]`` and ``.pooled`` ``[B, D]``.

    ``tokenizer`` overrides keys of the card's tokenizer config to load the encoder at another input
    size (``{"max_len": 1024}``, ``{"channels": 4, "mean": [...], "std": [...]}``,
    ``{"num_channels": 9}``); the merged config is validated like a recipe's (an unknown key or bad
    value is a :class:`~mpt.errors.ConfigError` naming it). The file is first checked strictly against
    its own card, then the saved tensors are adapted explicitly, each with a warning:

    * learned position tables (:class:`~mpt.pos_embed.LearnedPosEmbed`) whose grid changed are
      resampled with :func:`~mpt.pos_embed.resample_pos_table`;
    * any other tokenizer tensor whose shape changed goes through the plugin's
      :meth:`Tokenizer.adapt_weight <mpt.contract.Tokenizer.adapt_weight>` (by default an error);
    * tensors an override adds or removes are an error.

    ``backbone.adapted`` lists the state-dict keys that were adapted (empty for a plain load).
    """
    path = Path(path)
    card = read_card(path)
    modality, saved_cfg, model_cfg = card_configs(card, path)
    tok_cfg = saved_cfg if not tokenizer else override_tokenizer(modality.tokenizer_config, card, tokenizer)
    adapting = tok_cfg != saved_cfg
    try:
        backbone = build_backbone(modality, tok_cfg, model_cfg)
    except ConfigError as exc:
        if not adapting:
            raise
        msg = str(exc).removeprefix(f"config key '{exc.key}': ")
        raise ConfigError(exc.key, f"{msg} (with the overrides {dict(tokenizer or {})}; the other tokenizer "
                                   f"settings come from the encoder card {path / 'config.json'})") from None
    weights_file = path / "model.safetensors"
    try:
        weights = load_file(str(weights_file))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{weights_file}: cannot read weights ({exc})") from None
    # The file must match its own card: the tokenizer part is checked against the card's tokenizer.
    saved_tok = modality.tokenizer(saved_cfg, model_cfg.dim) if adapting else backbone.tokenizer
    expected = {f"tokenizer.{k}": tuple(v.shape) for k, v in saved_tok.state_dict().items()}
    expected.update({k: tuple(v.shape) for k, v in backbone.state_dict().items() if not k.startswith("tokenizer.")})
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    shapes = [f"{k}: file {tuple(weights[k].shape)} vs card {v}"
              for k, v in expected.items() if k in weights and tuple(weights[k].shape) != v]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{weights_file} does not match its card: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"shape mismatches {shapes[:5]}")
    adapted: list[str] = []
    if adapting:
        adapted = adapt_tokenizer_weights(weights, saved_tok, backbone.tokenizer, saved_cfg, tok_cfg, weights_file)
    backbone.load_state_dict(weights, strict=True)
    backbone.adapted = adapted
    backbone.to(device).eval()
    backbone.encoder.configure_attention(torch.device(device))
    return backbone


def override_tokenizer(config_type: type, card: dict[str, Any], overrides: Mapping[str, Any]) -> Any:
    """The card's tokenizer config with ``overrides`` applied, validated (ConfigError naming the key)."""
    if not isinstance(overrides, Mapping):
        raise ConfigError("tokenizer", f"tokenizer overrides are a mapping of tokenizer keys to values "
                                       f"(e.g. {{'max_len': 1024}}), got {type(overrides).__name__}")
    base = card["tokenizer"]["config"]
    return parse(config_type, deep_merge(base if isinstance(base, dict) else {}, dict(overrides)), "tokenizer")


def config_changes(old: Any, new: Any) -> str:
    """``"key: old -> new, ..."`` for the fields of two tokenizer configs that differ."""
    if not (dataclasses.is_dataclass(old) and dataclasses.is_dataclass(new)):
        return f"{old} -> {new}"
    return ", ".join(f"tokenizer.{f.name}: {getattr(old, f.name)!r} -> {getattr(new, f.name)!r}"
                     for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name, None))


def adapt_tokenizer_weights(weights: dict[str, Tensor], saved: Tokenizer, new: Tokenizer, saved_cfg: Any,
                            new_cfg: Any, weights_file: Path) -> list[str]:
    """Carry the saved tokenizer tensors of ``weights`` (in place) into the tokenizer ``new`` built with
    overridden settings; returns the adapted keys. See :func:`load_encoder` for the rules."""
    changes = config_changes(saved_cfg, new_cfg)
    old_sd, new_sd = saved.state_dict(), new.state_dict()
    added, removed = sorted(set(new_sd) - set(old_sd)), sorted(set(old_sd) - set(new_sd))
    if added or removed:
        raise CheckpointError(
            f"{weights_file}: the tokenizer overrides ({changes}) change which tensors the tokenizer has "
            f"(new: {['tokenizer.' + k for k in added[:5]]}, gone: {['tokenizer.' + k for k in removed[:5]]}); "
            "loading cannot adapt that: keep the encoder card's value of those settings")
    tables = {f"{name}.table": (name, m) for name, m in new.named_modules() if isinstance(m, LearnedPosEmbed)}
    adapted, notes = [], []
    for name, target in new_sd.items():
        key = f"tokenizer.{name}"
        stored = weights[key]
        if name in tables:
            module_name, module = tables[name]
            old_module = saved.get_submodule(module_name)
            if not isinstance(old_module, LearnedPosEmbed):
                raise CheckpointError(f"{weights_file}: {key} is not a learned position table in the saved encoder")
            if old_module.size != module.size:
                weights[key] = resample_pos_table(stored, old_module.size, module.size)
                adapted.append(key)
                notes.append(f"{key}: position table resampled from {old_module.size} to {module.size} "
                             f"({RESAMPLE_MODES[len(module.size)]} interpolation; {changes})")
                continue
        if stored.shape == target.shape:
            continue
        try:
            out = new.adapt_weight(name, stored, saved_cfg)
        except CheckpointError as exc:
            raise CheckpointError(f"{weights_file}: {exc} (tokenizer overrides: {changes})") from None
        if tuple(out.shape) != tuple(target.shape):
            raise CheckpointError(f"{weights_file}: {type(new).__name__}.adapt_weight returned {key} of shape "
                                  f"{tuple(out.shape)}, the tokenizer needs {tuple(target.shape)}")
        weights[key] = out.to(stored.dtype)
        adapted.append(key)
        notes.append(f"{key}: adapted from {tuple(stored.shape)} to {tuple(out.shape)} by "
                     f"{type(new).__name__}.adapt_weight ({changes})")
    for note in notes:  # only once every tensor could be adapted
        warnings.warn(note, stacklevel=outside_mpt())
    return adapted


def outside_mpt() -> int:
    """The ``stacklevel`` that makes a warning issued by the caller point at the first frame outside
    the ``mpt`` package (the user's ``mpt.load_encoder`` call)."""
    level, frame = 1, sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").split(".")[0] == "mpt":
        frame, level = frame.f_back, level + 1
    return level


def channel_mixing(old: int, new: int) -> Tensor:
    """The ``[new, old]`` matrix of :func:`adapt_channels`: each column (old channel) sums to 1."""
    if old < 1 or new < 1:
        raise ValueError(f"channel_mixing: channel counts must be >= 1, got {old} -> {new}")
    mix = torch.zeros(new, old, dtype=torch.float64)
    if new >= old:  # cyclic repeat: new channel j copies old channel j % old; copies share its weight
        for j in range(new):
            mix[j, j % old] = 1.0 / len(range(j % old, new, old))
    else:  # fold: old channel c is added into new channel c % new (new = 1: the sum)
        for c in range(old):
            mix[c % new, c] = 1.0
    return mix


def adapt_channels(weight: Tensor, channels: int, dim: int = 1) -> Tensor:
    """The input-channel rule of pretrained weights: axis ``dim`` of ``weight`` (``C_old`` input
    channels) becomes ``channels`` (``C_new``), so that an input whose new channels repeat the old ones
    cyclically gives the same output — in particular a constant input (all channels equal).

    * ``C_new = 1``: the sum over the old channels (timm's ``adapt_input_conv``);
    * ``C_new > C_old``: new channel ``j`` copies old channel ``j % C_old``, and the ``n`` copies of an
      old channel each get ``1/n`` of its weight (timm's rule — repeat and scale by ``C_old / C_new`` —
      when ``C_new`` is a multiple of ``C_old``; timm scales all copies alike otherwise, which changes
      a constant input's output);
    * ``1 < C_new < C_old``: old channel ``c`` is added into new channel ``c % C_new``.

    Computed in float64, returned in ``weight``'s dtype; ``C_new = C_old`` returns ``weight`` unchanged.
    """
    old = weight.shape[dim]
    if channels == old:
        return weight.clone()
    mix = channel_mixing(old, channels).to(weight.device)
    out = weight.double().movedim(dim, -1) @ mix.t()
    return out.movedim(-1, dim).to(weight.dtype).contiguous()
