"""Turn cervical-cytology annotations into validated, leakage-free TFRecord splits."""
