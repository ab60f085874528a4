"""Trial checkpoints: the model's weights only, without the optimizer's slots.

Keras' ``save_weights`` stores Adam's two slots beside every weight, tripling a checkpoint
(667 MiB per trial at 227px). The search needs only the weights: to continue a promoted
Hyperband trial and to export the best one.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np


def save_weights(model: keras.Model, path: Path) -> None:
    """Write ``model``'s weights to ``path`` (.npz) atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as fh:
        np.savez(fh, *[np.asarray(w) for w in model.get_weights()])
    os.replace(tmp, path)


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
