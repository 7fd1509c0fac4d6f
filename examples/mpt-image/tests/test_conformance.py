"""The core's conformance kit on the image plugin (what `mpt plugin validate image` runs)."""

from mpt.testing import ModalityConformance


class TestImageConformance(ModalityConformance):
    modality = "image"
    sets = ("data.size=32", "tokenizer.patch=8")  # 4×4 tokens: every check in a few seconds
