"""Moved to `lab.data.scene_tasks` (reading a rendered folder is data reading); this path is kept for one release."""

from lab.data.scene_tasks import (  # noqa: F401
    SCENE_TASKS,
    DepthDataset,
    DetectionDataset,
    ImageTransform,
    MultiLabelDataset,
    NormalsDataset,
    SceneTaskDataset,
    SegmentationDataset,
    create_task_dataset,
    detection_collate,
    image_tensor,
)
