"""Pretrained encoders: ``encoder/`` = ``model.safetensors`` + ``config.json`` (+ ``README.md``).

``config.json`` is the encoder card: modality, plugin and core versions, tokenizer settings,
encoder size, position-embedding kind, objective and the data it was trained on — everything
:func:`load_encoder` needs to rebuild the tokenizer and encoder. Loading is strict: missing or
unexpected tensors and shape mismatches are errors that say what differs.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mpt.backbone import Backbone, build_backbone
from mpt.checkpoint import atomic_dir, commit_dir, state_dict_for_save
from mpt.config import Config, ModelConfig, parse, to_plain
from mpt.contract import PLUGIN_API
from mpt.errors import CheckpointError, ConfigError
from mpt.registry import get_modality, plugin_version

FORMAT = "mpt-encoder"
FORMAT_VERSION = 1


def dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def encoder_card(cfg: Config, backbone: Backbone, trained_on: dict[str, Any]) -> dict[str, Any]:
    """The ``config.json`` describing ``backbone`` trained with ``cfg``."""
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
        "objective_config": to_plain(cfg.mae if cfg.objective == "mae" else cfg.jepa),
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


def load_encoder(path: str | PathLike[str], device: str | torch.device = "cpu") -> Backbone:
    """Rebuild the tokenizer + encoder saved in ``path`` and load its weights strictly.

    Returns a :class:`~mpt.backbone.Backbone` in eval mode: ``encoder(batch)`` takes a raw batch of
    the modality and returns ``.tokens`` ``[B, N, D]`` and ``.pooled`` ``[B, D]``.
    """
    path = Path(path)
    card = read_card(path)
    modality = get_modality(card["modality"])
    try:
        tok_cfg = parse(modality.tokenizer_config, card["tokenizer"]["config"], "tokenizer")
        model_cfg = parse(ModelConfig, card["encoder"], "encoder")
    except (ConfigError, KeyError) as exc:
        raise CheckpointError(f"{path / 'config.json'}: card does not describe a valid encoder: {exc}") from None
    backbone = build_backbone(modality, tok_cfg, model_cfg)
    weights_file = path / "model.safetensors"
    try:
        weights = load_file(str(weights_file))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{weights_file}: cannot read weights ({exc})") from None
    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    shapes = [f"{k}: file {tuple(weights[k].shape)} vs card {tuple(v.shape)}"
              for k, v in expected.items() if k in weights and weights[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{weights_file} does not match its card: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"shape mismatches {shapes[:5]}")
    backbone.load_state_dict(weights, strict=True)
    return backbone.to(device).eval()
