"""The core's conformance kit on the satellite plugin (what `mpt plugin validate satellite` runs)."""

from mpt.testing import ModalityConformance


class TestSatelliteConformance(ModalityConformance):
    modality = "satellite"
    sets = ("data.size=16", "data.stride=64", "tokenizer.group_dim=8")  # a (2, 4, 4) grid of group tokens
