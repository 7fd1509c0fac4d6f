"""Config sections of the video modality (``data:`` and ``tokenizer:`` in a recipe).

Pixel normalisation (``mean``/``std``, ImageNet's by default) lives in ``tokenizer:``: the encoder
card stores it and :func:`mpt.load_encoder` rebuilds it, so a user feeds a loaded encoder the raw
``[0, 1]`` clips the dataset gives and there is one normalisation path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mpt.config import bounded


@dataclass
class VideoDataConfig:
    """How video files become clips (VideoMAE, Tong et al. NeurIPS 2022: 16 frames at sampling rate
    4 on Kinetics, ``GroupMultiScaleCrop(224, [1, .875, .75, .66])``, no flip; ``datasets.py``).

    A clip is ``frames`` frames, every ``rate``-th frame of the video (it spans ``frames × rate``
    source frames). Frames are decoded with the shorter side resized to ``short_side`` (default
    ``round(size / 0.875)``, 256 for 224) by the decoder itself. The train split draws the clip's
    start uniformly (``jitter``) and one random crop for all frames of the clip: ``crop: multiscale``
    (VideoMAE's ``GroupMultiScaleCrop``) a box of side ``s × short side`` for ``s`` in ``scales``
    (height and width drawn separately, at most one scale step apart: ``max_distort=1``) at a uniform
    position; ``crop: resized`` (V-JEPA) torchvision's RandomResizedCrop box of ``area`` × the frame
    area and aspect in ``ratio``; resized to ``size``; and a horizontal flip with ``flip``; other
    splits take evenly spaced starts and the centre
    ``size × size`` crop. ``clips`` windows per video per epoch. A video shorter than a clip is
    looped (``short: loop``) or padded with its last frame (``pad``), with one warning per video.
    Grey videos become RGB (``channels`` 3) or stay grey (``channels`` 1).
    """

    frames: int = bounded(16, ge=1)  # frames per clip (T); a multiple of tokenizer.tubelet
    rate: int = bounded(4, ge=1)  # sampling rate: every rate-th source frame (VideoMAE K400: 4, SSv2: 2)
    size: int = bounded(224, ge=1)  # square crop side in pixels; a multiple of tokenizer.patch
    short_side: int | None = bounded(None, ge=1)  # decode-time resize of the shorter side; None = size / 0.875
    channels: int = bounded(3, ge=1, le=3)  # 3: RGB (grey videos converted), 1: luma (2 is refused)
    jitter: bool = True  # train split: a uniformly random clip start (temporal jitter)
    augment: bool = True  # train split: the random crop below (off: the centre crop)
    crop: Literal["multiscale", "resized"] = "multiscale"  # VideoMAE's multi-scale crop or V-JEPA's RandomResizedCrop
    scales: list[float] = field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])  # multiscale: sides / shorter side
    area: tuple[float, float] = (0.3, 1.0)  # resized: crop area / frame area (V-JEPA: 0.3-1.0)
    ratio: tuple[float, float] = (0.75, 1.35)  # resized: crop aspect width / height (V-JEPA: 0.75-1.35)
    flip: bool = False  # train split: random horizontal flip (VideoMAE: off)
    clips: int = bounded(1, ge=1)  # clips per video per epoch
    short: Literal["loop", "pad"] = "loop"  # a video shorter than frames × rate: loop it or repeat its last frame
    threads: int = bounded(0, ge=0)  # decoder threads per file (0: FFmpeg's choice)


@dataclass
class VideoTokenizerConfig:
    """Tubelets (VideoMAE's ``PatchEmbed``: ``Conv3d(C, D, (t, p, p))``): ``tubelet`` frames × ``patch``
    × ``patch`` pixels of all ``channels`` per token, after per-channel ``(x - mean) / std``
    (ImageNet's statistics by default; 0.5 / 0.25 for one channel)."""

    tubelet: int = bounded(2, ge=1)
    patch: int = bounded(16, ge=1)
    channels: int = bounded(3, ge=1, le=3)  # 3 (RGB) or 1 (grey); must equal data.channels
    mean: list[float] | None = None
    std: list[float] | None = None
