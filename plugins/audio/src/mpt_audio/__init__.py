"""mpt_audio: the audio modality plugin of mpt (AudioMAE, SSAST).

Importing this package imports neither soundfile nor matplotlib; readers and figures do so lazily.
"""

from mpt_audio.config import AudioDataConfig, AudioTokenizerConfig
from mpt_audio.modality import Audio

__all__ = ["Audio", "AudioDataConfig", "AudioTokenizerConfig"]
