"""Config sections of the time-series modality (``data:`` and ``tokenizer:`` in a recipe)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mpt.config import bounded


@dataclass
class TimeSeriesDataConfig:
    """How files become training windows (PatchTST, Nie et al. ICLR 2023: context 512).

    Each series is cut into windows of ``context`` time steps starting every ``stride`` steps
    (the last window ends at the series' end); a series shorter than ``context`` becomes one
    window padded with missing values (NaN), which the tokenizer marks as padding.
    """

    context: int = bounded(512, ge=1)  # time steps per window (PatchTST seq_len)
    stride: int | None = bounded(None, ge=1)  # steps between window starts; None = context (no overlap)
    min_length: int = bounded(12, ge=1)  # shorter series are skipped (counted); keep >= tokenizer.patch
    columns: list[str] | None = None  # channel columns by name (CSV/Parquet; dimN for .ts, chN for arrays)
    time_column: str | None = None  # CSV/Parquet time column; None = a column named time/timestamp/date/…


@dataclass
class TimeSeriesTokenizerConfig:
    """PatchTST tokens: RevIN, patches of ``patch`` steps every ``stride`` steps, channel independence.

    ``channels``: "independent" (PatchTST) folds the C channels into the batch — one token
    sequence per channel, shared weights, any channel count; "mixed" makes one token per patch
    holding all ``num_channels`` channels (the embedding then fixes C).
    ``pos``: "learned" (PatchTST's ``learn_pe``) covers inputs up to ``max_len`` time steps;
    "sincos" works at any length.
    """

    patch: int = bounded(12, ge=1)  # PatchTST patch_len
    stride: int = bounded(12, ge=1)  # PatchTST stride (= patch: non-overlapping, as at pretraining)
    channels: Literal["independent", "mixed"] = "independent"
    num_channels: int | None = bounded(None, ge=1)  # required for channels: mixed
    revin: bool = True  # per-instance normalisation over time, per channel (Kim et al. ICLR 2022)
    revin_eps: float = bounded(1e-5, gt=0)
    pos: Literal["learned", "sincos"] = "sincos"
    max_len: int = bounded(512, ge=1)  # longest input the learned position table covers
