"""The recipe adapted to the user's series (mpt_timeseries.adapt, applied by mpt.trainer.adapt_to_data)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from mpt.config import build_config
from mpt.registry import get_modality
from mpt.trainer import adapt_to_data, pretrain
from mpt_timeseries.adapt import MAX_CONTEXT, MIN_TOKENS, adapt, level_ratio


def lengths_dataset(*lengths: int) -> SimpleNamespace:
    """What adapt reads of a TimeSeriesDataset: the series lengths of its files (one series: no levels)."""
    return SimpleNamespace(files=SimpleNamespace(info=[SimpleNamespace(lengths=list(lengths))]), series=[(0, 0, 1)])


class SeriesFiles:
    """``dataset.files`` of one file holding ``series``: its lengths (``info``) and, by index, its table."""

    def __init__(self, series: list[np.ndarray]) -> None:
        self.table = SimpleNamespace(series=series)
        self.info = [SimpleNamespace(lengths=[x.shape[1] for x in series])]

    def __getitem__(self, k: int) -> SimpleNamespace:
        return self.table


def series_dataset(series: list[np.ndarray]) -> SimpleNamespace:
    """What adapt reads of a TimeSeriesDataset holding ``series`` ``[C, T]`` in one file."""
    return SimpleNamespace(files=SeriesFiles(series), series=[(0, i, x.shape[1]) for i, x in enumerate(series)])


def proposals(dataset: SimpleNamespace, *sets: str) -> dict[str, object]:
    cfg = build_config(get_modality("timeseries"), "demo", sets=sets)  # context 100, patch 10, min_length 10
    return {a.key: a.value for a in adapt(dataset, cfg)}


def test_short_series_get_one_window_each_and_enough_patches() -> None:
    # 24..40-step series under the demo's 100-step windows of 10-step patches
    got = proposals(lengths_dataset(24, 31, 40))
    assert got["data.context"] == 40
    # the patch rule reads the current config: with context still 100 it has 10 patches, nothing to do yet
    assert "tokenizer.patch" not in got
    got = proposals(lengths_dataset(24, 31, 40), "data.context=40")
    assert got["tokenizer.patch"] == got["tokenizer.stride"] == 40 // MIN_TOKENS == 5


def test_long_series_keep_the_windows_with_a_note() -> None:
    got = proposals(lengths_dataset(MAX_CONTEXT + 1, 2000))
    assert got == {"data.context": None}  # guidance only: windows of 100


def test_a_patch_you_set_is_left_alone() -> None:
    got = proposals(lengths_dataset(24), "data.context=24", "tokenizer.patch=12")
    assert "tokenizer.patch" not in got and "tokenizer.stride" not in got


def test_min_length_drops_to_keep_series_longer_than_a_patch() -> None:
    got = proposals(lengths_dataset(7, 29), "data.context=29", "tokenizer.patch=3", "tokenizer.stride=3")
    assert got["data.min_length"] == 7
    # a series shorter than one patch stays skipped, and the user is told
    cfg = build_config(get_modality("timeseries"), "demo", sets=["tokenizer.patch=8", "tokenizer.stride=8",
                                                                  "data.context=29"])
    notes = [a for a in adapt(lengths_dataset(5, 29), cfg) if a.key == "data.min_length"]
    assert [a.value for a in notes] == [8, None]
    assert "shorter than one 8-step patch" in notes[1].reason


def write_series(folder: Path, lengths: tuple[int, ...]) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, n in enumerate(lengths):
        np.save(folder / f"s{i}.npy", rng.normal(size=(2, n)).astype(np.float32))
    return folder


def test_trainer_applies_proposals_to_recipe_values_only(tmp_path: Path) -> None:
    """Fixed point: context first, then the patch for the new context, then min_length; the dataset is
    reopened with the new windows; a key given with --set is kept and reported."""
    modality = get_modality("timeseries")
    data = write_series(tmp_path / "data", (8, 30, 32))  # the 8-step series is shorter than min_length 10
    cfg = build_config(modality, "demo")
    with pytest.warns(UserWarning, match="skipped 1 series shorter than data.min_length=10"):
        dataset = modality.dataset(data, "train", cfg.data)
    assert len(dataset) == 2
    cfg2, dataset2, said, lines = adapt_to_data(modality, cfg, dataset, [], data, skip_bad_files=False)
    assert said == []  # the reopened data keeps every series: nothing to warn
    assert (cfg2.data.context, cfg2.tokenizer.patch, cfg2.tokenizer.stride, cfg2.data.min_length) == (32, 4, 4, 8)
    assert len(dataset2) == 3 and dataset2[0].input.shape == (2, 32)  # every series, one window each
    assert any("data.context 100 → 32" in line for line in lines)

    kept = build_config(modality, "demo", sets=["data.context=16"])
    with pytest.warns(UserWarning, match="skipped 1 series"):
        opened = modality.dataset(data, "train", kept.data)
    cfg3, _, _, lines3 = adapt_to_data(modality, kept, opened, [], data, False)
    assert cfg3.data.context == 16 and cfg3.tokenizer.patch == 2  # 16 // 8, for the context you chose
    assert any(line.startswith("note: data.context") and "you set 16: kept" in line for line in lines3)

    off = build_config(modality, "demo", sets=["train.adapt=false"])
    cfg4, dataset4, _, lines4 = adapt_to_data(modality, off, dataset, [], data, False)
    assert cfg4 == off and dataset4 is dataset and lines4 == []


def test_adapted_values_reach_the_run_config_and_the_encoder(tmp_path: Path) -> None:
    from mpt.pretrained import read_card

    modality = get_modality("timeseries")
    data = write_series(tmp_path / "data", (30, 32, 32))
    cfg = build_config(modality, "demo", sets=["model.dim=32", "model.depth=1", "model.heads=2",
                                                "mae.decoder_dim=32", "mae.decoder_depth=1", "mae.decoder_heads=2",
                                                "train.max_steps=2", "optim.warmup_steps=1", "train.batch_size=2"])
    run = pretrain(cfg, modality, tmp_path / "run", data=data, progress=False)
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert text.startswith("# adapted to the data: data.context 100 → 32")
    saved = yaml.safe_load(text)
    assert saved["data"]["context"] == 32 and saved["tokenizer"]["patch"] == 4
    assert read_card(run.encoder)["data"]["context"] == 32  # probe/evaluate read the data as pretrained


@pytest.mark.parametrize("bad", ["train.adapt=maybe"])
def test_train_adapt_must_be_a_boolean(bad: str) -> None:
    from mpt.errors import ConfigError

    with pytest.raises(ConfigError, match="train.adapt"):
        build_config(get_modality("timeseries"), "demo", sets=[bad])


def test_revin_turns_off_when_levels_tell_series_apart() -> None:
    rng = np.random.default_rng(0)
    # levels carry the class: means 0 or 3 per series, small wiggles within (JapaneseVowels-like)
    levels = [rng.normal(size=(2, 64)) * 0.3 + 3.0 * (i % 2) for i in range(20)]
    ratio, scale = level_ratio(levels)
    means = np.stack([x.mean(1) for x in levels])
    within = np.stack([x.std(1) for x in levels]).mean(0)
    assert ratio == pytest.approx(float(np.median(means.std(0) / within)))
    assert ratio > 1 and 0.01 < scale < 100
    assert proposals(series_dataset(levels), "data.context=64")["tokenizer.revin"] is False
    # z-normalised series (the UCR univariate sets): RevIN is harmless, nothing proposed
    znorm = [(x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True) for x in levels]
    assert level_ratio(znorm)[0] < 1e-6
    assert "tokenizer.revin" not in proposals(series_dataset(znorm), "data.context=64")
    # levels matter but the values are huge: unnormalised input would not train, so only guidance
    huge = [x * 1e4 for x in levels]
    cfg = build_config(get_modality("timeseries"), "demo", sets=["data.context=64"])
    note = [a for a in adapt(series_dataset(huge), cfg) if a.key == "tokenizer.revin"]
    assert [a.value for a in note] == [None] and "standardise" in note[0].reason
