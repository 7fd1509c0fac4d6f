"""Videos written by the video tests (PyAV encoders): frame ``i`` is a uniform grey of level ``LEVEL * i``."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

LEVEL = 8  # grey step between consecutive frames: frame i reads back as ~LEVEL * i


def level_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """uint8 [count, height, width, 3]: frame i is grey LEVEL * i (mod 256)."""
    levels = (np.arange(count) * LEVEL % 256).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def write_video(path: Path, frames: np.ndarray, codec: str = "mpeg4", gop: int = 12, **options: str) -> Path:
    """Encode uint8 [T, H, W, 3] frames at 25 fps (high bit rate, a key frame every ``gop`` frames)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.bit_rate, stream.gop_size = 8_000_000, gop
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_frames(folder: Path, frames: np.ndarray, ext: str = ".png") -> Path:
    """A frame folder: ``000000.png`` … (grey frames ``[T, H, W]`` as mode L)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:06d}{ext}")
    return folder
