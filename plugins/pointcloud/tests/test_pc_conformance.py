"""The core's conformance kit on the point-cloud plugin (what `mpt plugin validate pointcloud` runs)."""

from mpt.testing import ModalityConformance


class TestPointCloudConformance(ModalityConformance):
    modality = "pointcloud"
    sets = ("tokenizer.num_groups=8", "tokenizer.group_size=8", "tokenizer.hidden=16",
            "data.num_points=128", "data.cache_points=256")
