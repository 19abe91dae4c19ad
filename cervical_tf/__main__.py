"""`python -m cervical_tf VERB ...` is `cervical-tf VERB ...`."""

import sys

from cervical_tf.cli import main

if __name__ == "__main__":
    sys.exit(main())
