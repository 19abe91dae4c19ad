"""`python -m cervical_tf.exporter_main_v2 --trained_checkpoint_dir ... --output_directory ...`.

The TF Object Detection API's export entry point, with the same flags, for scripts written
against it; it is exactly `cervical-tf export`. The model is built from the config training
wrote (MODEL_DIR/params.yaml); --pipeline_config_path is still accepted and checked against it:
a model field that differs is an error, not a silently different model.
"""

import sys

from cervical_tf.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
