"""official.vision's Faster R-CNN task with per-class COCO metrics that work with PyPI's pycocotools.

`COCOEvaluator(per_category_metrics=True)` reads `COCOeval.category_stats`, which only Google's
internal pycocotools fork has: with the pycocotools on PyPI it silently reports no per-class
metric. The subclasses below fill the same metric names from COCOeval's precision and recall
arrays, and clip boxes to the image as the exported model does (see
`PerClassCocoEvaluator._process_bbox_predictions`); everything else is official.vision's.
"""

from __future__ import annotations

import numpy as np
from official.vision.evaluation import coco_evaluator
from official.vision.tasks import maskrcnn

from cervical_tf.evaluation.metrics import per_class_metrics

# official.vision's names for per-class metrics (coco_evaluator._retrieve_per_category_metrics).
PER_CLASS_KEYS = {
    "AP": "Precision mAP ByCategory",
    "AP50": "Precision mAP ByCategory@50IoU",
    "AP75": "Precision mAP ByCategory@75IoU",
    "AR100": "Recall AR@100 ByCategory",
}


class PerClassCocoEvaluator(coco_evaluator.COCOEvaluator):
    """COCOEvaluator whose per-category metrics come from pycocotools' public arrays."""

    def _process_bbox_predictions(self, predictions: dict) -> None:
        """Boxes to original-image pixels (official.vision's step), then clipped to the image.

        The model clips its boxes to its padded input only, so a box near the bottom or right edge
        can reach into the padding, beyond the image; the exported model clips to the image. Without
        this, validation and `cervical-tf evaluate` would score such boxes differently.
        """
        super()._process_bbox_predictions(predictions)
        image_size = np.tile(predictions["image_info"][:, 0:1, :], (1, 1, 2))  # [batch, 1, (h, w, h, w)]
        predictions["detection_boxes"] = np.clip(predictions["detection_boxes"], 0.0, image_size)

    def _retrieve_per_category_metrics(self, coco_eval, prefix: str = "") -> dict:
        names = {
            class_id: coco_eval.cocoGt.cats.get(class_id, {}).get("name", class_id)
            for class_id in coco_eval.params.catIds
        }
        prefix = f"{prefix} " if prefix else ""
        metrics = {}
        for class_id, values in per_class_metrics(coco_eval).items():
            for metric, key in PER_CLASS_KEYS.items():
                if values[metric] is not None:  # a class without ground truth has no metric
                    metrics[f"{prefix}{key}/{names[class_id]}"] = values[metric]
        return metrics


class CellDetectionTask(maskrcnn.MaskRCNNTask):
    """MaskRCNNTask (Faster R-CNN when include_mask is false) with PerClassCocoEvaluator."""

    def _build_coco_metrics(self) -> None:
        if self._task_config.model.include_mask:
            super()._build_coco_metrics()
            return
        self.coco_metric = PerClassCocoEvaluator(
            annotation_file=self._task_config.annotation_file,
            include_mask=False,
            per_category_metrics=self._task_config.per_category_metrics,
        )
