"""The SavedModel contract shared by `export` (which writes it) and `predictor` (which checks it).

Signature `serving_default`: input `input_tensor` (uint8 [1, H, W, 3] for --input_type
image_tensor; string [1] for encoded_image_string_tensor and tf_example); outputs
`detection_boxes` float32 [1, N, 4] normalized [ymin, xmin, ymax, xmax] of the original image,
`detection_scores` float32 [1, N], `detection_classes` float32 [1, N] (label-map ids from 1),
`num_detections` float32 [1] -- the TF Object Detection API's names, dtypes and conventions.
"""

SIGNATURE = "serving_default"
INPUT_NAME = "input_tensor"
OUTPUT_NAMES = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
# OD API --input_type -> official.vision's export function key.
INPUT_TYPES = {
    "image_tensor": "image_tensor",
    "encoded_image_string_tensor": "image_bytes",
    "tf_example": "tf_example",
}
