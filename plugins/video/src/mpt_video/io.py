"""Reading videos: container files through PyAV (FFmpeg) and folders of frames.

A video is probed once (:func:`probe`: the packets are demuxed, not decoded, which reads the file
without decoding it, and the first frame is decoded to check the codec) and a clip is read by
seeking to the key frame before its first frame and decoding forward only to its last
(:func:`read_clip`) — never the whole video. Frames are resized (shorter side) and converted to
RGB or grey by FFmpeg's scaler as they are decoded. Frame ``i`` of a video is its ``i``-th frame in
presentation order (the ``i``-th smallest packet timestamp), the same whatever the container's
frame rate field or decode order says.

Every unusable input is a :class:`~mpt.errors.DataError` naming the file: a missing, empty,
corrupt or truncated container, one without a video stream (audio only), a codec FFmpeg cannot
decode, a video without frames, a frame folder whose images differ in size.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mpt.errors import DataError
from mpt.registry import optional_import

EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
AV_HINT = "pip install 'av<19' (PyAV, FFmpeg bindings: the video reader of mpt-video)"
REORDER = 16  # frames decoded past a clip's last timestamp before a missing one counts as undecodable


@dataclass(frozen=True)
class VideoInfo:
    """What indexing a video needs: its frame count and size, the presentation timestamps of its
    frames (stream time base; ``()`` for a frame folder) or the frame files of a folder."""

    frames: int
    height: int
    width: int
    codec: str  # FFmpeg decoder name, or "jpeg"/"png" for a frame folder
    pts: tuple[int, ...] = ()
    files: tuple[Path, ...] = ()


def import_av() -> Any:  # noqa: ANN401 - the av module
    return optional_import("av", "reading videos", AV_HINT)


def find_videos(path: str | Path) -> list[Path]:
    """``path`` itself if it is a video file or a frame folder, else every video file and frame folder
    (a folder holding .jpg/.png files and no subfolder) below it, sorted. A DataError otherwise."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in EXTENSIONS:
            raise DataError(path, f"unsupported extension '{path.suffix}'; supported: "
                                  f"{', '.join(EXTENSIONS)} or a folder of {', '.join(FRAME_EXTENSIONS)} frames")
        return [path]
    if not path.is_dir():
        raise DataError(path, "no such file or folder")
    found = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS]
    folders = {p.parent for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS}
    found += [d for d in folders if not any(c.is_dir() for c in d.iterdir())]
    if not found:
        raise DataError(path, f"no videos in this folder (supported: {', '.join(EXTENSIONS)}, "
                              f"or folders of {', '.join(FRAME_EXTENSIONS)} frames)")
    return sorted(found)


def probe(path: str | Path) -> VideoInfo:
    """Check one video file or frame folder and index it; nothing is decoded but the first frame."""
    path = Path(path)
    if path.is_dir():
        return _probe_folder(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file (0 bytes)")
    av = import_av()
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(path, container)
            if stream.codec_context is None:
                raise DataError(path, "FFmpeg has no decoder for its video codec; re-encode it, "
                                      "e.g. ffmpeg -i IN -c:v libx264 OUT.mp4")
            codec = stream.codec_context.name
            pts, end = [], 0
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None:
                    pts.append(int(packet.pts))
                    end = max(end, int(packet.pts) + int(packet.duration or 0))
            if not pts:
                raise DataError(path, "the video stream has no frames")
            start, duration = int(stream.start_time or 0), int(stream.duration or 0)
            if duration > 0 and end - start < 0.95 * duration:
                tb = float(stream.time_base)
                raise DataError(path, f"truncated: frames end at {(end - start) * tb:.2f} s of a "
                                      f"{duration * tb:.2f} s video stream")
            container.seek(min(pts), stream=stream, backward=True, any_frame=False)
            first = next(iter(container.decode(stream)), None)
    except DataError:
        raise
    except (av.error.FFmpegError, StopIteration, OSError) as exc:  # corrupt, truncated, unreadable
        raise DataError(path, f"cannot be read as a video ({_reason(exc)}): corrupt or truncated?") from None
    if first is None:
        raise DataError(path, "no frame of the video stream decodes: corrupt?")
    return VideoInfo(frames=len(pts), height=first.height, width=first.width, codec=codec, pts=tuple(sorted(pts)))


def _video_stream(path: Path, container: Any) -> Any:  # noqa: ANN401 - av containers and streams
    if not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams) or "none"
        raise DataError(path, f"no video stream (streams: {kinds}); an audio-only file?")
    return container.streams.video[0]


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def natural_key(path: Path) -> list[int | str]:
    """Sort key of frame files: digit runs compared as numbers (``frame2`` before ``frame10``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _probe_folder(path: Path) -> VideoInfo:
    from PIL import Image, UnidentifiedImageError

    files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS),
                   key=natural_key)
    if not files:
        raise DataError(path, f"a folder without {', '.join(FRAME_EXTENSIONS)} frames")
    sizes: dict[tuple[int, int], Path] = {}
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.setdefault(im.size, f)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f, f"cannot be read as an image ({exc}): corrupt or truncated?") from None
        if len(sizes) > 1:
            (a, fa), (b, fb) = sizes.items()
            raise DataError(path, f"frames differ in size: {fa.name} is {a[0]}×{a[1]}, {fb.name} is {b[0]}×{b[1]}")
    (width, height), = sizes
    return VideoInfo(frames=len(files), height=height, width=width, codec=files[0].suffix.lower().lstrip("."),
                     files=tuple(files))


def resized(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(height, width) with the shorter side scaled to ``short_side`` (aspect kept; None: unchanged)."""
    if short_side is None:
        return height, width
    scale = short_side / min(height, width)
    return max(short_side, round(height * scale)), max(short_side, round(width * scale))


def read_clip(path: str | Path, info: VideoInfo, indices: Sequence[int], short_side: int | None = None,
              channels: int = 3, threads: int = 0) -> np.ndarray:
    """Frames ``indices`` (presentation order, any order and repeats) of a probed video →
    uint8 ``[len(indices), H, W, channels]``, the shorter side resized to ``short_side`` at decode.

    Container files are read by a seek to the key frame before the earliest wanted frame and
    decoding forward to the latest (``threads`` decoder threads, 0: FFmpeg's choice); a wanted frame
    that does not decode (a broken last frame, say) is the nearest one that did, with a warning."""
    path = Path(path)
    if not indices:
        raise ValueError("read_clip needs at least one frame index")
    if min(indices) < 0 or max(indices) >= info.frames:
        raise IndexError(f"{path}: frame indices {min(indices)}..{max(indices)} outside 0..{info.frames - 1}")
    height, width = resized(info.height, info.width, short_side)
    if info.files:
        return _read_folder(info, indices, height, width, channels)
    av = import_av()
    wanted = sorted({info.pts[i] for i in indices})
    fmt = "rgb24" if channels == 3 else "gray"
    # Seek to the key frame before the first wanted frame; where a container's index lands after it
    # (AVI files whose first timestamp is not 0, say), from an earlier frame, then from the start.
    first = min(indices)
    for seek in dict.fromkeys((wanted[0], info.pts[max(0, first - REORDER)] if first else None, None)):
        try:
            got, decoded_from = _decode(av, path, wanted, seek, width, height, fmt, threads)
        except av.error.FFmpegError as exc:
            raise DataError(path, f"decoding failed ({_reason(exc)}): corrupt or truncated?") from None
        if decoded_from is not None and decoded_from <= wanted[0]:
            break
    if not got:
        raise DataError(path, f"no frame of {min(indices)}..{max(indices)} decodes: corrupt?")
    if len(got) < len(wanted):
        missing = [p for p in wanted if p not in got]
        warnings.warn(f"{path}: {len(missing)} frame(s) did not decode (timestamps {missing[:4]}); "
                      "repeating the nearest decoded frame", stacklevel=2)
        keys = np.array(sorted(got))
        for p in missing:
            got[p] = got[int(keys[np.abs(keys - p).argmin()])]
    frames = np.stack([got[info.pts[i]] for i in indices])
    return frames[..., None] if frames.ndim == 3 else frames


def _decode(av: Any, path: Path, wanted: list[int], seek: int | None, width: int, height: int,  # noqa: ANN401
            fmt: str, threads: int) -> tuple[dict[int, np.ndarray], int | None]:
    """Decode from the key frame before ``seek`` (None: from the start) until every ``wanted``
    timestamp is seen, or ``REORDER`` frames past the last → (frames by timestamp, first pts decoded)."""
    got: dict[int, np.ndarray] = {}
    first = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        if seek is not None:
            container.seek(seek, stream=stream, backward=True, any_frame=False)
        left, past = set(wanted), 0
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            first = frame.pts if first is None else min(first, frame.pts)
            if frame.pts in left:
                left.discard(frame.pts)
                got[frame.pts] = frame.to_ndarray(width=width, height=height, format=fmt)
            past += frame.pts > wanted[-1]
            if not left or past >= REORDER:
                break
    return got, first


def _read_folder(info: VideoInfo, indices: Sequence[int], height: int, width: int, channels: int) -> np.ndarray:
    """Frames of a frame folder; JPEGs are decoded at a reduced scale when that suffices (``draft``)."""
    from PIL import Image

    mode = "RGB" if channels == 3 else "L"
    cache: dict[int, np.ndarray] = {}
    for i in dict.fromkeys(indices):
        f = info.files[i]
        try:
            with Image.open(f) as file:
                file.draft(mode, (width, height))
                image = file.convert(mode)
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            cache[i] = np.asarray(image, dtype=np.uint8)
        except OSError as exc:
            raise DataError(f, f"cannot be read as an image ({exc}): corrupt or truncated?") from None
    frames = np.stack([cache[i] for i in indices])
    return frames[..., None] if frames.ndim == 3 else frames
