"""Adam whose update of one variable is a single TensorFlow kernel (``ResourceApplyAdam``).

Keras 3's ``Adam.update_step`` is a dozen element-wise operations, each a pass through memory
over a tensor the size of the variable: on a CPU, for the 16.8M weights of the 4,096 x 4,096
layer, that is memory traffic rather than arithmetic. TensorFlow's fused kernel makes one pass. It
computes the same update (``m += (g - m)(1 - beta_1)``, ``v += (g**2 - v)(1 - beta_2)``,
``w -= lr sqrt(1 - beta_2**t) / (1 - beta_1**t) m / (sqrt(v) + epsilon)``), equal to Keras'
up to float32 rounding, with the same variables, so checkpoints and epoch states are
interchangeable. Training the CPU preset's dense 4,096 model: 10% more images per second here
(``bench/README.md``).
"""

from __future__ import annotations

from typing import Any

import keras


def _handle(variable: Any) -> Any:
    """The TensorFlow resource handle of a Keras variable or of a bare ``tf.Variable``
    (Keras passes the latter, one replica's copy under a distribution strategy)."""
    value = variable.value if isinstance(variable, keras.Variable) else variable
    return value.handle


@keras.saving.register_keras_serializable(package="alexnet_tuner")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` (without AMSGrad) with TensorFlow's fused update; the other
    backends, AMSGrad and sparse gradients keep Keras' own update."""

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        import tensorflow as tf

        if (
            keras.backend.backend() != "tensorflow"
            or self.amsgrad
            or isinstance(gradient, tf.IndexedSlices)
        ):
            super().update_step(gradient, variable, learning_rate)
            return
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable),
            m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )
