"""AlexNet as in the blog post, built from a frozen dataclass of resolved parameters.

With the blog's values (``AlexNetParams()``) at 227x227x3 the model has 58,289,538 parameters:
conv 96/11x11/4 valid, max-pool 3/2, LRN, conv 256/5x5 same, max-pool 3/2, LRN, conv
384-384-256/3x3 same, max-pool 3/2, dense 4096-4096 with dropout, softmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

CONV_FILTERS = (96, 256, 384, 384, 256)


@dataclass(frozen=True)
class AlexNetParams:
    """Everything a model needs; the searchable ones first, with the blog's values."""

    dropout: float = 0.25
    lrn: bool = True
    dense_units: int = 4096
    learning_rate: float = 1e-5
    weight_decay: float = 0.0  # L2 penalty on the conv and dense kernels (the blog: none)
    image_size: int = 227
    width: float = 1.0  # multiplies the convolution filter counts (1.0 = the blog's)
    num_classes: int = 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1 if size >= kernel else 0


def feature_map_size(image_size: int) -> int:
    """Spatial size after the last pooling layer (0 when the input is too small)."""
    s = _conv_out(image_size, 11, 4)  # conv1, valid
    for _ in range(3):  # the three 3x3/2 max-pools; conv2-5 keep the size ('same')
        s = _conv_out(s, 3, 2)
    return s


def conv_filters(width: float) -> tuple[int, ...]:
    """The five convolutions' filter counts at ``width`` (1.0: the blog's 96-256-384-384-256)."""
    return tuple(max(1, round(n * width)) for n in CONV_FILTERS)


def multiply_adds(params: AlexNetParams) -> tuple[int, int]:
    """Multiply-adds of one image's forward pass: (the convolutions', the dense layers').

    A configuration's training cost to a first approximation, before any of it is timed: the
    ETA's prior (``search.plan.Estimator``). The two are apart because a machine does not run
    them equally fast (the dense layers' weights also pass through the optimizer each step).
    """
    f1, f2, f3, f4, f5 = conv_filters(params.width)
    s1 = _conv_out(params.image_size, 11, 4)  # conv1 (valid); conv2-5 keep the size
    p1 = _conv_out(s1, 3, 2)
    p2 = _conv_out(p1, 3, 2)
    p3 = _conv_out(p2, 3, 2)
    conv = s1 * s1 * 11 * 11 * 3 * f1 + p1 * p1 * 5 * 5 * f1 * f2
    conv += p2 * p2 * 3 * 3 * (f2 * f3 + f3 * f4 + f4 * f5)
    d = params.dense_units
    return conv, p3 * p3 * f5 * d + d * d + d * params.num_classes


def smallest_image_size() -> int:
    size = 11
    while feature_map_size(size) < 1:
        size += 1
    return size


def validate(params: AlexNetParams) -> None:
    """Reject parameters the architecture cannot take, naming the value and the fix."""
    if feature_map_size(params.image_size) < 1:
        raise ValueError(
            f"image_size must be at least {smallest_image_size()} for AlexNet "
            f"(11x11/4 convolution then three 3x3/2 poolings), but got {params.image_size}."
        )
    if not 0.0 <= params.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), but got {params.dropout}.")
    if params.dense_units < 1:
        raise ValueError(f"dense_units must be positive, but got {params.dense_units}.")
    if not params.learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, but got {params.learning_rate}.")
    if not 0.0 <= params.weight_decay < 1.0:
        raise ValueError(f"weight_decay must be in [0, 1), but got {params.weight_decay}.")
    if not params.width > 0:
        raise ValueError(f"width must be positive (1.0 = the blog's filters), got {params.width}.")
    if params.num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, but got {params.num_classes}.")


def build_alexnet(params: AlexNetParams) -> keras.Model:
    """The blog's Sequential AlexNet, parameterised; every layer named."""
    import keras  # here, so that the search space and reports load without TensorFlow

    from models.lrn import LocalResponseNormalization

    validate(params)
    f1, f2, f3, f4, f5 = conv_filters(params.width)
    # L2 on every kernel (not on biases), the usual weight decay of AlexNet-style models
    l2 = keras.regularizers.L2(params.weight_decay) if params.weight_decay > 0 else None
    layers: list[keras.layers.Layer] = [
        # The model takes raw uint8 RGB images and normalises them itself: the input pipeline
        # moves 4x fewer bytes, the division runs on the accelerator, and a served model
        # cannot be fed images scaled differently from training.
        keras.Input((params.image_size, params.image_size, 3), dtype="uint8", name="image"),
        keras.layers.Rescaling(1.0 / 255.0, name="rescale"),
        keras.layers.Conv2D(
            f1, 11, strides=4, activation="relu", name="conv1", kernel_regularizer=l2
        ),
        keras.layers.MaxPooling2D(3, strides=2, name="pool1"),
    ]
    if params.lrn:
        layers.append(LocalResponseNormalization(name="lrn1"))
    layers += [
        keras.layers.Conv2D(
            f2, 5, padding="same", activation="relu", name="conv2", kernel_regularizer=l2
        ),
        keras.layers.MaxPooling2D(3, strides=2, name="pool2"),
    ]
    if params.lrn:
        layers.append(LocalResponseNormalization(name="lrn2"))
    layers += [
        keras.layers.Conv2D(
            f3, 3, padding="same", activation="relu", name="conv3", kernel_regularizer=l2
        ),
        keras.layers.Conv2D(
            f4, 3, padding="same", activation="relu", name="conv4", kernel_regularizer=l2
        ),
        keras.layers.Conv2D(
            f5, 3, padding="same", activation="relu", name="conv5", kernel_regularizer=l2
        ),
        keras.layers.MaxPooling2D(3, strides=2, name="pool3"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(
            params.dense_units, activation="relu", name="fc1", kernel_regularizer=l2
        ),
        keras.layers.Dropout(params.dropout, name="dropout1"),
        keras.layers.Dense(
            params.dense_units, activation="relu", name="fc2", kernel_regularizer=l2
        ),
        keras.layers.Dropout(params.dropout, name="dropout2"),
        # float32 softmax: stable probabilities under a mixed-precision policy.
        keras.layers.Dense(
            params.num_classes,
            activation="softmax",
            dtype="float32",
            name="fc3",
            kernel_regularizer=l2,
        ),
    ]
    return keras.Sequential(layers, name="alexnet")


def build_float32(params: AlexNetParams) -> keras.Model:
    """The network in float32 whatever the process's precision policy: the model the export
    serves, and so the one every test score and served latency is of."""
    import keras

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        return build_alexnet(params)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def average_of(models: Sequence[keras.Model], *, mirror: bool = False) -> keras.Model:
    """One model whose class probabilities are the mean of ``models``' (trainings of one
    configuration with different seeds, each named apart), each on the image and, with
    ``mirror``, on its mirror image too (``models.mirror``); one model without the mirror is
    returned as it is. Averaging probabilities keeps them probabilities, and each member's
    errors partly cancel: the shipped model is steadier than any one training
    (``search.confirm.DEFAULT_REFIT_SEEDS``)."""
    import keras

    from models.mirror import Mirror

    if len(models) == 1 and not mirror:
        return models[0]
    image = keras.Input(models[0].input_shape[1:], dtype="uint8", name="image")
    views = [image, Mirror(name="mirror")(image)] if mirror else [image]
    outputs = [m(view) for m in models for view in views]
    mean = keras.layers.Average(dtype="float32", name="mean_probabilities")
    name = f"{'mirror_' if mirror else ''}average_of_{len(models)}"
    return keras.Model(image, mean(outputs), name=name)


def custom_objects() -> dict[str, Any]:
    """The custom layers a saved model of ours holds, by their registered names: what
    ``keras.saving.load_model(path, custom_objects=...)`` needs for ``best_model.keras``."""
    from models.lrn import LocalResponseNormalization
    from models.mirror import Mirror

    return {
        "alexnet_tuner>LocalResponseNormalization": LocalResponseNormalization,
        "alexnet_tuner>Mirror": Mirror,
    }


def float32_twin(model: keras.Model, params: AlexNetParams) -> keras.Model:
    """``model``'s weights in a float32 build of the same network. Mixed policies keep their
    variables in float32, so nothing is rounded; scoring the twin makes a test score the
    shipped model's own."""
    twin = build_float32(params)
    twin.set_weights(model.get_weights())
    return twin


def compile_alexnet(
    model: keras.Model, params: AlexNetParams, *, jit_compile: Any = "auto", fused: bool = True
) -> None:
    """Adam + sparse cross-entropy, with an explicit ``SparseCategoricalAccuracy``.

    ``fused``: TensorFlow's one-kernel Adam update (``models.optimizer.FusedAdam``, the same
    update, faster on a CPU); ``False`` names Keras' own Adam, for a saved model that stock
    Keras reloads without this package.

    Never the string ``"accuracy"``: with a softmax over 2 classes and one-hot-looking outputs,
    Keras may resolve it to categorical accuracy on integer labels, which measured "the share of
    images predicted as cat" in the blog (87% in training, 52% after reloading).
    """
    import keras

    from models.optimizer import FusedAdam

    adam = FusedAdam if fused else keras.optimizers.Adam
    model.compile(
        optimizer=adam(learning_rate=params.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )
