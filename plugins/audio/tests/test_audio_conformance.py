"""The core's conformance kit on the audio plugin (what `mpt plugin validate audio` runs)."""

from mpt.testing import ModalityConformance


class TestAudioConformance(ModalityConformance):
    modality = "audio"
    sets = ("data.seconds=0.5", "data.repeats=1", "tokenizer.mel=32", "tokenizer.patch=[8,8]",
            "tokenizer.fit_segments=8")
