"""Scoring detections against ground truth: COCO metrics, confusion matrix, screening, the report."""
