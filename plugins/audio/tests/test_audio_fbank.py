"""Batched Kaldi fbank: row by row what ``torchaudio.compliance.kaldi.fbank`` computes for each clip alone.

Tolerances (measured on these batches and on the 175 shared sample files resampled to 16 kHz):
in float64 the batched result equals torchaudio's to ≤ 1e-9 (measured ≤ 3e-12), every option; in
float32, max |diff| ≤ 1e-3 wherever torchaudio's log-mel is ≥ -10 (measured ≤ 6e-4 here, ≤ 1.7e-4 on
the real files), and ≤ 0.05 in the bins at the log(ε) ≈ -15.9 floor, where float32 rounding of a
near-zero energy dominates (torchaudio's own float32 result is up to 1e-2 away from its float64 one there).
"""

from __future__ import annotations

import math

import pytest
import torch

from mpt_audio.fbank import EPSILON, fbank, feature_window, frame_geometry, mel_banks, num_frames

kaldi = pytest.importorskip("torchaudio.compliance.kaldi", reason="torchaudio is the reference")

RATES = (8000, 16000, 44100, 48000)
FLOAT64_TOL = 1e-9
FLOAT32_TOL = 1e-3  # where the reference log-mel is ≥ FLOOR_ZONE
FLOOR_ZONE, FLOOR_TOL = -10.0, 0.05


def reference(wave: torch.Tensor, rate: int, subtract_mean: bool = True, **options: object) -> torch.Tensor:
    """AudioMAE's / SSAST's call, one clip: ``kaldi.fbank((w - w.mean())[None], ...)``."""
    kw = {"htk_compat": True, "sample_frequency": rate, "use_energy": False, "window_type": "hanning",
          "num_mel_bins": 128, "dither": 0.0, "frame_shift": 10.0}
    kw.update(options)
    return kaldi.fbank((wave - wave.mean() if subtract_mean else wave)[None], **kw)


def clip_lengths(rate: int) -> list[int]:
    """One second, half a second + 37 samples (not a multiple of the shift), one window + 5 samples
    (one frame), 0.7 s + 1."""
    return [rate, rate // 2 + 37, int(rate * 0.025) + 5, int(rate * 0.7) + 1]


def padded_batch(lengths: list[int], dtype: torch.dtype, seed: int = 0, pad: float = 7.0) -> torch.Tensor:
    """Noise with a DC offset, one quiet row; the padding holds ``pad`` (never used)."""
    gen = torch.Generator().manual_seed(seed)
    waves = torch.full((len(lengths), max(lengths) + 50), pad, dtype=torch.float64)
    for i, n in enumerate(lengths):
        row = 0.3 * torch.randn(n, generator=gen, dtype=torch.float64) + 0.05
        waves[i, :n] = row * (1e-3 if i == 1 else 1.0)
    return waves.to(dtype)


def assert_rows_match(feats: torch.Tensor, frames: torch.Tensor, waves: torch.Tensor, lengths: list[int], rate: int,
                      float32: bool = False, **options: object) -> float:
    worst = 0.0
    for i, n in enumerate(lengths):
        ref = reference(waves[i, :n], rate, **options)
        assert int(frames[i]) == ref.shape[0], f"clip {i}: frames"
        got = feats[i, : ref.shape[0]]
        diff = (got.double() - ref.double()).abs()
        if float32:
            normal = ref >= FLOOR_ZONE
            assert float(diff[normal].max()) <= FLOAT32_TOL, f"clip {i}: {float(diff[normal].max()):.2e}"
            assert float(diff.max()) <= FLOOR_TOL, f"clip {i}: {float(diff.max()):.2e} near the floor"
        else:
            assert float(diff.max()) <= FLOAT64_TOL, f"clip {i}: {float(diff.max()):.2e}"
        assert bool((feats[i, ref.shape[0]:] == 0).all()), f"clip {i}: frames past its own are not zero"
        worst = max(worst, float(diff.max()))
    return worst


@pytest.mark.parametrize("rate", RATES)
def test_batched_fbank_equals_torchaudio_per_clip_in_float64(rate: int) -> None:
    lengths = clip_lengths(rate)
    waves = padded_batch(lengths, torch.float64)
    feats, frames = fbank(waves, torch.tensor(lengths), rate)
    assert feats.dtype == torch.float64 and frames.dtype == torch.long
    assert feats.shape == (len(lengths), int(frames.max()), 128)
    assert_rows_match(feats, frames, waves, lengths, rate)


@pytest.mark.parametrize("rate", RATES)
def test_batched_fbank_matches_torchaudio_float32_within_the_stated_tolerance(rate: int) -> None:
    lengths = clip_lengths(rate)
    waves = padded_batch(lengths, torch.float32)
    feats, frames = fbank(waves, torch.tensor(lengths), rate)
    assert feats.dtype == torch.float32
    assert_rows_match(feats, frames, waves, lengths, rate, float32=True)


OPTIONS = [
    {"snip_edges": False},
    {"use_energy": True},
    {"use_energy": True, "htk_compat": False, "raw_energy": False, "energy_floor": 0.0},
    {"window": "povey"}, {"window": "hamming"}, {"window": "rectangular"}, {"window": "blackman"},
    {"preemphasis": 0.0}, {"remove_dc_offset": False}, {"remove_dc_offset": False, "subtract_mean": False},
    {"num_mel_bins": 23, "low_freq": 64.0, "high_freq": -400.0}, {"num_mel_bins": 80, "high_freq": 7600.0},
    {"frame_length_ms": 50.0, "frame_shift_ms": 12.5}, {"round_to_power_of_two": False},
]
TORCHAUDIO_NAMES = {"window": "window_type", "preemphasis": "preemphasis_coefficient",
                    "frame_length_ms": "frame_length", "frame_shift_ms": "frame_shift"}


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_kaldi_option_matches_torchaudio(options: dict[str, object]) -> None:
    rate = 16000
    lengths = [8000, 4123, 1201]
    waves = padded_batch(lengths, torch.float64, seed=1)
    feats, frames = fbank(waves, torch.tensor(lengths), rate, **options)
    ref_options = {TORCHAUDIO_NAMES.get(k, k): v for k, v in options.items() if k != "subtract_mean"}
    assert_rows_match(feats, frames, waves, lengths, rate, subtract_mean=options.get("subtract_mean", True),
                      **ref_options)


@pytest.mark.parametrize("chunk", [37, 100, 200])  # time blocks of one row; blocks of 1 and 2 rows
def test_chunked_computation_gives_the_same_features(chunk: int) -> None:
    lengths = [16000, 9000, 5000, 12345]
    waves = padded_batch(lengths, torch.float32, seed=2)
    whole, frames = fbank(waves, torch.tensor(lengths), 16000, chunk_frames=10**9)
    parts, frames2 = fbank(waves, torch.tensor(lengths), 16000, chunk_frames=chunk)
    assert torch.equal(frames, frames2)
    torch.testing.assert_close(parts, whole, rtol=0, atol=1e-5)


def test_a_clip_shorter_than_one_window_is_an_error_naming_it() -> None:
    size, _, _ = frame_geometry(16000)
    assert size == 400
    waves = torch.randn(3, 16000)
    with pytest.raises(ValueError, match=r"clip\(s\) \[1\].*399 .*one 25.0 ms window \(400 samples at 16000 Hz\)"):
        fbank(waves, torch.tensor([16000, 399, 400]), 16000)
    feats, frames = fbank(waves, torch.tensor([16000, 1234, 400]), 16000)  # exactly one window: one frame
    assert frames.tolist() == [98, 6, 1] and feats.shape == (3, 98, 128)


def test_frame_counts_follow_kaldi() -> None:
    lengths = [400, 559, 560, 16000, 16159]
    for snip in (True, False):
        expected = [reference(torch.randn(n), 16000, snip_edges=snip).shape[0] for n in lengths]
        assert num_frames(torch.tensor(lengths), 400, 160, snip_edges=snip).tolist() == expected
    assert num_frames(torch.tensor(lengths), 400, 160).tolist() == [1, 1, 2, 98, 99]
    assert frame_geometry(44100) == (1102, 441, 2048) and frame_geometry(8000) == (200, 80, 256)


def test_a_silent_clip_gives_finite_features_at_the_log_floor() -> None:
    waves = torch.zeros(2, 16000)
    waves[1] = 0.1 * torch.randn(16000)
    feats, frames = fbank(waves, None, 16000)
    assert bool(torch.isfinite(feats).all())
    torch.testing.assert_close(feats[0], torch.full_like(feats[0], math.log(EPSILON)))
    assert float(feats[1].mean()) > math.log(EPSILON) + 5
    energy, _ = fbank(torch.zeros(1, 8000), None, 16000, use_energy=True, energy_floor=0.0)
    assert bool(torch.isfinite(energy).all())


def test_nan_or_inf_samples_are_an_error_naming_the_clip_but_not_in_the_padding() -> None:
    waves = torch.randn(3, 8000)
    waves[2, 100] = float("nan")
    with pytest.raises(ValueError, match=r"clip\(s\) \[2\] contain NaN or Inf"):
        fbank(waves, None, 16000)
    waves[2, 100] = float("inf")
    with pytest.raises(ValueError, match=r"clip\(s\) \[2\]"):
        fbank(waves, None, 16000)
    waves[2, 100], waves[1, 7000:] = 0.0, float("nan")  # NaN past clip 1's length only
    feats, _ = fbank(waves, torch.tensor([8000, 6000, 8000]), 16000)
    assert bool(torch.isfinite(feats).all())


def test_subtract_mean_uses_only_the_valid_samples() -> None:
    """Without the per-frame DC removal the clip mean matters; it must be the mean of the valid part."""
    gen = torch.Generator().manual_seed(3)
    clip = 0.2 * torch.randn(6000, generator=gen, dtype=torch.float64) + 0.4
    waves = torch.full((1, 9000), -3.0, dtype=torch.float64)
    waves[0, :6000] = clip
    feats, frames = fbank(waves, torch.tensor([6000]), 16000, remove_dc_offset=False)
    ref = reference(clip, 16000, remove_dc_offset=False)
    assert float((feats[0, : int(frames[0])] - ref).abs().max()) <= FLOAT64_TOL
    uncentred, _ = fbank(waves, torch.tensor([6000]), 16000, remove_dc_offset=False, subtract_mean=False)
    assert float((uncentred - feats).abs().max()) > 0.1  # the option does something


def test_dither_adds_noise_at_torchaudio_level() -> None:
    silent = torch.zeros(1, 16000)
    gen = torch.Generator().manual_seed(0)
    ours, _ = fbank(silent, None, 16000, dither=1.0, generator=gen)
    again, _ = fbank(silent, None, 16000, dither=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ours, again) and bool(torch.isfinite(ours).all())
    torch.manual_seed(0)
    ref = reference(silent[0], 16000, dither=1.0)
    # same noise statistics: the time-averaged log-mel of each bin agrees
    assert float((ours[0].mean(0) - ref.mean(0)).abs().max()) < 0.25


def test_input_checks() -> None:
    with pytest.raises(ValueError, match="batch, samples"):
        fbank(torch.zeros(16000), None, 16000)
    with pytest.raises(TypeError, match="float"):
        fbank(torch.zeros(1, 16000, dtype=torch.int16), None, 16000)
    with pytest.raises(ValueError, match="within"):
        fbank(torch.zeros(2, 1000), torch.tensor([1000, 1001]), 16000)
    with pytest.raises(ValueError, match="unknown window"):
        fbank(torch.zeros(1, 1000), None, 16000, window="hann")
    with pytest.raises(ValueError, match="Nyquist"):
        fbank(torch.zeros(1, 1000), None, 16000, high_freq=9000.0)
    feats, frames = fbank(torch.zeros(0, 1000), None, 16000)
    assert feats.shape == (0, 0, 128) and frames.shape == (0,)
    half, _ = fbank(torch.randn(1, 4000).half(), None, 16000)
    assert half.dtype == torch.float32


def test_filterbank_and_window_are_cached_per_rate_device_dtype() -> None:
    a = mel_banks(128, 512, 16000, 20.0, 0.0, torch.device("cpu"), torch.float32)
    assert a is mel_banks(128, 512, 16000, 20.0, 0.0, torch.device("cpu"), torch.float32)
    assert a is not mel_banks(128, 512, 16000, 20.0, 0.0, torch.device("cpu"), torch.float64)
    assert a.shape == (256, 128) and bool((a[0] == 0).all())  # the DC bin is below low_freq
    ref, _ = kaldi.get_mel_banks(128, 512, 16000.0, 20.0, 0.0, 100.0, -500.0, 1.0)
    assert torch.equal(a, ref.T)
    w = feature_window("hanning", 400, torch.device("cpu"), torch.float32)
    assert w is feature_window("hanning", 400, torch.device("cpu"), torch.float32) and float(w[0]) == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_matches_cpu() -> None:
    lengths = clip_lengths(16000)
    waves = padded_batch(lengths, torch.float32)
    cpu, frames = fbank(waves, torch.tensor(lengths), 16000)
    gpu, frames_gpu = fbank(waves.cuda(), torch.tensor(lengths).cuda(), 16000)
    assert gpu.device.type == "cuda" and torch.equal(frames_gpu.cpu(), frames)
    assert float((gpu.cpu() - cpu).abs().max()) <= FLOOR_TOL
