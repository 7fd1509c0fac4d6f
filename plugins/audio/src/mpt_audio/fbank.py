"""Kaldi-compatible log-mel filterbank features, batched, in plain torch (CPU or GPU).

:func:`fbank` computes, for every row of a padded batch of waveforms, what
``torchaudio.compliance.kaldi.fbank(row[None], sample_frequency=rate, ...)`` computes for that row alone
(torchaudio's port of Kaldi's ``compute-fbank-feats``: ``src/feat/feature-window.cc``,
``feature-fbank.cc``, ``mel-computations.cc``), in one pass over the batch instead of a Python loop.
The defaults are the call of AudioMAE (``dataset.py`` ``_wav2fbank``) and SSAST (``src/dataloader.py``):
``htk_compat=True, use_energy=False, window_type='hanning', num_mel_bins=128, dither=0.0,
frame_shift=10`` on the waveform minus its mean. torchaudio is not imported here; the tests check
parity against it.

The steps, with the source facts they follow (``torchaudio/compliance/kaldi.py``):

1. **Frame geometry.** ``window_size = int(rate * frame_length_ms * 0.001)``, ``window_shift =
   int(rate * frame_shift_ms * 0.001)`` (the same float expression, so 44.1 kHz gives 1102 and 441),
   FFT size ``n_fft`` = the next power of two ≥ ``window_size`` with ``round_to_power_of_two``.
   With ``snip_edges`` a clip of ``n`` samples has ``1 + (n - window_size) // window_shift``
   frames (only frames that fit); without, ``(n + window_shift // 2) // window_shift`` frames of
   the clip reflected at both ends (Kaldi's ``[2, 1, 0, 0, 1, 2]`` reflection: the edge sample is
   repeated), the left end padded by ``window_size // 2 - window_shift // 2`` samples. A clip
   shorter than one window is an error (torchaudio asserts ``window_size <= len(waveform)``).
2. **Dither** (off by default): Gaussian noise ``dither * N(0, 1)`` added to every sample of every
   frame (overlapping frames get independent noise), before everything below.
3. **DC offset**: each frame minus its own mean (``remove_dc_offset``).
4. **Raw log energy** (only with ``use_energy``): ``log(max(Σ frame², eps))`` after step 3
   (``raw_energy``; else after step 6), floored at ``log(energy_floor)`` unless ``energy_floor`` is 0.
5. **Pre-emphasis** within each frame: ``y[j] = x[j] - c · x[j - 1]`` with ``x[-1] := x[0]`` (a
   replicate pad, so ``y[0] = (1 - c) · x[0]``).
6. **Window**: ``hanning`` is the *symmetric* Hann window ``0.5 - 0.5 cos(2πn / (N - 1))``
   (``torch.hann_window(N, periodic=False)``); also ``hamming`` (0.54/0.46, symmetric), ``povey``
   (Hann^0.85, Kaldi's default), ``rectangular`` and ``blackman`` (coefficient 0.42). Then zero
   padding to ``n_fft``.
7. **Power spectrum** ``|rfft(frame)|²``, bins ``0 … n_fft / 2``.
8. **Mel filterbank**: Kaldi's mel scale ``1127 ln(1 + f / 700)``; ``num_mel_bins`` triangles whose
   edges are ``num_mel_bins + 2`` points equally spaced in mel between ``low_freq`` and
   ``high_freq`` (``high_freq <= 0`` is an offset from Nyquist), evaluated at the mel of each FFT
   bin's frequency ``k · rate / n_fft`` for ``k < n_fft / 2``; the Nyquist bin gets weight 0.
   torchaudio builds this matrix in float32 whatever the input dtype; so does this module.
9. **Log** with Kaldi's floor: ``log(max(E, ε))``, ``ε = torch.finfo(torch.float32).eps``
   (``std::numeric_limits<float>::epsilon()``, in every dtype), so a silent (all-zero) clip gives
   ``log(ε) ≈ -15.94`` everywhere, never ``-inf`` or NaN.
10. With ``use_energy`` the log energy is appended as the last column (``htk_compat``) or prepended.

How the batch is computed (the same sums, fewer passes over memory; float64 results equal
torchaudio's to ~1e-12): each row's mean is subtracted first (``subtract_mean``; the difference of
close floats is exact, which keeps float32 precise for clips with a DC offset). Pre-emphasis is
then applied once to the whole waveform, ``e[n] = (x[n] - x[n-1]) + (1 - c) x[n-1]`` (= ``x[n] - c
x[n-1]``, written so that float32 rounds as little as Kaldi's per-frame order), instead of to every
overlapping frame: since ``(x[j] - m) - c (x[j-1] - m) = e[j] - (1 - c) m``, a frame after steps 3
and 5 is ``e[j] - (1 - c) m`` for ``j ≥ 1`` and ``(1 - c)(x[0] - m)`` at ``j = 0``, ``m`` the frame
mean of ``x``. Frames are strided views of ``e`` (no copy) written once, windowed, into a
zero-padded ``[b, T, n_fft]`` buffer; one ``rfft``; the power ``re² + im²`` of the ``n_fft / 2``
bins the filterbank uses (squared in place); the filterbank matmul done as :data:`MEL_GROUPS`
blocks of consecutive mel bins times only the FFT bins where they are nonzero (a triangle spans
its neighbours' centres, so ~1/5 of the dense product's work); an in-place clamp and log; frames
past a row's own count zero-filled. On CPU this runs on blocks of :data:`CHUNK_FRAMES` frames (rows,
or the frames of one long row) so that the buffers stay in cache: a whole batch of 16 × 10 s at
once is 2–3× slower than the same work in blocks. Rows are padded to the longest; ``lengths`` gives
each row's valid samples, and nothing past them is read except by frames :func:`num_frames` does
not count. Kaldi's filterbank matrix and window are cached per (rate, sizes, device, dtype).

``subtract_mean`` (default True) is AudioMAE's ``waveform - waveform.mean()`` on each row's valid
samples before step 1, *not* torchaudio's option of the same name (which subtracts the per-bin mean
of the features over time, "CMS"). With ``remove_dc_offset`` it changes the features only by float
rounding (every frame is re-centred in step 3), but it is what AudioMAE and SSAST run.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch

__all__ = ["EPSILON", "WINDOWS", "fbank", "frame_geometry", "mel_banks", "mel_scale", "num_frames",
           "feature_window"]

EPSILON = torch.finfo(torch.float32).eps  # Kaldi's floor before the log, in every dtype
WINDOWS = ("hanning", "hamming", "povey", "rectangular", "blackman")
BLACKMAN_COEFF = 0.42
MEL_GROUPS = 8  # blocks of the banded filterbank matmul
CHUNK_FRAMES = 2048  # frames computed at a time on CPU (the buffers stay in cache)


def mel_scale(freq: float) -> float:
    """Kaldi's mel scale: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * math.log(1.0 + freq / 700.0)


def frame_geometry(rate: int, frame_length_ms: float = 25.0, frame_shift_ms: float = 10.0,
                   round_to_power_of_two: bool = True) -> tuple[int, int, int]:
    """``(window_size, window_shift, n_fft)`` in samples at ``rate`` Hz, computed as torchaudio does
    (``int(rate * ms * 0.001)``; n_fft the next power of two of the window, or the window)."""
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    window_size = int(rate * frame_length_ms * 0.001)
    window_shift = int(rate * frame_shift_ms * 0.001)
    if window_size < 2:
        raise ValueError(f"a {frame_length_ms} ms frame at {rate} Hz is {window_size} samples; it needs at least 2")
    if window_shift < 1:
        raise ValueError(f"a {frame_shift_ms} ms frame shift at {rate} Hz is {window_shift} samples; it needs ≥ 1")
    n_fft = 1 << (window_size - 1).bit_length() if round_to_power_of_two else window_size
    if n_fft % 2:
        raise ValueError(f"the FFT size {n_fft} (window of {window_size} samples) must be even: "
                         "use round_to_power_of_two=True or change frame_length_ms")
    return window_size, window_shift, n_fft


def num_frames(lengths: torch.Tensor, window_size: int, window_shift: int, snip_edges: bool = True) -> torch.Tensor:
    """Frames of clips of ``lengths`` samples (any shape, long): Kaldi's ``NumFrames``. Clips shorter
    than one window get 0 here (:func:`fbank` refuses them)."""
    lengths = lengths.long()
    if snip_edges:
        frames = torch.div(lengths - window_size, window_shift, rounding_mode="floor") + 1
    else:
        frames = torch.div(lengths + window_shift // 2, window_shift, rounding_mode="floor")
    return torch.where(lengths >= window_size, frames, torch.zeros_like(frames))


@functools.lru_cache(maxsize=64)
def _mel_banks_cpu(num_mel_bins: int, n_fft: int, rate: float, low_freq: float, high_freq: float) -> torch.Tensor:
    nyquist = 0.5 * rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ValueError(f"mel bins need 0 <= low_freq < high_freq <= Nyquist: low_freq {low_freq}, "
                         f"high_freq {high_freq}, Nyquist {nyquist} Hz")
    if num_mel_bins <= 3:
        raise ValueError(f"num_mel_bins must be > 3, got {num_mel_bins}")
    # torchaudio.compliance.kaldi.get_mel_banks, same float32 operations in the same order
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high_freq)
    delta = (mel_high - mel_low) / (num_mel_bins + 1)
    b = torch.arange(num_mel_bins).unsqueeze(1)
    left, center, right = mel_low + b * delta, mel_low + (b + 1.0) * delta, mel_low + (b + 2.0) * delta
    freqs = (rate / n_fft) * torch.arange(n_fft // 2, dtype=torch.float32)
    mel = (1127.0 * (1.0 + freqs / 700.0).log()).unsqueeze(0)
    up, down = (mel - left) / (center - left), (right - mel) / (right - center)
    return torch.max(torch.zeros(1), torch.min(up, down)).T.contiguous()  # [n_fft // 2, num_mel_bins]


@functools.lru_cache(maxsize=64)
def mel_banks(num_mel_bins: int, n_fft: int, rate: float, low_freq: float = 20.0, high_freq: float = 0.0,
              device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Kaldi's triangular mel filterbank ``[n_fft // 2, num_mel_bins]`` (the Nyquist bin, weight 0 in
    Kaldi, is left out), built in float32 as torchaudio builds it, then cast; cached per arguments."""
    return _mel_banks_cpu(num_mel_bins, n_fft, float(rate), float(low_freq), float(high_freq)).to(device, dtype)


@functools.lru_cache(maxsize=64)
def _banded(num_mel_bins: int, n_fft: int, rate: float, low_freq: float, high_freq: float,
            device: torch.device | None, dtype: torch.dtype) -> tuple[tuple[int, int, torch.Tensor], ...]:
    """The filterbank as :data:`MEL_GROUPS` blocks of consecutive mel bins, each with the FFT bins where
    it is nonzero: ``(first bin, end bin, [bins, mels] block)``. A triangle covers only its neighbours'
    centres, so the blocks' matmuls do ~1/5 of the dense matmul's work for the same sums."""
    full = mel_banks(num_mel_bins, n_fft, rate, low_freq, high_freq, device, dtype)
    nonzero = (full > 0).cpu()
    groups = max(1, min(MEL_GROUPS, num_mel_bins // 8))
    edges = [round(g * num_mel_bins / groups) for g in range(groups + 1)]
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        rows = nonzero[:, a:b].any(1).nonzero().flatten()
        lo, hi = (int(rows.min()), int(rows.max()) + 1) if len(rows) else (0, 1)
        out.append((lo, hi, full[lo:hi, a:b].contiguous()))
    return tuple(out)


@functools.lru_cache(maxsize=64)
def feature_window(window: str, size: int, device: torch.device | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Kaldi's analysis window ``[size]`` (``hanning`` is the symmetric Hann window); cached."""
    if window == "hanning":
        return torch.hann_window(size, periodic=False, device=device, dtype=dtype)
    if window == "hamming":
        return torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46, device=device, dtype=dtype)
    if window == "povey":
        return torch.hann_window(size, periodic=False, device=device, dtype=dtype).pow(0.85)
    if window == "rectangular":
        return torch.ones(size, device=device, dtype=dtype)
    if window == "blackman":
        a = 2 * math.pi / (size - 1)
        n = torch.arange(size, device=device, dtype=dtype)
        return BLACKMAN_COEFF - 0.5 * torch.cos(a * n) + (0.5 - BLACKMAN_COEFF) * torch.cos(2 * a * n)
    raise ValueError(f"unknown window '{window}'; choose one of {', '.join(WINDOWS)}")


def _reflect_indices(lengths: torch.Tensor, total: int, pad: int) -> torch.Tensor:
    """``[B, total]`` source indices of Kaldi's ``snip_edges=False`` layout: position ``p`` of the
    padded row is sample ``p - pad`` of the clip, reflected with the edge sample repeated."""
    q = torch.arange(total, device=lengths.device).unsqueeze(0) - pad
    n = lengths.unsqueeze(1)
    q = torch.where(q < 0, -q - 1, q)
    q = torch.where(q >= n, 2 * n - 1 - q, q)
    return q.clamp(min=0).minimum(n - 1)  # past a row's last frame: any valid index (masked later)


def fbank(waves: torch.Tensor, lengths: torch.Tensor | None, rate: int, *, num_mel_bins: int = 128,
          frame_length_ms: float = 25.0, frame_shift_ms: float = 10.0, window: str = "hanning",
          preemphasis: float = 0.97, remove_dc_offset: bool = True, round_to_power_of_two: bool = True,
          low_freq: float = 20.0, high_freq: float = 0.0, htk_compat: bool = True, use_energy: bool = False,
          raw_energy: bool = True, energy_floor: float = 1.0, dither: float = 0.0, snip_edges: bool = True,
          subtract_mean: bool = True, generator: torch.Generator | None = None,
          chunk_frames: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mel filterbank of a padded batch, row by row identical to Kaldi / torchaudio.

    Args:
        waves: ``[B, S]`` float waveforms (float64 stays float64; float16/bfloat16 are computed in
            float32), rows padded to a common length ``S`` with anything (padding is never used).
        lengths: ``[B]`` valid samples of each row (long, ≤ S); None: every row has ``S``.
        rate: sample rate in Hz (all rows).
        subtract_mean: subtract each row's mean over its valid samples first (AudioMAE/SSAST).
        generator: random generator of the dither noise.
        chunk_frames: frames computed at a time (blocks of rows, or of one long row's frames); None:
            :data:`CHUNK_FRAMES` on CPU, where the buffers then stay in cache (2–3× faster than the whole
            batch at once), the whole batch elsewhere. The result does not depend on it (without dither).
        The other options are ``torchaudio.compliance.kaldi.fbank``'s (``window`` is its
        ``window_type``, ``preemphasis`` its ``preemphasis_coefficient``); see the module docstring.

    Returns:
        ``feats [B, T_max, num_mel_bins (+1 with use_energy)]`` in the compute dtype, the frames
        of row ``i`` past ``frames[i]`` zero-filled, and ``frames [B]`` long (on ``waves.device``).

    Raises:
        ValueError: a bad shape or option, a row shorter than one window (naming the row), or NaN/Inf
            among a row's valid samples (naming the rows).
    """
    if waves.dim() != 2:
        raise ValueError(f"waves must be [batch, samples], got shape {tuple(waves.shape)}")
    if not waves.is_floating_point():
        raise TypeError(f"waves must be a float tensor, got {waves.dtype}")
    if not 0.0 <= preemphasis <= 1.0:
        raise ValueError(f"preemphasis must be in [0, 1], got {preemphasis}")
    if window not in WINDOWS:
        raise ValueError(f"unknown window '{window}'; choose one of {', '.join(WINDOWS)}")
    device = waves.device
    dtype = waves.dtype if waves.dtype in (torch.float32, torch.float64) else torch.float32
    batch, samples = waves.shape
    size, shift, n_fft = frame_geometry(rate, frame_length_ms, frame_shift_ms, round_to_power_of_two)
    banks = _banded(num_mel_bins, n_fft, rate, low_freq, high_freq, device, dtype)  # checks the band
    if lengths is None:
        lengths = torch.full((batch,), samples, dtype=torch.long, device=device)
    else:
        lengths = torch.as_tensor(lengths, device=device).long()
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must be [{batch}] (one per row), got shape {tuple(lengths.shape)}")
    if batch == 0:
        return torch.zeros(0, 0, num_mel_bins + int(use_energy), device=device, dtype=dtype), lengths
    low, high = (int(v) for v in torch.stack([lengths.min(), lengths.max()]).tolist())
    if low < 0 or high > samples:
        raise ValueError(f"lengths must be within [0, {samples}] (the padded length), got {low}..{high}")
    if low < size:
        short = (lengths < size).nonzero().flatten().tolist()
        raise ValueError(f"clip(s) {short[:8]} have fewer valid samples ({lengths[short[0]].item()} in clip "
                         f"{short[0]}) than one {frame_length_ms} ms window ({size} samples at {rate} Hz): "
                         "pad or drop them")
    frames = num_frames(lengths, size, shift, snip_edges)
    t_max = int(frames.max())

    x = waves[:, :high].to(dtype)
    if low < high:  # rows of different lengths: zero the padding (it may hold anything)
        x = x.masked_fill(torch.arange(high, device=device) >= lengths.unsqueeze(1), 0.0)
    total = x.sum(1, keepdim=True)  # NaN and ±Inf propagate; a finite sum is a finite row
    if not bool(torch.isfinite(total).all()):
        bad = (~torch.isfinite(x)).any(1)
        if bool(bad.any()):
            raise ValueError(f"clip(s) {bad.nonzero().flatten().tolist()[:8]} contain NaN or Inf samples")
    if subtract_mean:  # (padding is zero)
        x = x - total / lengths.unsqueeze(1).to(dtype)
    if not snip_edges:  # Kaldi's reflected edges, per row
        padded = (t_max - 1) * shift + size
        x = x.gather(1, _reflect_indices(lengths, padded, size // 2 - shift // 2))
    x = x.contiguous()

    width = num_mel_bins + int(use_energy)
    if chunk_frames is None:
        chunk_frames = CHUNK_FRAMES if device.type == "cpu" else batch * t_max
    geometry = _Geometry(size, shift, n_fft, float(preemphasis), remove_dc_offset,
                         feature_window(window, size, device, dtype), banks)
    energy_opts = (raw_energy, energy_floor, htk_compat) if use_energy else None
    if batch * t_max <= chunk_frames:
        feats = _features(x, t_max, geometry, energy_opts, dither, generator)
    else:  # blocks of rows (or of one row's frames) small enough to stay in cache
        feats = torch.empty((batch, t_max, width), device=device, dtype=dtype)
        rows = max(1, chunk_frames // t_max)
        step = t_max if rows > 1 else chunk_frames
        for a in range(0, batch, rows):
            for t0 in range(0, t_max, step):
                t1 = min(t0 + step, t_max)
                part = x[a:a + rows, t0 * shift:(t1 - 1) * shift + size]
                _features(part, t1 - t0, geometry, energy_opts, dither, generator, out=feats[a:a + rows, t0:t1])
    if num_frames(torch.tensor(low), size, shift, snip_edges) < t_max:  # rows of fewer frames: zero the rest
        feats.masked_fill_((torch.arange(t_max, device=device) >= frames.unsqueeze(1)).unsqueeze(-1), 0.0)
    return feats, frames


class _Geometry(NamedTuple):
    size: int  # window, samples
    shift: int
    n_fft: int
    preemphasis: float
    remove_dc_offset: bool
    window: torch.Tensor  # [size]
    banks: tuple[tuple[int, int, torch.Tensor], ...]  # the banded filterbank (_banded)


def _features(x: torch.Tensor, frames: int, g: _Geometry, energy_opts: tuple[bool, float, bool] | None,
              dither: float, generator: torch.Generator | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Steps 2–10 on ``x [b, n]`` (rows with unit sample stride, ``n ≥ (frames - 1) · shift + size``) →
    ``[b, frames, mel (+1)]``, written into ``out`` (a contiguous block of the result) when given."""
    b, size, shift, n_fft = x.shape[0], g.size, g.shift, g.n_fft
    c, k, win = g.preemphasis, 1.0 - g.preemphasis, g.window

    def framed(t: torch.Tensor) -> torch.Tensor:  # [b, frames, size] strided view (no copy)
        return t.as_strided((b, frames, size), (t.stride(0), shift, 1), t.storage_offset())

    mean = framed(x).mean(-1) if g.remove_dc_offset else None  # [b, frames]
    noise = None
    if dither != 0.0:  # per frame sample, before the DC removal (torchaudio's order)
        noise = dither * torch.randn((b, frames, size), device=x.device, dtype=x.dtype, generator=generator)
        if g.remove_dc_offset:
            noise = noise - noise.mean(-1, keepdim=True)
    energy = None
    if energy_opts is not None and energy_opts[0]:  # raw energy: Σ (frame - m)², before pre-emphasis and window
        raw = framed(x) if mean is None else framed(x) - mean.unsqueeze(-1)
        energy = (raw if noise is None else raw + noise).square().sum(-1)

    # steps 3, 5, 6 in two passes: e[j] - (1 - c) m, windowed, into the zero-padded FFT buffer
    e = torch.empty_like(x)
    e[:, 0] = x[:, 0]
    if c:  # as (x[n] - x[n-1]) + (1 - c) x[n-1]: the difference of close samples is exact in floats
        torch.sub(x[:, 1:], x[:, :-1], out=e[:, 1:])
        e[:, 1:].add_(x[:, :-1], alpha=k)
    else:
        e[:, 1:] = x[:, 1:]
    buf = torch.empty((b, frames, n_fft), device=x.device, dtype=x.dtype)
    buf[..., size:] = 0
    head = buf[..., :size]
    torch.mul(framed(e), win, out=head)
    if mean is not None and k:
        head.addcmul_(mean.unsqueeze(-1), win, value=-k)
    first = framed(x)[..., 0] if mean is None else framed(x)[..., 0] - mean  # j = 0: (1 - c)(x[0] - m)
    head[..., 0] = first * (k * win[0])
    if noise is not None:  # the (centred) noise pre-emphasised within each frame, windowed, added
        z = noise.clone()
        z[..., 1:] -= c * noise[..., :-1]
        z[..., 0] *= k
        head.addcmul_(z, win)
    if energy_opts is not None and not energy_opts[0]:
        energy = buf.square().sum(-1)

    spec = torch.fft.rfft(buf, dim=-1)  # [b, frames, n_fft // 2 + 1]
    del buf
    half = n_fft // 2
    parts = torch.view_as_real(spec).square_()  # in place: spec is ours
    power = parts[..., :half, 0] + parts[..., :half, 1]  # [b, frames, n_fft // 2], the bins the filterbank uses
    del spec, parts
    mels = [power[..., lo:hi] @ bank for lo, hi, bank in g.banks]  # the banded matmul, [b, frames, mel]
    if energy_opts is None:
        feats = torch.cat(mels, dim=-1, out=out) if out is not None else torch.cat(mels, dim=-1)
        return feats.clamp_(min=EPSILON).log_()
    _, floor, htk = energy_opts
    assert energy is not None
    energy = energy.clamp(min=EPSILON).log()
    if floor != 0.0:
        energy = energy.clamp(min=math.log(floor))
    mel = torch.cat(mels, dim=-1).clamp_(min=EPSILON).log_()
    columns = (mel, energy.unsqueeze(-1)) if htk else (energy.unsqueeze(-1), mel)
    feats = torch.cat(columns, dim=-1, out=out) if out is not None else torch.cat(columns, dim=-1)
    return feats
