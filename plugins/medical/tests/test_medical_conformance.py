"""The core's conformance kit on the medical plugin (what `mpt plugin validate medical` runs)."""

from mpt.testing import ModalityConformance


class TestMedicalConformance(ModalityConformance):
    modality = "medical"
    sets = ("data.crop=32", "tokenizer.patch=16")  # a (2, 2, 2) grid of 16³ patches of the demo volume
