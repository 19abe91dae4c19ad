"""Export a trained checkpoint as a SavedModel with the TF Object Detection API's signature."""
