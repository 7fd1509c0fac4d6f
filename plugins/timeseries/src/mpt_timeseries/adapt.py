"""The recipe's window and patch sizes adapted to the user's series (``Modality.adapt``).

Recipes are written for a length: PatchTST's for long series cut into 512-step windows, the demo for
BasicMotions' 100-step series. On other data they can waste the signal: a 100-step window cuts a
251-step series (ArrowHead) into overlapping parts no probe sees whole, and a 10-step patch leaves a
24-step series (ItalyPowerDemand) two tokens. The rules (measured in
benchmarks/results/learning-quality-*.jsonl):

1. **Context = the longest series** when every series fits in :data:`MAX_CONTEXT` steps (PatchTST's
   context): one window per series, shorter ones padded (the tokenizer masks the padding). Longer
   series keep the recipe's windows, with a note that features then describe windows, not series.
2. **At least** :data:`MIN_TOKENS` **patches per window**: otherwise ``patch = stride =
   max(1, context // MIN_TOKENS)`` (left alone when you set either).
3. **No series lost to ``min_length``** when it is longer than a patch: ``min_length`` drops to
   ``max(patch, shortest series)``; series shorter than one patch are still skipped, with a note.
4. **Keep levels that tell series apart**: RevIN (Kim et al., ICLR 2022) subtracts each series' mean
   and divides by its std, per channel — right when levels drift (forecasting), wrong when the level
   *is* the signal (JapaneseVowels' LPC coefficients: a vowel's spectrum sits in the means). When on
   the median channel the spread of the series' means exceeds their typical spread within a series
   (:func:`level_ratio` > :data:`LEVEL_RATIO`, over up to :data:`SAMPLE_SERIES` series), ``revin``
   turns off — if the values' overall std lies within :data:`RAW_SCALE` (the encoder then sees
   them as they are); otherwise a note says to standardise them first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpt.contract import Adaptation

MAX_CONTEXT = 512  # PatchTST's context (Nie et al., ICLR 2023)
MIN_TOKENS = 8  # fewer patches than this leave the encoder little to attend over and MAE little to mask
LEVEL_RATIO = 1.0  # between-series std of the means / mean within-series std, median over channels
RAW_SCALE = (1e-2, 1e2)  # overall std of values an unnormalised patch embedding takes in its stride
SAMPLE_SERIES = 256  # series read (evenly spread) to measure levels


def series_lengths(dataset: Any) -> list[int]:  # noqa: ANN401 - a TimeSeriesDataset
    """Every series length of the dataset's usable files, those ``min_length`` skipped included."""
    return [n for info in dataset.files.info for n in info.lengths]


def level_ratio(series: list[np.ndarray]) -> tuple[float, float]:
    """``(ratio, scale)`` of series ``[C, T]`` (NaN = missing): per channel, the std over series of their
    means divided by the mean within-series std, the median over channels; and the std of all values."""
    means = np.stack([np.nanmean(x, axis=1) for x in series])  # [S, C]
    within = np.stack([np.nanstd(x, axis=1) for x in series]).mean(0)  # [C]
    ratio = float(np.median(means.std(0) / np.maximum(within, 1e-12)))
    return ratio, float(np.nanstd(np.concatenate([x.reshape(x.shape[0], -1) for x in series], axis=1)))


def sample_series(dataset: Any, limit: int = SAMPLE_SERIES) -> list[np.ndarray]:  # noqa: ANN401
    """Up to ``limit`` series of the dataset, evenly spread over its series (each file read once)."""
    picks = np.unique(np.linspace(0, len(dataset.series) - 1, min(limit, len(dataset.series))).astype(int))
    return [dataset.files[k].series[i] for k, i, _ in (dataset.series[j] for j in picks)]


def adapt(dataset: Any, config: Any) -> list[Adaptation]:  # noqa: ANN401 - TimeSeriesDataset, mpt.config.Config
    """The rules of the module docstring for ``dataset`` (a TimeSeriesDataset) under ``config``."""
    lengths = series_lengths(dataset)
    if not lengths:
        return []
    longest, shortest = max(lengths), min(lengths)
    data, tok = config.data, config.tokenizer
    out = []
    if longest <= MAX_CONTEXT and data.context != longest:
        out.append(Adaptation("data.context", longest, f"every series is at most {longest} steps long: "
                                                       "one window per whole series"))
    elif longest > data.context:
        out.append(Adaptation("data.context", None, f"series of up to {longest} steps are cut into windows of "
                                                    f"{data.context}: features describe windows, not whole series"))
    if data.context // tok.patch < MIN_TOKENS and not {"tokenizer.patch", "tokenizer.stride"} & config.explicit:
        patch = max(1, data.context // MIN_TOKENS)
        if patch != tok.patch or tok.stride != patch:
            reason = (f"a {data.context}-step window makes {data.context // tok.patch} patches of {tok.patch}: "
                      f"at least {MIN_TOKENS} wanted")
            out += [Adaptation("tokenizer.patch", patch, reason), Adaptation("tokenizer.stride", patch, reason)]
    if shortest < data.min_length:
        floor = max(tok.patch, shortest)
        if floor < data.min_length:
            out.append(Adaptation("data.min_length", floor, f"{sum(n < data.min_length for n in lengths)} of "
                                                            f"{len(lengths)} series are shorter than "
                                                            f"data.min_length={data.min_length}"))
        if shortest < tok.patch:
            out.append(Adaptation("data.min_length", None, f"{sum(n < tok.patch for n in lengths)} series are "
                                                           f"shorter than one {tok.patch}-step patch and skipped"))
    if tok.revin and len(dataset.series) > 1:
        ratio, scale = level_ratio(sample_series(dataset))
        if ratio > LEVEL_RATIO:
            why = (f"the series differ in level {ratio:.1f}× more than they vary within (median channel): "
                   "RevIN would remove what tells them apart")
            if RAW_SCALE[0] <= scale <= RAW_SCALE[1]:
                out.append(Adaptation("tokenizer.revin", False, why))
            else:
                out.append(Adaptation("tokenizer.revin", None, f"{why}, but the values' std is {scale:.3g}: "
                                                               "standardise each channel over the data set and set "
                                                               "tokenizer.revin=false"))
    return out
