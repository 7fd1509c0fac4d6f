"""Real pretraining runs (mpt.trainer.pretrain) on the shipped clips: VideoMAE, VideoMAE V2, V-JEPA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from video_helpers import level_frames, write_frames, write_video

import mpt
from mpt.config import build_config
from mpt.errors import DataError
from mpt.trainer import pretrain

# 4 frames of 32² per clip: a (2, 4, 4) tubelet grid, 2 visible cells per time slot at tube 0.9
SMALL = ("data.frames=4", "data.size=32", "tokenizer.patch=8", "model.dim=64", "model.depth=2",
         "mae.decoder_dim=64", "mae.decoder_depth=1", "jepa.predictor_dim=64", "jepa.predictor_depth=1",
         "data.clips=8", "train.batch_size=4")
DUAL = "mae.mask={name: dual, encoder: {name: tube, ratio: 0.75}, decoder_ratio: 0.5}"


def run(out: Path, *sets: str, steps: int, objective: str = "mae") -> list[dict]:
    """The demo recipe on the demo clips, shrunk by ``SMALL`` and ``sets``, logged every step."""
    modality = mpt.get_modality("video")
    cfg = build_config(modality, "demo", None, (*SMALL, *sets),
                       {"objective": objective, "train": {"max_steps": steps, "log_every": 1, "figure_every": steps}})
    pretrain(cfg, modality, out, progress=False)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_videomae_on_the_demo_clips_lowers_the_loss(tmp_path: Path) -> None:
    losses = [m["loss"] for m in run(tmp_path / "run", steps=80)]
    first, last = mean(losses[:5]), mean(losses[-15:])
    assert last < 0.8 * first, (first, last)
    assert (tmp_path / "run" / "figures" / "step-000080.png").is_file()
    encoder = mpt.load_encoder(tmp_path / "run" / "encoder")
    with torch.no_grad():
        out = encoder(torch.rand(2, 3, 6, 40, 24))  # another clip length and frame shape: sin-cos positions
    assert out.tokens.shape == (2, 3 * 5 * 3, 64) and out.pooled.shape == (2, 64)


def test_videomae_v2_dual_masking_lowers_the_loss_on_decoder_kept_tokens(tmp_path: Path) -> None:
    metrics = run(tmp_path / "run", DUAL, steps=80)
    losses = [m["loss"] for m in metrics]
    assert mean(losses[-15:]) < 0.8 * mean(losses[:5]), losses


def test_vjepa_lowers_the_loss_and_exports_the_target_encoder(tmp_path: Path) -> None:
    metrics = run(tmp_path / "run", steps=80, objective="jepa")
    losses = [m["loss"] for m in metrics]
    assert mean(losses[-15:]) < 0.7 * mean(losses[:5]), losses
    card = json.loads((tmp_path / "run" / "encoder" / "config.json").read_text())
    assert card["exported_encoder"] == "target (EMA teacher)"
    assert card["objective_config"]["loss"] == "l1"


def test_bad_files_stop_the_run_or_are_skipped_listed_and_counted(tmp_path: Path) -> None:
    """A 0-byte file fails the check when the data opens; a frame whose PNG data is cut short passes it
    (its header is intact) and fails when a clip is decoded, mid-run."""
    data = tmp_path / "data"
    write_video(data / "a.mp4", level_frames(12, 32, 32))
    write_frames(data / "frames", level_frames(8, 32, 32)[..., 0])
    png = (data / "frames" / "000004.png").read_bytes()
    (data / "frames" / "000004.png").write_bytes(png[: len(png) // 2])
    modality = mpt.get_modality("video")

    def attempt(out: Path, skip: bool) -> None:
        cfg = build_config(modality, "demo", None, (*SMALL, "data.clips=2", "train.batch_size=2"),
                           {"train": {"max_steps": 3, "log_every": 1, "figure_every": 100}})
        pretrain(cfg, modality, out, data=data, skip_bad_files=skip, progress=False)

    with pytest.raises(DataError, match=r"000004\.png.*--skip-bad-files"):
        attempt(tmp_path / "stop", skip=False)
    (data / "empty.mp4").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.mp4.*empty file"):
        attempt(tmp_path / "stop2", skip=False)
    with pytest.warns(UserWarning, match=r"000004\.png"):
        attempt(tmp_path / "skip", skip=True)
    listed = (tmp_path / "skip" / "skipped.txt").read_text().splitlines()
    assert sorted(Path(line.split("\t")[0]).name for line in listed) == ["000004.png", "empty.mp4"]
    card = json.loads((tmp_path / "skip" / "encoder" / "config.json").read_text())
    assert card["trained_on"]["skipped_files"] == 2
