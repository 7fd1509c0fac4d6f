"""Spectrogram patches, positions, normalisation, statistics and padding on the audio grid."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import mpt
from mpt.config import build_config
from mpt.contract import Batch, Sample, collate_samples
from mpt.errors import ConfigError, DataError
from mpt.masking import random_mask
from mpt.pos_embed import sincos_nd
from mpt.trainer import build_model
from mpt_audio.config import AUDIOSET_MEAN, AUDIOSET_STD, AudioTokenizerConfig
from mpt_audio.fbank import fbank
from mpt_audio.tokenizer import AudioTokenizer, patchify, unpatchify

RATE = 16000


def tokenizer(**kw: object) -> AudioTokenizer:
    base: dict[str, object] = {"stats": "audioset", "mel": 32, "patch": [4, 8]}
    return AudioTokenizer(AudioTokenizerConfig(**{**base, **kw}), dim=24)  # type: ignore[arg-type]


def waves(*seconds: float, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    samples = [Sample(input=0.1 * torch.randn(int(s * RATE), generator=g), meta={"rate": RATE}) for s in seconds]
    return collate_samples(samples)


def test_patches_are_time_major_blocks_of_the_spectrogram() -> None:
    spec = torch.randn(2, 8, 16)
    patches = patchify(spec, 4, 8)  # grid (2, 2)
    assert patches.shape == (2, 4, 4, 8)
    torch.testing.assert_close(patches[:, 1], spec[:, 0:4, 8:16])  # token 1 = (time 0, mel 1)
    torch.testing.assert_close(patches[:, 2], spec[:, 4:8, 0:8])
    torch.testing.assert_close(unpatchify(patches, (2, 2)), spec)


def test_normalize_is_the_batched_fbank_with_the_recipe_statistics() -> None:
    tok = tokenizer()
    batch = waves(1.0, 0.5)
    out = tok.normalize(batch)
    frames = out.meta["frames"]
    assert out.tensor.shape == (2, 98, 32) and frames.tolist() == [98, 48]
    for i, n in enumerate((16000, 8000)):  # each row is its own clip's fbank, normalised (x - m) / (2 s)
        spec, _ = fbank(batch.tensor[i : i + 1, :n], None, RATE, num_mel_bins=32)
        want = (spec[0] - AUDIOSET_MEAN) / (2 * AUDIOSET_STD)
        torch.testing.assert_close(out.tensor[i, : frames[i]], want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(tok.unstandardize(tok.standardize(out.tensor)), out.tensor)


def test_time_patches_follow_the_length_and_padding_is_never_a_valid_token() -> None:
    tok = tokenizer()
    tokens = tok.tokenize(tok.normalize(waves(1.0, 0.5)))
    assert tokens.grid == (24, 4) and tokens.patches.shape == (2, 96, 4, 8)  # 98 frames → 24 whole patches
    assert tokens.valid is not None and tokens.valid[0].all()
    assert int(tokens.valid[1].sum()) == 12 * 4  # 48 frames: 12 whole time patches × 4 mel patches
    assert tokens.coords[1, 47].tolist() == [11.0, 3.0] and not bool(tokens.valid[1, 48])
    alone = tok.tokenize(tok.normalize(waves(0.5)))
    assert alone.grid == (12, 4) and alone.valid is None
    pos = tok.pos(tokens.coords)[0]  # MAE's axis convention: mel index in the first half, time in the second

    def one_axis(v: float, d: int = 12) -> torch.Tensor:  # MAE get_1d_sincos_pos_embed_from_grid
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2))
        return torch.cat([torch.sin(v * omega), torch.cos(v * omega)]).float()

    torch.testing.assert_close(pos[6], torch.cat([one_axis(2.0), one_axis(1.0)]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pos, sincos_nd(tokens.coords[0], 24))


def test_padding_content_never_reaches_the_loss() -> None:
    """Whatever padded tokens hold, the MAE loss of a batch is the same: padding is never kept,
    predicted, attended to or scored (the core's masks and attention, fed the tokenizer's ``valid``)."""
    modality = mpt.get_modality("audio")
    cfg = build_config(modality, "demo", None, ("model.depth=1", "mae.decoder_depth=1", "tokenizer.stats=audioset",
                                                "mae.decoder_window=[2,2]"))
    torch.manual_seed(0)
    objective, _ = build_model(cfg, modality)
    tok = objective.backbone.tokenizer
    tokens = tok.tokenize(tok.normalize(waves(2.0, 0.6)))
    assert tokens.valid is not None and not bool(tokens.valid[1].all())
    noisy = dataclasses.replace(tokens, patches=torch.where(tokens.valid[..., None, None], tokens.patches,
                                                            torch.randn_like(tokens.patches) * 50))
    mask = random_mask(tokens, torch.Generator().manual_seed(0), 0.8)
    losses = [objective(t, [mask]).loss for t in (tokens, noisy)]
    torch.testing.assert_close(losses[0], losses[1])


def test_bad_batches_and_configs_are_clear_errors() -> None:
    tok = tokenizer()
    with pytest.raises(DataError, match="NaN or Inf"):
        tok.normalize(Batch(input=torch.tensor([[0.0, float("nan")] * 4000])))
    with pytest.raises(DataError, match=r"\[B, samples\]"):
        tok.normalize(Batch(input=torch.zeros(1, 2, 8000)))
    with pytest.raises(DataError, match="int16"):
        tok.normalize(Batch(input=torch.zeros(1, 8000, dtype=torch.int16)))
    with pytest.raises(DataError, match="44100.*16000 Hz"):
        tok.normalize(dataclasses.replace(waves(0.5), meta={"rate": torch.tensor([44100])}))
    with pytest.raises(DataError, match="no patch of 4 frames"):
        tok.tokenize(tok.normalize(waves(1.0, 0.03)))
    silent = tok.normalize(Batch(input=torch.zeros(1, 8000))).tensor
    assert bool(torch.isfinite(silent).all())  # log of zero energy is floored, never -inf
    with pytest.raises(ConfigError, match="tokenizer.mean"):
        AudioTokenizer(AudioTokenizerConfig(stats="dataset"), dim=8)
    with pytest.raises(ConfigError, match="tokenizer.patch"):
        tokenizer(patch=[4, 7])
    assert tokenizer(mean=-1.0, std=3.0).mean == -1.0  # given values win over AudioSet's


def test_dataset_statistics_are_the_fbank_moments_of_the_training_data() -> None:
    modality = mpt.get_modality("audio")
    cfg = build_config(modality, "demo", None, ("tokenizer.mel=32", "data.repeats=1", "data.seconds=1.0"))
    data = modality.dataset(None, "probe", cfg.data)
    fitted = modality.fit(data, cfg.tokenizer, progress=False)
    values = []
    for i in range(len(data)):
        spec, frames = fbank(data[i].input[None], None, RATE, num_mel_bins=32)
        values.append(spec[0, : frames[0]].flatten().double())
    allv = torch.cat(values)
    assert fitted.mean == pytest.approx(float(allv.mean()), rel=1e-6)
    assert fitted.std == pytest.approx(float(allv.std(unbiased=False)), rel=1e-4)
    card = modality.tokenizer(fitted, 16).card()
    assert card["stats_source"] == "fitted on the training data" and card["mean"] == fitted.mean
    assert modality.fit(data, dataclasses.replace(cfg.tokenizer, stats="audioset"), progress=False).mean is None
    with pytest.raises(ConfigError, match="data.rate"):
        modality.fit(data, dataclasses.replace(cfg.tokenizer, rate=8000), progress=False)
