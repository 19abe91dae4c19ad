"""training_logs: the terminal keeps the progress line; everything else goes to MODEL_DIR/train.log."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from absl import logging

from cervical_tf.training.logs import LOG_NAME, training_logs


def emit_library_noise() -> None:
    """What Orbit, official.vision, pycocotools and Python warnings write while a model trains."""
    print("train | step:      0 | training until step 4...")  # Orbit's controller prints and logs
    logging.info("Number of trainable params in model: %f Millions.", 12.3)
    print("loading annotations into memory...")  # pycocotools
    sys.stderr.write("W0000 a TensorFlow warning\n")


def test_training_logs_keep_library_output_off_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with training_logs(tmp_path, also_to_terminal=False) as terminal:
        emit_library_noise()
        print("step 2/4  loss 1.0000", file=terminal)
    out, err = capsys.readouterr()
    assert out == "step 2/4  loss 1.0000\n"
    assert err == ""
    log = (tmp_path / LOG_NAME).read_text()
    for line in ("training until step 4", "trainable params", "loading annotations", "a TensorFlow warning"):
        assert line in log
    assert "step 2/4" not in log


def test_training_logs_tee_to_the_terminal_with_alsologtostderr(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with training_logs(tmp_path, also_to_terminal=True):
        emit_library_noise()
    _, err = capsys.readouterr()
    assert "training until step 4" in err and "trainable params" in err
    assert "training until step 4" in (tmp_path / LOG_NAME).read_text()


def test_training_logs_restore_the_streams_and_append(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    stdout, stderr = sys.stdout, sys.stderr
    for run in ("first run", "resumed run"):
        with training_logs(tmp_path, also_to_terminal=False):
            print(run)
    assert (sys.stdout, sys.stderr) == (stdout, stderr)
    print("after")
    assert capsys.readouterr().out == "after\n"
    assert (tmp_path / LOG_NAME).read_text().splitlines() == ["first run", "resumed run"]


def test_training_logs_leave_no_handler_on_the_closed_log(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A root handler a library adds during training (logging.basicConfig() does: on sys.stderr, then
    the log file) must not outlive the log file."""
    import logging as python_logging

    with training_logs(tmp_path, also_to_terminal=False):
        python_logging.getLogger().addHandler(python_logging.StreamHandler(sys.stderr))
    python_logging.getLogger("after.training").warning("export's warning")
    assert "Logging error" not in capsys.readouterr().err
    assert not any(
        getattr(handler, "stream", None) is not None and handler.stream.closed
        for handler in python_logging.getLogger().handlers
    )
