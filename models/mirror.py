"""The mirror image as a registered, serialisable Keras layer: what ``--tta flip`` adds to the
shipped model (``models.alexnet.average_of``).

AlexNet itself averaged its predictions on an image's patches "and their horizontal
reflections" at test time (Krizhevsky et al., 2012, section 4.1). A mirrored photo of a cat is
still a photo of a cat, so the mirror image is a second, partly independent look at the same
evidence, for no training and twice the serving compute (``search.confirm.DEFAULT_TTA``).
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="alexnet_tuner")
class Mirror(keras.layers.Layer):
    """Images ``(N, H, W, C)`` flipped left to right; any dtype, no weights."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.flip(inputs, axis=-2)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape
