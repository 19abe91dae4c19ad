"""`python -m cervical_tf.exporter_main_v2 --pipeline_config_path ... --trained_checkpoint_dir ...`.

The TF Object Detection API's export entry point, with the same flags, for scripts written
against it; it is exactly `cervical-tf export`.
"""

import sys

from cervical_tf.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
