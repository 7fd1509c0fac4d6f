"""Trainer options end to end on tiny point-cloud runs: gradient accumulation (and its resumption),
DataLoader workers, bf16 autocast, the seed, and ``train.epochs`` as the run length."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mpt
import mpt.loop
import mpt.trainer
from _mpt_helpers import TINY_SETS, interrupt_after_checkpoint, invoke, read_metrics, tiny_args
from mpt.checkpoint import list_checkpoints
from mpt.config import build_config

NO_FIGURES = "train.figure_every=100"


def run_args(out: Path, *extra: str, steps: int | None) -> list[str]:
    """``mpt pretrain`` on the point-cloud demo data; ``steps=None`` passes no ``--max-steps``."""
    length = [] if steps is None else ["--max-steps", str(steps)]
    return ["pretrain", "--modality", "pointcloud", "--objective", "mae", *length, "--out", str(out), *extra]


def train(out: Path, *extra: str, steps: int | None) -> list[dict]:
    """Run to the end (exit code 0) and return its metrics.jsonl records."""
    result = invoke(*run_args(out, *extra, steps=steps))
    assert result.exit_code == 0, (result.output, result.exception)
    return read_metrics(out)


def losses(metrics: list[dict]) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in metrics}


def samples_per_step(record: dict) -> float:
    """Samples consumed per optimizer step in a log window (samples/s × s/step)."""
    return record["samples_per_s"] * record["s_per_step"]


# ----------------------------------------------------------------------------------------------
# gradient accumulation


def test_accumulation_consumes_batches_and_resumes_exactly(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    batch = 4
    common = ["--checkpoint-every", "2", "--log-every", "1", "--seed", "5",
              *tiny_args("optim.accumulate=2", "optim.warmup_steps=2", NO_FIGURES, batch_size=batch)]
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "plain"
    metrics_a = train(a, *common, steps=8)
    assert [m["step"] for m in metrics_a] == list(range(1, 9))

    # an accumulated optimizer step consumes two batches; a plain one consumes one
    for m in metrics_a:
        assert samples_per_step(m) == pytest.approx(2 * batch, rel=0.01), m
    plain = train(c, "--log-every", "1", "--seed", "5",
                  *tiny_args("optim.warmup_steps=2", NO_FIGURES, batch_size=batch), steps=2)
    for m in plain:
        assert samples_per_step(m) == pytest.approx(batch, rel=0.01), m

    # run B is the same command, interrupted right after its step-4 checkpoint, then resumed
    interrupt_after_checkpoint(monkeypatch, 4)
    interrupted = invoke(*run_args(b, *common, steps=8))
    assert interrupted.exit_code == 130, (interrupted.output, interrupted.exception)
    monkeypatch.undo()
    assert list_checkpoints(b / "checkpoints")[-1].name == "step-4"
    metrics_b = train(b, "--resume", *common, steps=8)

    assert [m["step"] for m in metrics_b] == list(range(1, 9)), "every step logged once"
    loss_a, loss_b = losses(metrics_a), losses(metrics_b)
    for step in range(1, 9):
        assert loss_b[step] == pytest.approx(loss_a[step], abs=1e-6, rel=0), step
    for m in metrics_b:
        assert samples_per_step(m) == pytest.approx(2 * batch, rel=0.01), m


# ----------------------------------------------------------------------------------------------
# DataLoader workers


def test_num_workers_do_not_change_the_run(tmp_path: Path) -> None:
    common = ["--log-every", "1", "--seed", "4", *tiny_args(NO_FIGURES)]
    serial = losses(train(tmp_path / "w0", "--num-workers", "0", *common, steps=4))
    parallel = losses(train(tmp_path / "w2", "--num-workers", "2", *common, steps=4))
    assert sorted(serial) == [1, 2, 3, 4]
    assert parallel == serial  # bit-identical: per-item randomness depends only on (seed, index)


# ----------------------------------------------------------------------------------------------
# bf16 autocast


def test_bf16_autocasts_but_keeps_float32_weights(tmp_path: Path) -> None:
    common = ["--log-every", "1", "--seed", "2", *tiny_args(NO_FIGURES, batch_size=4)]
    full = losses(train(tmp_path / "fp32", "--precision", "no", *common, steps=2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        half = losses(train(tmp_path / "bf16", "--precision", "bf16", *common, steps=2))
    if not mpt.loop.cpu_has_native_bf16():
        messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        assert any("bf16 is emulated" in msg for msg in messages), messages

    assert half[1] != full[1], "bf16 gave the fp32 loss bit for bit: no autocast happened"
    assert abs(half[1] - full[1]) / abs(full[1]) < 0.05, (half[1], full[1])

    weights = load_file(str(tmp_path / "bf16" / "encoder" / "model.safetensors"))
    assert weights
    assert {str(v.dtype) for v in weights.values() if v.is_floating_point()} == {str(torch.float32)}


# ----------------------------------------------------------------------------------------------
# the seed


def test_seed_is_reproducible_and_matters(tmp_path: Path) -> None:
    common = ["--log-every", "1", *tiny_args(NO_FIGURES, batch_size=4)]
    one = losses(train(tmp_path / "s1a", "--seed", "1", *common, steps=3))
    again = losses(train(tmp_path / "s1b", "--seed", "1", *common, steps=3))
    two = losses(train(tmp_path / "s2", "--seed", "2", *common, steps=3))
    assert sorted(one) == [1, 2, 3]
    assert again == one
    assert all(two[s] != one[s] for s in one), (one, two)


# ----------------------------------------------------------------------------------------------
# train.epochs as the run length


def test_epochs_sets_the_run_length(tmp_path: Path) -> None:
    batch = 4
    # the demo recipe sets train.max_steps; clear it so that train.epochs decides the length
    sets = ["train.max_steps=null", "train.epochs=1", "data.repeats=2", NO_FIGURES]
    modality = mpt.get_modality("pointcloud")
    cfg = build_config(modality, sets=[*TINY_SETS, *sets], flags={"train": {"batch_size": batch}})
    assert cfg.train.max_steps is None and cfg.train.epochs == 1
    n = len(modality.dataset(None, "train", cfg.data))
    assert n == 7 * 2  # 7 demo meshes, each twice
    expected = n // batch
    assert expected >= 2

    out = tmp_path / "run"
    metrics = train(out, "--log-every", "1", *tiny_args(*sets, batch_size=batch), steps=None)
    assert [m["step"] for m in metrics] == list(range(1, expected + 1))
    assert {m["epoch"] for m in metrics} == {0}
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == [f"step-{expected}"]


def test_accumulation_across_an_epoch_end_uses_each_batch_once(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # 7 samples, batch 2 → 3 batches per epoch: the second optimizer step accumulates the last batch of
    # epoch 0 and the first of epoch 1; no batch may be used twice or skipped.
    seed, batch = 6, 2
    consumed: list[int] = []
    real_iter = mpt.loop.EpochSampler.__iter__

    def recording_iter(self):  # noqa: ANN001, ANN202
        for i in real_iter(self):
            consumed.append(i)
            yield i

    monkeypatch.setattr(mpt.loop.EpochSampler, "__iter__", recording_iter)
    train(tmp_path / "run", "--log-every", "1", "--seed", str(seed),
          *tiny_args("optim.accumulate=2", "data.repeats=1", NO_FIGURES, batch_size=batch), steps=3)
    monkeypatch.undo()

    sampler = mpt.loop.EpochSampler(7, seed, batch)
    assert sampler.batches_per_epoch == 3
    stream: list[int] = []
    for epoch in (0, 1):
        sampler.start(epoch)
        stream += list(sampler)
    assert consumed == stream  # 3 steps × 2 batches = both epochs, each batch once, in order


ACCELERATE_2CPU = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no"]


def launch(prefix: list[str], out: Path, batch: int, steps: int = 10, *extra: str):  # noqa: ANN201 - CompletedProcess
    import os
    import subprocess
    import sys

    cmd = [sys.executable, *prefix, "-m", "mpt_cli", *run_args(out, "--log-every", "1", *extra, *tiny_args(
        "optim.warmup_steps=1", NO_FIGURES, batch_size=batch), steps=steps)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_accelerate_two_cpu_processes_match_one_process_with_the_global_batch(tmp_path: Path) -> None:
    """`accelerate launch --multi_gpu --num_processes 2` on a machine without GPUs: 2 gloo processes
    × batch 4 follow 1 process × batch 8 (same data order and init; each process draws its own masks,
    so losses agree within a tolerance, measured 0-5 % per step over 10 steps); config.yaml records it."""
    import yaml

    two = launch(ACCELERATE_2CPU, tmp_path / "two", batch=4)
    assert two.returncode == 0, two.stderr[-3000:]
    one = launch([], tmp_path / "one", batch=8)
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = losses(read_metrics(tmp_path / "one")), losses(read_metrics(tmp_path / "two"))
    assert sorted(a) == sorted(b) == list(range(1, 11))
    rel = [abs(a[s] - b[s]) / a[s] for s in a]
    assert rel[0] < 0.01 and max(rel) < 0.12 and sum(rel) / len(rel) < 0.04, rel
    runtime = yaml.safe_load((tmp_path / "two" / "config.yaml").read_text())["runtime"]
    assert (runtime["processes"], runtime["batch_per_process"], runtime["global_batch"]) == (2, 4, 8)
    assert two.stdout.count("done: 10 steps") == 1


def test_resume_with_another_process_count_keeps_the_global_batch(tmp_path: Path) -> None:
    """2 processes × 4 stopped at step 5, resumed by 1 process × 8: it continues (the data order is
    global); 1 process × 4 (another global batch) is refused with the batch size to use."""
    import shutil

    out = tmp_path / "run"
    first = launch(ACCELERATE_2CPU, out, 4, 10, "--checkpoint-every", "5")
    assert first.returncode == 0, first.stderr[-3000:]
    ten = losses(read_metrics(out))
    shutil.rmtree(out / "checkpoints" / "step-10")  # as if stopped after the step-5 checkpoint
    wrong = invoke(*run_args(out, "--resume", *tiny_args("optim.warmup_steps=1", NO_FIGURES, batch_size=4), steps=10))
    assert wrong.exit_code != 0 and "--batch-size 8" in wrong.output
    again = invoke(*run_args(out, "--resume", "--log-every", "1",
                             *tiny_args("optim.warmup_steps=1", NO_FIGURES, batch_size=8), steps=10))
    assert again.exit_code == 0, again.output
    resumed = losses(read_metrics(out))
    assert sorted(resumed) == list(range(1, 11)) and all(resumed[s] == ten[s] for s in range(1, 6))
    rel = [abs(resumed[s] - ten[s]) / ten[s] for s in range(6, 11)]
    assert max(rel) < 0.12, rel  # the same samples; masks are drawn per process, so not bit-equal


def test_a_killed_worker_stops_the_run_and_the_last_checkpoint_survives(tmp_path: Path) -> None:
    """Rank 1 killed mid-run: the launcher stops the other rank and fails; the last checkpoint is
    complete and the run resumes from it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    out = tmp_path / "run"
    cmd = [sys.executable, *ACCELERATE_2CPU, "-m", "mpt_cli", *run_args(
        out, "--checkpoint-every", "5", *tiny_args("optim.warmup_steps=1", NO_FIGURES, batch_size=4), steps=100000)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 240
        while not list_checkpoints(out / "checkpoints") and time.time() < deadline:
            time.sleep(0.5)
        assert list_checkpoints(out / "checkpoints"), "no checkpoint written"
        workers = [c for c in psutil.Process(proc.pid).children(recursive=True)
                   if c.environ().get("RANK") == "1" and "mpt_cli" in " ".join(c.cmdline())]
        assert workers
        workers[0].send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "mpt_cli" in stderr and ("failed" in stderr.lower() or "SIGKILL" in stderr), stderr[-2000:]
    last = list_checkpoints(out / "checkpoints")[-1]
    again = invoke(*run_args(out, "--resume", *tiny_args("optim.warmup_steps=1", NO_FIGURES, batch_size=8),
                             steps=int(last.name.split("-")[1]) + 2))
    assert again.exit_code == 0, again.output


def test_accelerate_cpu_flag_with_two_processes_is_refused(tmp_path: Path) -> None:
    """`accelerate launch --cpu --num_processes 2` starts one process: a clear error, not a silent
    one-process run."""
    prefix = ["-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no"]
    proc = launch(prefix, tmp_path / "run", batch=4, steps=2)
    assert proc.returncode != 0
    assert "starts ONE process" in proc.stderr + proc.stdout and "--multi_gpu" in proc.stderr + proc.stdout
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_two_processes_on_cpu_share_the_work(tmp_path: Path) -> None:
    """``torchrun --nproc_per_node 2 -m mpt_cli pretrain``: data parallel over gloo on CPUs."""
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mpt_cli",
           *run_args(out, "--log-every", "1", *tiny_args("optim.warmup_steps=1", NO_FIGURES, batch_size=4), steps=3)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done: 3 steps") == 1  # only the main process reports
    assert [m["step"] for m in read_metrics(out)] == [1, 2, 3]  # and writes the metrics
    card = json.loads((out / "encoder" / "config.json").read_text())
    assert card["trained_on"]["batch_size"] == 8  # 4 per process × 2 processes
    encoder = mpt.load_encoder(out / "encoder")
    assert encoder(torch.rand(2, 300, 3)).pooled.shape == (2, 32)
