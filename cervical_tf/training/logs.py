"""Where official.vision's and TensorFlow's own log lines go while our verbs run."""

from __future__ import annotations


def quiet_logs(verbose: bool) -> None:
    """official.vision logs through absl at every step; users see our progress line instead."""
    from absl import logging

    logging.set_verbosity(logging.INFO if verbose else logging.WARNING)
    if verbose:
        logging.set_stderrthreshold(logging.INFO)
