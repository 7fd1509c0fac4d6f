"""The video dataset: clip windows, augmentation, determinism, short videos, labels and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from video_helpers import LEVEL, level_frames, write_video

import mpt
from mpt.errors import ConfigError, DataError
from mpt_video.config import VideoDataConfig
from mpt_video.dataset import VideoDataset, short_side
from mpt_video.modality import DEMO_DATA
from mpt_video.transforms import multiscale_box, resized_box


def cfg(**kw: object) -> VideoDataConfig:
    base: dict[str, object] = {"frames": 4, "rate": 3, "size": 32, "short_side": 40}
    return VideoDataConfig(**{**base, **kw})  # type: ignore[arg-type]


def levels(clip: torch.Tensor) -> list[float]:
    """Frame levels (0-255) of a [C, T, H, W] clip."""
    return [round(float(v) * 255) for v in clip.mean(dim=(0, 2, 3))]


def test_train_clips_are_windows_at_the_rate_with_jitter_and_one_crop(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", level_frames(30, 48, 64))
    ds = VideoDataset(path, "train", cfg(clips=3), progress=False)
    assert len(ds) == 3 and ds.span == 10
    starts = set()
    for i in range(3):
        s = ds[i]
        start = ds.window(i)[1][0]
        starts.add(start)
        assert s.source == str(path) and s.input.shape == (3, 4, 32, 32) and s.input.dtype == torch.float32
        np.testing.assert_allclose(levels(s.input), [LEVEL * (start + 3 * j) for j in range(4)], atol=5)
        assert 0 <= start <= 20
    assert len(starts) > 1  # temporal jitter
    torch.testing.assert_close(ds[1].input, ds[1].input)  # (seed, index) determine an item
    base = VideoDataset(path, "train", cfg(clips=3), progress=False)
    ds.reseed(7)
    assert any(ds.window(i) != base.window(i) or not torch.equal(ds[i].input, base[i].input) for i in range(3))

def test_eval_clips_are_evenly_spaced_and_centre_cropped(tmp_path: Path) -> None:
    frames = level_frames(30, 48, 64)
    frames[:, :, :8] = 255  # a white band on the left: outside the centre crop of the 40×53 frame
    path = write_video(tmp_path / "v.mp4", frames)
    ds = VideoDataset(path, "val", cfg(clips=3), progress=False)
    assert [ds.window(i)[1][0] for i in range(3)] == [0, 10, 20]
    first = ds[0].input
    assert float(first[:, 0].mean()) * 255 < 5  # frame 0 is black inside the crop
    assert torch.equal(first, VideoDataset(path, "val", cfg(clips=3), progress=False)[0].input)


def test_crop_boxes_follow_the_recipes() -> None:
    rng = np.random.default_rng(0)
    sides = {(h, w) for _ in range(300) for _, _, h, w in [multiscale_box(256, 340, [1, 0.875, 0.75, 0.66], rng)]}
    allowed = [256, 224, 192, 168]
    assert sides <= {(a, b) for i, a in enumerate(allowed) for j, b in enumerate(allowed) if abs(i - j) <= 1}
    assert len(sides) == 10  # every pair at most one scale step apart
    for _ in range(200):
        top, left, h, w = resized_box(120, 160, (0.3, 1.0), (0.75, 1.35), rng)
        assert 0 <= top <= 120 - h and 0 <= left <= 160 - w
        assert 0.3 * 120 * 160 * 0.9 <= h * w <= 120 * 160 and 0.7 <= w / h <= 1.4


def test_flip_and_grey(tmp_path: Path) -> None:
    frames = level_frames(12, 40, 40)
    frames[:, :, :20] = 0  # left half black
    path = write_video(tmp_path / "v.mp4", frames)
    flipped = {bool(float(s.input[..., :16].mean()) > float(s.input[..., 16:].mean()))
               for ds in [VideoDataset(path, "train", cfg(flip=True, augment=True, scales=[1.0], clips=16),
                                       progress=False)] for s in (ds[i] for i in range(16))}
    assert flipped == {True, False}
    grey = VideoDataset(path, "val", cfg(channels=1), progress=False)[0].input
    assert grey.shape == (1, 4, 32, 32)


def test_short_videos_loop_or_pad_with_one_warning(tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.mp4", level_frames(5))
    with pytest.warns(UserWarning, match=r"5 frames, shorter than a clip .* looped") as record:
        ds = VideoDataset(path, "train", cfg(), progress=False)
    assert len(record) == 1
    np.testing.assert_allclose(levels(ds[0].input), [LEVEL * i for i in (0, 3, 1, 4)], atol=5)
    with pytest.warns(UserWarning, match="padded with its last frame"):
        padded = VideoDataset(path, "train", cfg(short="pad"), progress=False)
    np.testing.assert_allclose(levels(padded[0].input), [LEVEL * i for i in (0, 3, 4, 4)], atol=5)


def test_labels_from_class_folders_and_bad_files_raise_or_are_listed(tmp_path: Path) -> None:
    write_video(tmp_path / "cats" / "a.mp4", level_frames(12))
    write_video(tmp_path / "dogs" / "b.avi", level_frames(12))
    (tmp_path / "dogs" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a movie")
    with pytest.raises(DataError, match="broken.mp4"):
        VideoDataset(tmp_path, "train", cfg(), progress=False)
    ds = VideoDataset(tmp_path, "train", cfg(), skip_bad_files=True, progress=False)
    assert ds.classes == ["cats", "dogs"] and [ds[i].label for i in range(2)] == [0, 1]
    assert [Path(p).name for p, _ in ds.skipped] == ["broken.mp4"]
    # a file that breaks after it was checked: the item's DataError names it (the loader skips or stops)
    (tmp_path / "dogs" / "b.avi").write_bytes(b"gone")
    with pytest.raises(DataError, match="b.avi"):
        ds[1]


def test_config_errors(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", level_frames(12))
    assert short_side(VideoDataConfig(size=224)) == 256
    with pytest.raises(ConfigError, match="data.short_side"):
        VideoDataset(path, "train", cfg(short_side=20), progress=False)


def test_demo_data_and_the_modality() -> None:
    modality = mpt.get_modality("video")
    assert modality.extensions == (".mp4", ".avi", ".mov", ".mkv", ".webm")
    ds = modality.dataset(None, "train", VideoDataConfig(frames=8, rate=4, size=64))
    assert sorted(Path(s).name for s in ds.sources) == sorted(p.name for p in DEMO_DATA.glob("*.mp4"))
    sample = ds[0]
    assert sample.input.shape == (3, 8, 64, 64) and 0 <= float(sample.input.min()) <= float(sample.input.max()) <= 1
    assert (DEMO_DATA / "ATTRIBUTION.md").is_file()
    # feature extraction reads one clip per video (pretraining's clips=32 is an epoch length)
    assert modality.downstream_data(VideoDataConfig(clips=32)).clips == 1
