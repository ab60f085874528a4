"""Local response normalisation (AlexNet, section 3.3) as a registered, serialisable Keras layer."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="alexnet_tuner")
class LocalResponseNormalization(keras.layers.Layer):
    """``tf.nn.local_response_normalization`` over channels, always computed in float32.

    ``tf.nn.lrn`` has no bfloat16 CPU kernel and loses precision in float16 (the squared sums),
    so under any mixed-precision policy the layer casts to float32 and back.
    """

    def __init__(
        self,
        depth_radius: int = 2,
        bias: float = 2.0,
        alpha: float = 1e-4,
        beta: float = 0.75,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if depth_radius < 0:
            raise ValueError(f"depth_radius must be >= 0, but got {depth_radius=}.")
        self.depth_radius = depth_radius
        self.bias = bias
        self.alpha = alpha
        self.beta = beta

    def call(self, inputs: Any) -> Any:
        import tensorflow as tf

        x = tf.cast(inputs, tf.float32)
        y = tf.nn.local_response_normalization(
            x, depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta
        )
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "depth_radius": self.depth_radius,
            "bias": self.bias,
            "alpha": self.alpha,
            "beta": self.beta,
        }
