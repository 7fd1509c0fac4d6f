"""Kaldi log-mel fbank throughput: :func:`mpt_audio.fbank.fbank` on a batch vs the per-clip torchaudio loop.

The loop is what AudioMAE's and SSAST's data loaders run, one clip at a time::

    torchaudio.compliance.kaldi.fbank((w - w.mean())[None], htk_compat=True, sample_frequency=rate,
                                      use_energy=False, window_type='hanning', num_mel_bins=128,
                                      dither=0.0, frame_shift=10)

and the batched call computes the same features for the whole ``[batch, rate * seconds]`` tensor at
once (``subtract_mean=True``). Both run in one process on the same random clips (seeded Gaussian noise,
std 0.1), after one untimed call each, in alternating repetitions (loop, batched, loop, …) so that
a change of machine load hits both. Prints one JSON object per line on stdout (DESIGN.md §7): one per
timed call (``impl`` ``loop`` or ``batched``; the batched line's ``ratio`` is its clips/s over the
loop's of the same repetition), then a ``summary`` line (median clips/s of each, ``ratio`` of the
medians, ``max_abs_diff`` between the two results). Progress goes to stderr.

    .venv/bin/python benchmarks/fbank_throughput.py                      # batch 16 × 10 s at 16 kHz
    .venv/bin/python benchmarks/fbank_throughput.py --reps 3 --device cuda --batch 64

Needs ``mpt-audio`` importable (installed, or ``PYTHONPATH=plugins/audio/src``) and torchaudio (the
reference only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

BENCH = "fbank_throughput"


def log(msg: str) -> None:
    print(f"[{BENCH}] {msg}", file=sys.stderr, flush=True)


def _throughput_helpers() -> Any:  # noqa: ANN401 - the benchmarks/pretrain_throughput.py module
    """``cpu_capability`` and ``load_avg`` of ``pretrain_throughput.py``, imported from next to this script."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import pretrain_throughput

    return pretrain_throughput


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=16, help="clips per batch")
    p.add_argument("--seconds", type=float, default=10.0, help="length of every clip")
    p.add_argument("--rate", type=int, default=16000, help="sample rate, Hz")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions of each implementation")
    p.add_argument("--mel", type=int, default=128, help="num_mel_bins")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = make_parser().parse_args(argv)
    import torchaudio.compliance.kaldi as kaldi

    from mpt_audio.fbank import fbank

    helpers = _throughput_helpers()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    samples = round(args.seconds * args.rate)
    gen = torch.Generator().manual_seed(args.seed)
    waves = (0.1 * torch.randn(args.batch, samples, generator=gen)).to(device)

    def loop() -> list[torch.Tensor]:
        return [kaldi.fbank((w - w.mean())[None], htk_compat=True, sample_frequency=args.rate, use_energy=False,
                            window_type="hanning", num_mel_bins=args.mel, dither=0.0, frame_shift=10) for w in waves]

    def batched() -> torch.Tensor:
        return fbank(waves, None, args.rate, num_mel_bins=args.mel, subtract_mean=True)[0]

    impls = {"loop": loop, "batched": batched}
    log(f"{args.batch} clips × {args.seconds} s at {args.rate} Hz on {device}, {args.threads} thread(s); warm-up")
    ref, ours = loop(), batched()
    diff = max(float((ours[i, : len(r)] - r).abs().max()) for i, r in enumerate(ref))
    common = {"bench": BENCH, "batch": args.batch, "clip_seconds": args.seconds, "rate": args.rate, "mel": args.mel,
              "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "cpu_capability": helpers.cpu_capability(device)}
    records: list[dict[str, Any]] = []
    speeds: dict[str, list[float]] = {name: [] for name in impls}
    for rep in range(args.reps):
        for name, fn in impls.items():
            seconds, _ = timed(fn, device)
            speed = args.batch / seconds
            speeds[name].append(speed)
            record = {**common, "impl": name, "rep": rep, "seconds": seconds, "clips_per_s": speed,
                      "ratio": speed / speeds["loop"][-1] if name == "batched" else None,
                      "load_avg": helpers.load_avg()}
            records.append(record)
            print(json.dumps(record), flush=True)
    median = {name: statistics.median(v) for name, v in speeds.items()}
    summary = {**common, "impl": "summary", "reps": args.reps, "loop_clips_per_s": median["loop"],
               "batched_clips_per_s": median["batched"], "ratio": median["batched"] / median["loop"],
               "best_ratio": max(b / a for a, b in zip(speeds["loop"], speeds["batched"], strict=True)),
               "max_abs_diff": diff, "load_avg": helpers.load_avg()}
    records.append(summary)
    print(json.dumps(summary), flush=True)
    log(f"batched {median['batched']:.1f} clips/s, loop {median['loop']:.1f} clips/s: "
        f"{summary['ratio']:.2f}× (median of {args.reps}); max |diff| {diff:.2e}")
    return records


if __name__ == "__main__":
    main()
