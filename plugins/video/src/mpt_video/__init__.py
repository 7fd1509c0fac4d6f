"""mpt_video: the video modality plugin of mpt (VideoMAE, VideoMAE V2, V-JEPA).

Importing this package imports neither PyAV nor matplotlib; readers and figures do so lazily.
"""

from mpt_video.config import VideoDataConfig, VideoTokenizerConfig
from mpt_video.modality import Video

__all__ = ["Video", "VideoDataConfig", "VideoTokenizerConfig"]
