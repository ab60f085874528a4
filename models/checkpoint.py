"""Trial checkpoints: the model's weights only, without the optimizer's slots.

Keras' ``save_weights`` stores Adam's two slots beside every weight, tripling a checkpoint
(667 MiB per trial at 227px). The search needs only the weights: to continue a promoted
Hyperband trial and to export the best one.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np


def save_weights(model: keras.Model, path: Path) -> None:
    """Write ``model``'s weights to ``path`` (.npz) atomically."""
    _write(model.get_weights(), Path(path))


def _write(weights: list[np.ndarray], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with tmp.open("wb") as fh:
        np.savez(fh, *[np.asarray(w) for w in weights])
    os.replace(tmp, path)


class CheckpointWriter:
    """Checkpoints written off the training thread.

    ``save`` copies the weights (``get_weights`` returns copies, a memory copy of tens of MB)
    and returns; a thread writes the file while the next epoch trains. Writes happen in the
    order they were asked for, each atomically, so a reader never sees a torn or an older
    file after ``wait``, which a training calls before it reports its checkpoint as written.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending: list[Future[None]] = []

    def save(self, model: keras.Model, path: Path) -> None:
        self._pending.append(self._pool.submit(_write, model.get_weights(), Path(path)))

    def wait(self) -> None:
        """Block until every checkpoint asked for is on disk; a failed write raises here."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def load_weights(model: keras.Model, path: Path) -> None:
    """Load weights written by ``save_weights`` into a model of the same architecture."""
    with np.load(Path(path)) as data:
        weights = [data[f"arr_{i}"] for i in range(len(data.files))]
    expected = len(model.get_weights())
    if len(weights) != expected:
        raise ValueError(
            f"checkpoint {str(path)!r} holds {len(weights)} arrays but the model "
            f"has {expected}; it was saved from another architecture."
        )
    model.set_weights(weights)
