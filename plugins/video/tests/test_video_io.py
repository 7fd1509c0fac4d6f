"""Readers: seek-decoding equals decoding from the start, frame folders, and every bad input."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from video_helpers import LEVEL, level_frames, write_frames, write_video

import mpt_video.io as vio
from mpt.errors import DataError
from mpt_video.io import find_videos, probe, read_clip, resized
from mpt_video.modality import DEMO_DATA

ROOT = Path(__file__).resolve().parents[3]
SHARED_VIDEO = Path(os.environ.get("MPT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "video"


def sequential(path: Path, short_side: int | None = None, fmt: str = "rgb24") -> list[np.ndarray]:
    """Every frame decoded from the start, in presentation order (the reference for read_clip)."""
    info = probe(path)
    height, width = resized(info.height, info.width, short_side)
    with av.open(str(path)) as container:
        frames = {f.pts: f.to_ndarray(width=width, height=height, format=fmt) for f in container.decode(video=0)}
    return [frames[p] for p in sorted(frames)]


def real_videos() -> list[Path]:
    shared = sorted(SHARED_VIDEO.glob("*.*")) if SHARED_VIDEO.is_dir() else []
    # box.mp4's last frame does not decode (checked separately); carphone_distorted is 7 kB of artefacts
    return sorted(DEMO_DATA.glob("*.mp4")) + [p for p in shared if p.name not in {"box.mp4", "carphone_distorted.mp4"}]


@pytest.mark.parametrize("path", real_videos(), ids=lambda p: p.name)
def test_seeking_to_a_window_decodes_the_frames_decoding_from_the_start_gives(path: Path) -> None:
    info = probe(path)
    ref = sequential(path, short_side=72)
    assert info.frames == len(ref)
    n = info.frames
    for start in (0, 1, n // 3, n - 17):
        indices = [min(start + 4 * j, n - 1) for j in range(4)]
        clip = read_clip(path, info, indices, short_side=72)
        assert clip.dtype == np.uint8 and clip.shape == (4, *ref[0].shape)
        np.testing.assert_array_equal(clip, np.stack([ref[i] for i in indices]), err_msg=f"start {start}")


def test_frame_i_is_the_i_th_frame_and_short_side_is_resized_at_decode(video: Path) -> None:
    info = probe(video)
    assert (info.frames, info.height, info.width, info.codec) == (60, 48, 64, "mpeg4")
    clip = read_clip(video, info, [50, 3, 3, 20], short_side=24)
    assert clip.shape == (4, 24, 32, 3)
    np.testing.assert_allclose(clip.mean(axis=(1, 2, 3)), [LEVEL * i % 256 for i in (50, 3, 3, 20)], atol=4)
    grey = read_clip(video, info, [10], channels=1)
    assert grey.shape == (1, 48, 64, 1) and abs(float(grey.mean()) - LEVEL * 10) < 4


class CountingAV:
    """The av module, counting the frames its containers decode (read_clip uses io.import_av())."""

    def __init__(self) -> None:
        self.decoded, self.error = 0, av.error

    def open(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        counter, container = self, av.open(*args, **kwargs)

        class Counting:
            streams = container.streams

            def __enter__(self) -> Counting:
                return self

            def __exit__(self, *exc: object) -> None:
                container.close()

            def seek(self, *a: Any, **k: Any) -> None:  # noqa: ANN401
                container.seek(*a, **k)

            def decode(self, *a: Any, **k: Any) -> Any:  # noqa: ANN401
                for frame in container.decode(*a, **k):
                    counter.decoded += 1
                    yield frame

        return Counting()


def test_a_clip_decodes_its_window_not_the_whole_video(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_video(tmp_path / "long.mp4", level_frames(240, 16, 16), gop=12)
    info = probe(path)
    counting = CountingAV()
    monkeypatch.setattr(vio, "import_av", lambda: counting)
    clip = read_clip(path, info, [200, 204, 208, 212])
    np.testing.assert_allclose(clip.mean(axis=(1, 2, 3)), [LEVEL * i % 256 for i in (200, 204, 208, 212)], atol=4)
    assert counting.decoded <= 12 + 13 + vio.REORDER, counting.decoded  # one GOP before + the window + reorder


@pytest.mark.parametrize(("ext", "codec"), [(".avi", "mpeg4"), (".mov", "mpeg4"), (".mkv", "mpeg4"),
                                            (".webm", "libvpx")])
def test_every_container(tmp_path: Path, ext: str, codec: str) -> None:
    path = write_video(tmp_path / f"v{ext}", level_frames(30, 32, 48), codec=codec)
    assert find_videos(tmp_path) == [path]
    info = probe(path)
    clip = read_clip(path, info, [0, 9, 29])
    np.testing.assert_allclose(clip.mean(axis=(1, 2, 3)), [0, 72, 232], atol=5)


def test_odd_sizes_and_grey_videos(tmp_path: Path) -> None:
    grey = level_frames(20, 33, 47)  # odd sizes, R = G = B
    path = write_video(tmp_path / "odd.mkv", grey)
    info = probe(path)
    assert (info.height, info.width) == (33, 47)
    rgb = read_clip(path, info, [5], short_side=20)
    assert rgb.shape == (1, 20, round(47 * 20 / 33), 3)
    assert np.abs(rgb.astype(int) - rgb[..., :1]).max() <= 2  # grey stays grey in RGB


def test_frame_folders(tmp_path: Path) -> None:
    frames = level_frames(12, 30, 40)[..., 0]
    write_frames(tmp_path / "data" / "a" / "clip1", frames)
    write_frames(tmp_path / "data" / "a" / "clip2", frames[:5], ext=".jpg")
    write_video(tmp_path / "data" / "b" / "v.mp4", level_frames(20))
    found = find_videos(tmp_path / "data")
    assert [p.relative_to(tmp_path / "data").as_posix() for p in found] == ["a/clip1", "a/clip2", "b/v.mp4"]
    info = probe(found[0])
    assert (info.frames, info.height, info.width, info.codec) == (12, 30, 40, "png")
    clip = read_clip(found[0], info, [11, 0, 4], short_side=15)
    assert clip.shape == (3, 15, 20, 3)
    np.testing.assert_allclose(clip.mean(axis=(1, 2, 3)), [88, 0, 32], atol=1)
    assert read_clip(found[0], info, [2], channels=1).shape == (1, 30, 40, 1)
    for i, f in enumerate(sorted(found[0].iterdir())):  # natural order: frame2 before frame10
        f.rename(f.with_name(f"frame{i}.png"))
    assert [f.name for f in probe(found[0]).files][:3] == ["frame0.png", "frame1.png", "frame2.png"]
    np.testing.assert_allclose(read_clip(found[0], probe(found[0]), [10]).mean(), 80, atol=1)


def expect_error(path: Path, *words: str) -> None:
    with pytest.raises(DataError) as info:
        probe(path)
    message = str(info.value)
    assert str(path) in message and all(w in message for w in words), message


def test_bad_inputs_are_errors_naming_the_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "missing.mp4", "no such file")
    (tmp_path / "empty.mp4").write_bytes(b"")
    expect_error(tmp_path / "empty.mp4", "empty file")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    expect_error(tmp_path / "noise.mp4", "cannot be read as a video", "corrupt or truncated")

    # moov at the end (the usual MP4): cut short, nothing can be indexed
    whole = write_video(tmp_path / "whole.mp4", level_frames(40)).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    expect_error(tmp_path / "cut.mp4", "cannot be read as a video")
    # moov first ("faststart"): the index survives, the frames stop early
    fast = write_video(tmp_path / "fast.mp4", level_frames(40), movflags="faststart").read_bytes()
    (tmp_path / "fast-cut.mp4").write_bytes(fast[: len(fast) // 2])
    expect_error(tmp_path / "fast-cut.mp4", "truncated", "1.60 s video stream")
    mdat = fast.index(b"mdat")
    (tmp_path / "no-frames.mp4").write_bytes(fast[: mdat + 4])
    expect_error(tmp_path / "no-frames.mp4", "no frames")

    # an AVI whose codec tag FFmpeg does not know
    avi = write_video(tmp_path / "ok.avi", level_frames(10)).read_bytes()
    (tmp_path / "alien.avi").write_bytes(avi.replace(b"FMP4", b"ZQ9X"))
    expect_error(tmp_path / "alien.avi", "no decoder", "re-encode")

    # audio only
    with av.open(str(tmp_path / "voice.mp4"), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for i in range(8):
            frame.pts = i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    expect_error(tmp_path / "voice.mp4", "no video stream", "audio")


def test_bad_frame_folders(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "mixed", level_frames(3, 20, 20)[..., 0])
    write_frames(tmp_path / "other", level_frames(1, 20, 24)[..., 0])
    (tmp_path / "other" / "000000.png").rename(folder / "000003.png")
    expect_error(folder, "frames differ in size", "000000.png is 20×20", "000003.png is 24×20")
    broken = write_frames(tmp_path / "broken", level_frames(2, 20, 20)[..., 0])
    (broken / "000001.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="000001.png.*cannot be read as an image"):
        probe(broken)


def test_finding_videos(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no videos in this folder"):
        find_videos(tmp_path)
    with pytest.raises(DataError, match="unsupported extension '.txt'"):
        find_videos(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="no such file or folder"):
        find_videos(tmp_path / "absent")


@pytest.mark.skipif(not (SHARED_VIDEO / "box.mp4").is_file(), reason="needs ../shared/data/video/box.mp4")
def test_a_frame_that_does_not_decode_is_the_nearest_one_with_a_warning() -> None:
    path = SHARED_VIDEO / "box.mp4"  # 456 packets; the decoder gives 455 frames
    info = probe(path)
    assert info.frames == 456
    with pytest.warns(UserWarning, match="1 frame.*did not decode.*nearest"):
        clip = read_clip(path, info, [454, 455], short_side=32)
    np.testing.assert_array_equal(clip[0], clip[1])
