"""official.vision's Faster R-CNN task with per-class COCO metrics that work with PyPI's pycocotools.

`COCOEvaluator(per_category_metrics=True)` reads `COCOeval.category_stats`, which only Google's
internal pycocotools fork has: with the pycocotools on PyPI it silently reports no per-class
metric. The subclasses below fill the same metric names from COCOeval's precision and recall
arrays, and clip boxes to the image as the exported model does (see
`PerClassCocoEvaluator._process_bbox_predictions`); everything else is official.vision's.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from official.common import dataset_fn as dataset_fn_lib
from official.vision.dataloaders import (
    input_reader,
    input_reader_factory,
    tf_example_decoder,
    tf_example_label_map_decoder,
)
from official.vision.evaluation import coco_evaluator
from official.vision.tasks import maskrcnn

from cervical_tf.evaluation.metrics import per_class_metrics
from cervical_tf.training.augment import Augmentation, AugmentingParser

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
    """MaskRCNNTask (Faster R-CNN when include_mask is false) with PerClassCocoEvaluator and,
    given `augmentation` (config.augmentation_of(params)), augmented training input."""

    def __init__(
        self,
        params,
        logging_dir: str | None = None,
        name: str | None = None,
        augmentation: Augmentation | None = None,
    ) -> None:
        super().__init__(params, logging_dir=logging_dir, name=name)
        self.augmentation: Augmentation = augmentation or Augmentation()

    def build_inputs(self, params, input_context=None, dataset_fn=None) -> tf.data.Dataset:
        """official.vision's build_inputs (tasks/maskrcnn.py, 2.20), with AugmentingParser for training
        when an augmentation is on; otherwise official.vision's own, unchanged."""
        if not (params.is_training and self.augmentation.enabled):
            return super().build_inputs(params, input_context, dataset_fn)
        model, decoding = self.task_config.model, params.decoder.get()
        masks = {
            "include_mask": model.include_mask,
            "mask_binarize_threshold": decoding.mask_binarize_threshold,
        }
        if params.decoder.type == "simple_decoder":
            decoder = tf_example_decoder.TfExampleDecoder(
                regenerate_source_id=decoding.regenerate_source_id, **masks
            )
        elif params.decoder.type == "label_map_decoder":
            decoder = tf_example_label_map_decoder.TfExampleDecoderLabelMap(
                label_map=decoding.label_map, regenerate_source_id=decoding.regenerate_source_id, **masks
            )
        else:
            raise ValueError(f"Unknown decoder type: {params.decoder.type}!")
        settings = params.parser
        parser = AugmentingParser(
            output_size=model.input_size[:2],
            min_level=model.min_level,
            max_level=model.max_level,
            num_scales=model.anchor.num_scales,
            aspect_ratios=model.anchor.aspect_ratios,
            anchor_size=model.anchor.anchor_size,
            rpn_match_threshold=settings.rpn_match_threshold,
            rpn_unmatched_threshold=settings.rpn_unmatched_threshold,
            rpn_batch_size_per_im=settings.rpn_batch_size_per_im,
            rpn_fg_fraction=settings.rpn_fg_fraction,
            aug_rand_hflip=settings.aug_rand_hflip,
            aug_rand_vflip=settings.aug_rand_vflip,
            aug_scale_min=settings.aug_scale_min,
            aug_scale_max=settings.aug_scale_max,
            aug_type=settings.aug_type,
            skip_crowd_during_training=settings.skip_crowd_during_training,
            max_num_instances=settings.max_num_instances,
            include_mask=model.include_mask,
            outer_boxes_scale=model.outer_boxes_scale,
            mask_crop_size=settings.mask_crop_size,
            dtype=params.dtype,
            augmentation=self.augmentation,
        )
        reader = input_reader_factory.input_reader_generator(
            params,
            dataset_fn=dataset_fn or dataset_fn_lib.pick_dataset_fn(params.file_type),
            decoder_fn=decoder.decode,
            combine_fn=input_reader.create_combine_fn(params),
            parser_fn=parser.parse_fn(params.is_training),
        )
        return reader.read(input_context=input_context)

    def _build_coco_metrics(self) -> None:
        if self._task_config.model.include_mask:
            super()._build_coco_metrics()
            return
        self.coco_metric = PerClassCocoEvaluator(
            annotation_file=self._task_config.annotation_file,
            include_mask=False,
            per_category_metrics=self._task_config.per_category_metrics,
        )
