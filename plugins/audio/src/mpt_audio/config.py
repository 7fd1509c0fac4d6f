"""Config sections of the audio modality (``data:`` and ``tokenizer:`` in a recipe).

Samples are raw mono waveforms at ``data.rate``; the tokenizer computes the log-mel filterbank
(batched, on the batch's device) and normalises it with ``tokenizer.mean`` / ``std`` — fitted on
the training data by default, or AudioSet's (AudioMAE, SSAST) — so the encoder card holds the
statistics and a loaded encoder takes raw waveforms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mpt.config import bounded

AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974  # AudioMAE / SSAST / HF ASTFeatureExtractor


@dataclass
class AudioDataConfig:
    """How audio files become waveform segments (AudioMAE, Huang et al. NeurIPS 2022, ``dataset.py``:
    16 kHz mono, 10 s, the clip mean removed before the filterbank, ``roll_mag_aug`` at pretraining).

    Files are mixed down to mono and resampled to ``rate``. A file longer than ``seconds`` is cut
    into segments of ``seconds``, ``hop`` apart (default: back to back; the last one ends at the
    file's end); a shorter one is one shorter sample, padded in the batch and marked invalid there
    (padding is never a token). The train split shifts each segment by a random offset within its
    hop (``jitter``) and, with ``roll_mag``, rolls the waveform by a random amount and scales it by
    ``Beta(10, 10) + 0.5`` (AudioMAE's ``_roll_mag_aug``). Files shorter than ``min_seconds`` (one
    16-frame patch at a 10 ms hop and a 25 ms window: 0.175 s) cannot make a token and are an error
    (skipped with ``--skip-bad-files``). ``repeats``: passes over every segment per epoch.
    """

    rate: int = bounded(16000, ge=1000)  # Hz; every file is resampled to it (AudioMAE/SSAST: 16 kHz)
    seconds: float = bounded(10.255, gt=0)  # segment length (10.255 s = 1024 fbank frames at 10 ms)
    hop: float | None = bounded(None, gt=0)  # seconds between segment starts of a long file (None: = seconds)
    min_seconds: float = bounded(0.175, gt=0)  # shorter files are refused: less than one patch of frames
    jitter: bool = True  # train: random segment offsets within the hop
    roll_mag: bool = False  # train: AudioMAE's random roll + Beta(10, 10) + 0.5 magnitude
    repeats: int = bounded(1, ge=1)  # passes over the segments per epoch


@dataclass
class AudioTokenizerConfig:
    """Kaldi log-mel filterbank (``torchaudio.compliance.kaldi.fbank`` as AudioMAE and SSAST call it:
    ``mel`` bins, 25 ms Hanning window, 10 ms shift, dither 0, HTK-compatible, no energy) of the
    clip minus its mean, normalised as ``(fbank - mean) / (std_scale · std)`` (AudioMAE / SSAST:
    ``std_scale`` 2), cut into ``patch`` (time × mel) patches (16 × 16: AudioMAE's 64 × 8 grid for
    1024 frames × 128 bins).

    ``stats``: "dataset" — ``mean``/``std`` fitted on the training data before training (a pass over
    ``fit_segments`` segments with a progress bar) unless given; "audioset" — AudioSet's values
    (−4.2677393 / 4.5689974). The encoder card records both the values and where they came from."""

    rate: int = bounded(16000, ge=1000)  # Hz the encoder takes; must equal data.rate
    mel: int = bounded(128, ge=1)
    frame_length_ms: float = bounded(25.0, gt=0)
    frame_shift_ms: float = bounded(10.0, gt=0)
    patch: list[int] = field(default_factory=lambda: [16, 16])  # (time frames, mel bins) per token
    stats: Literal["dataset", "audioset"] = "dataset"
    mean: float | None = None
    std: float | None = bounded(None, gt=0)
    std_scale: float = bounded(2.0, gt=0)  # AudioMAE / SSAST divide by 2 · std
    fit_segments: int = bounded(2000, ge=1)  # segments read to fit mean/std (stats: dataset)
