"""TensorFlow's native start-up lines (oneDNN notice, CPU feature guard) kept off the console.

In TF 2.21 they are written by absl before its logging is set up, so ``TF_CPP_MIN_LOG_LEVEL``
does not silence them; the only way is to load TensorFlow (and run one op, which triggers the
feature guard) while file descriptor 2 points at /dev/null. ``--debug`` keeps them.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly(*, enabled: bool = True) -> None:
    if not enabled or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices("CPU")
        _ = tf.constant(0.0) + 1.0  # the CPU feature guard speaks at the first op
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
