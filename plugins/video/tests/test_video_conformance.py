"""The core's conformance kit on the video plugin (what `mpt plugin validate video` runs)."""

from mpt.testing import ModalityConformance


class TestVideoConformance(ModalityConformance):
    modality = "video"
    sets = ("data.frames=4", "data.size=32", "tokenizer.patch=8", "data.clips=2")  # a (2, 4, 4) grid
