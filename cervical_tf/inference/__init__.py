"""Running an export: the Predictor, tiling and merging, the Detections type and every result writer."""
