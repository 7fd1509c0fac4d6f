"""Maskers chosen by name: the registry, config validation, and the grid check made before training."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch

from mpt.config import Choice, MAEConfig, bounded, make_choice, parse, to_plain
from mpt.contract import Mask, Masker, TokenSet, as_masks
from mpt.errors import ConfigError
from mpt.masking import (
    BlockFamily,
    DualMaskConfig,
    FamiliesConfig,
    MultiblockConfig,
    TubeMaskConfig,
    check_masker,
    create_masker,
    pack_mask,
)
from mpt.registry import MASKERS, Registered

GRID_AXES = {"random": 0, "point_block": 0, "dual": 0, "block": 1, "multiblock": 1,
             "multiblock_families": 1, "tube": 2, "bands": 2}


def test_core_maskers_are_registered_with_their_configs() -> None:
    assert set(GRID_AXES) <= set(MASKERS.names())
    for name, axes in GRID_AXES.items():
        item = MASKERS.get(name, "mae.mask.name")
        assert item.grid_axes == axes and item.description and item.config is not None
    assert MASKERS.get("tube", "k").config is TubeMaskConfig
    assert make_choice("maskers", "tube", {}, "mae.mask").params == TubeMaskConfig(ratio=0.9)
    assert make_choice("maskers", "multiblock", {}, "jepa.mask").params == MultiblockConfig()
    assert make_choice("maskers", "multiblock_families", {}, "jepa.mask").params.families == [
        BlockFamily(8, 0.15), BlockFamily(2, 0.7)]


def test_unknown_masker_names_the_key_and_lists_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        make_choice("maskers", "tubes", {}, "mae.mask")
    assert info.value.key == "mae.mask.name"
    assert "tube" in str(info.value) and "multiblock_families" in str(info.value)
    with pytest.raises(ConfigError) as info:
        create_masker(Choice("nope"), "jepa.mask")
    assert info.value.key == "jepa.mask.name"
    with pytest.raises(ConfigError) as info:
        parse(MAEConfig, {"mask": {"name": "dual", "encoder": "nope"}}, "mae")
    assert info.value.key == "mae.mask.encoder.name"


@pytest.mark.parametrize(("name", "params", "key"), [
    ("random", {"ratio": 1.5}, "mae.mask.ratio"),
    ("random", {"ratio": 0}, "mae.mask.ratio"),
    ("tube", {"num_targets": 2}, "mae.mask.num_targets"),
    ("multiblock", {"num_targets": 0}, "mae.mask.num_targets"),
    ("multiblock_families", {"families": [{"num_blocks": 0, "scale": 0.1}]}, "mae.mask.families[0].num_blocks"),
    ("multiblock_families", {"families": [{"num_blocks": 2, "scale": 1.5}]}, "mae.mask.families[0].scale"),
    ("dual", {"decoder_ratio": 1.0}, "mae.mask.decoder_ratio"),
    ("dual", {"decoder": "cell"}, "mae.mask.decoder"),
    ("dual", {"encoder": {"name": "tube", "ratio": 0}}, "mae.mask.encoder.ratio"),
])
def test_bad_parameters_name_their_key(name: str, params: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_choice("maskers", name, params, "mae.mask")
    assert info.value.key == key


@pytest.mark.parametrize(("name", "params", "key"), [
    ("multiblock", {"target_scale": [0.3, 0.1]}, "jepa.mask.target_scale"),
    ("multiblock", {"context_scale": [0.5, 1.2]}, "jepa.mask.context_scale"),
    ("multiblock_families", {"families": []}, "jepa.mask.families"),
    ("multiblock_families", {"families": [{"num_blocks": 2, "scale": 0.2, "aspect": [2, 1]}]},
     "jepa.mask.families[0].aspect"),
    ("dual", {"encoder": {"name": "multiblock", "target_aspect": [0, 1]}}, "jepa.mask.encoder.target_aspect"),
])
def test_range_checks_at_build_name_their_key(name: str, params: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_masker(make_choice("maskers", name, params, "jepa.mask"), "jepa.mask")
    assert info.value.key == key


def test_nested_masker_choice_round_trips_through_the_config() -> None:
    raw = {"mask": {"name": "dual", "encoder": {"name": "tube", "ratio": 0.8}, "decoder": "random"}}
    cfg = parse(MAEConfig, raw, "mae")
    assert cfg.mask.name == "dual" and isinstance(cfg.mask.params, DualMaskConfig)
    assert cfg.mask.encoder.name == "tube" and cfg.mask.encoder.ratio == 0.8 and cfg.mask.decoder == "random"
    assert to_plain(parse(MAEConfig, to_plain(cfg), "mae")) == to_plain(cfg)
    families = parse(MAEConfig, {"mask": {"name": "multiblock_families",
                                          "families": [{"num_blocks": 4, "scale": 0.3}]}}, "mae").mask.params
    assert families == FamiliesConfig([BlockFamily(4, 0.3)])


@pytest.mark.parametrize("name", ["tube", "block", "multiblock", "multiblock_families"])
def test_check_masker_rejects_grid_maskers_on_sets(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_masker(make_choice("maskers", name, {}, "jepa.mask"), 0, "jepa.mask")
    assert info.value.key == "jepa.mask.name"
    message = str(info.value)
    assert f"masker '{name}' needs a token grid with >= {GRID_AXES[name]} axes" in message
    assert "unordered set (grid_axes=0)" in message and "'random'" in message and "'point_block'" in message
    assert "'tube'" not in message.split("use")[-1] and "'dual'" not in message.split("use")[-1]


def test_check_masker_accepts_what_fits() -> None:
    for name in ("random", "point_block"):
        check_masker(make_choice("maskers", name, {}, "mae.mask"), 0, "mae.mask")
    for name in ("block", "multiblock", "multiblock_families"):
        check_masker(make_choice("maskers", name, {}, "mae.mask"), 1, "mae.mask")
    with pytest.raises(ConfigError, match="a grid of 1 axes"):
        check_masker(make_choice("maskers", "tube", {}, "mae.mask"), 1, "mae.mask")
    check_masker(make_choice("maskers", "tube", {}, "mae.mask"), 2, "mae.mask")
    check_masker(make_choice("maskers", "dual", {}, "mae.mask"), 3, "mae.mask")


def test_check_masker_looks_into_dual() -> None:
    with pytest.raises(ConfigError) as info:  # the default tube encoder
        check_masker(make_choice("maskers", "dual", {}, "mae.mask"), 0, "mae.mask")
    assert info.value.key == "mae.mask.encoder.name"
    with pytest.raises(ConfigError, match="use decoder: random") as info:  # the running-cell decoder
        check_masker(make_choice("maskers", "dual", {"encoder": "random"}, "mae.mask"), 1, "mae.mask")
    assert info.value.key == "mae.mask.decoder"
    check_masker(make_choice("maskers", "dual", {"encoder": "random", "decoder": "random"}, "mae.mask"), 0,
                 "mae.mask")


# ------------------------------------------------------------------ a masker registered by a plugin


@dataclass
class EveryOtherConfig:
    offset: int = bounded(0, ge=0, le=1)


def every_other(params: EveryOtherConfig, key: str = "mask") -> Masker:
    def masker(tokens: TokenSet, generator: torch.Generator) -> Mask:
        pred = (torch.arange(tokens.num_tokens) % 2 == params.offset).expand(tokens.batch_size, -1)
        return pack_mask(~pred, pred.clone(), tokens, generator)

    return masker


@pytest.fixture
def plugin_masker() -> Iterator[Registered]:
    item = MASKERS.register(Registered("every_other", every_other, EveryOtherConfig, "test masker", 0))
    yield item
    MASKERS._items.pop("every_other")


def test_a_registered_masker_is_usable_by_name(plugin_masker: Registered) -> None:
    assert "every_other" in MASKERS.names()
    masker = create_masker(make_choice("maskers", "every_other", {"offset": 1}, "mae.mask"), "mae.mask")
    tokens = TokenSet(patches=torch.zeros(2, 6, 1), coords=torch.zeros(2, 6, 1))
    (mask,) = as_masks(masker(tokens, torch.Generator().manual_seed(0)))
    assert mask.pred.tolist() == [[1, 3, 5]] * 2 and mask.keep.tolist() == [[0, 2, 4]] * 2
    with pytest.raises(ConfigError) as info:
        make_choice("maskers", "every_other", {"offset": 2}, "mae.mask")
    assert info.value.key == "mae.mask.offset"
    parse(MAEConfig, {"mask": {"name": "every_other"}}, "mae")
    with pytest.raises(ConfigError, match="'every_other'"):  # now among the suggestions for sets
        check_masker(make_choice("maskers", "tube", {}, "mae.mask"), 0, "mae.mask")
