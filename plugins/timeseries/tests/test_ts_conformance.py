"""The core's conformance kit on the time-series plugin (what `mpt plugin validate timeseries` runs)."""

from mpt.testing import ModalityConformance


class TestTimeSeriesConformance(ModalityConformance):
    modality = "timeseries"
    sets = ("tokenizer.patch=20", "tokenizer.stride=20")


class TestTimeSeriesMixedChannelsLearnedPositions(ModalityConformance):
    modality = "timeseries"
    sets = ("tokenizer.patch=20", "tokenizer.stride=20", "tokenizer.channels=mixed", "tokenizer.num_channels=6",
            "tokenizer.pos=learned", "tokenizer.max_len=100", "mae.masked_tokens=drop")
