"""Make the helper module of these tests importable whatever pytest's import mode; the fixtures."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from video_helpers import level_frames, write_video  # noqa: E402


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """60 frames of 48×64 (key frames every 12), MPEG-4 in MP4."""
    return write_video(tmp_path / "levels.mp4", level_frames(60))
