"""`python -m cervical_tf.model_main_tf2 --pipeline_config_path ... --model_dir ...`.

The TF Object Detection API's training entry point, with the same flags, for scripts written
against it; it is exactly `cervical-tf train`.
"""

import sys

from cervical_tf.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
