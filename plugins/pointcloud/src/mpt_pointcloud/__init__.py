"""mpt_pointcloud: the point-cloud modality plugin of mpt (Point-MAE, Pang et al. ECCV 2022).

Importing this package imports neither open3d nor matplotlib; readers and figures do so lazily.
"""

from mpt_pointcloud.config import PointCloudDataConfig, PointCloudTokenizerConfig
from mpt_pointcloud.modality import PointCloud

__all__ = ["PointCloud", "PointCloudDataConfig", "PointCloudTokenizerConfig"]
