"""The exported SavedModel's two signatures, and how close the in-graph decoder comes to training's.

- ``serve``: uint8 RGB images already decoded and resized as the image cache does, shape
  ``(None, S, S, 3)``; returns the class probabilities (``output_0``). Unchanged from before.
- ``serve_bytes``: a batch of encoded images (JPEG, PNG, GIF, BMP; any size; gray and RGBA
  handled), input ``image_bytes`` (TF Serving's REST API base64-decodes ``{"b64": ...}`` values
  for it). Decoding and resizing happen in the graph, as close to the training decoder
  (``data_pipeline.images``) as TensorFlow's ops allow: JPEGs at the same DCT scale
  (``decode_jpeg``'s ``ratio``: the largest of 1/2/4/8 that keeps the short side >= S), with
  the same fast IDCT and plain chroma upsampling; transparency composited on white; bilinear
  resize with half-pixel centres and no antialiasing, rounded to uint8. Returns
  ``probabilities``, ``class_index``, ``class_name`` and ``error`` per image. An element that
  cannot be decoded (not an image, truncated, corrupt) gets ``class_index`` -1 and its reason in
  ``error``; the other images of the batch are scored as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.images import MAX_DECLARED_PIXELS

BYTES_SIGNATURE = "serve_bytes"
BYTES_INPUT = "image_bytes"
# The training decoder's decompression-bomb bound (Pillow's): an image declaring more pixels
# is refused by both paths before any pixel is decoded.
MAX_PIXELS = MAX_DECLARED_PIXELS
DECODE_ERROR = (
    "cannot decode: not a JPEG, PNG, GIF or BMP image, a truncated or corrupt one, or one "
    f"declaring more than {MAX_PIXELS:,} pixels"
)


def _declared_pixels(data: Any) -> Any:
    """Width x height as the file's header declares them (int64), read before decoding, so a
    small file that declares a huge image costs nothing. A header too short to hold them is
    an error, which drops the element as undecodable."""
    import tensorflow as tf

    def byte(offset: int) -> Any:
        b = tf.io.decode_raw(tf.strings.substr(data, offset, 1), tf.uint8)
        return tf.cast(tf.reshape(b, []), tf.int64)

    def be32(o: int) -> Any:
        return ((byte(o) * 256 + byte(o + 1)) * 256 + byte(o + 2)) * 256 + byte(o + 3)

    def le16(o: int) -> Any:
        return byte(o) + 256 * byte(o + 1)

    def le32(o: int) -> Any:
        return le16(o) + 65536 * le16(o + 2)

    def jpeg() -> Any:
        shape = tf.cast(tf.io.extract_jpeg_shape(data), tf.int64)
        return shape[0] * shape[1]

    def bmp() -> Any:
        height = le32(22)
        height = tf.where(height >= 2**31, 2**32 - height, height)  # top-down: negative
        return le32(18) * height

    head = tf.strings.substr(data, 0, 8)
    return tf.case(
        [
            (tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff"), jpeg),
            (tf.equal(head, b"\x89PNG\r\n\x1a\n"), lambda: be32(16) * be32(20)),
            (tf.equal(tf.strings.substr(head, 0, 3), b"GIF"), lambda: le16(6) * le16(8)),
            (tf.equal(tf.strings.substr(head, 0, 2), b"BM"), bmp),
        ],
        default=lambda: tf.constant(0, tf.int64),  # not an image: the decoder says so
    )


def _decode_one(data: Any, size: int) -> Any:
    """One encoded image -> ``(size, size, 3)`` uint8, as the training decoder does it."""
    import tensorflow as tf

    def jpeg_at(ratio: int) -> Any:
        return lambda: tf.io.decode_jpeg(
            data, channels=3, ratio=ratio, fancy_upscaling=False, dct_method="INTEGER_FAST"
        )

    def jpeg() -> Any:
        shape = tf.io.extract_jpeg_shape(data)
        room = tf.minimum(shape[0], shape[1]) // size
        scale = sum(tf.cast(room >= k, tf.int32) for k in (2, 4, 8))  # 0..3: 1, 1/2, 1/4, 1/8
        return tf.switch_case(scale, [jpeg_at(1), jpeg_at(2), jpeg_at(4), jpeg_at(8)])

    def png() -> Any:
        rgba = tf.cast(tf.io.decode_png(data, channels=4), tf.float32)
        alpha = rgba[..., 3:] / 255.0
        return tf.cast(tf.round(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)), tf.uint8)

    def gif_or_bmp() -> Any:
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    head = tf.strings.substr(data, 0, 8)
    bounded = tf.debugging.assert_less_equal(
        _declared_pixels(data), tf.constant(MAX_PIXELS, tf.int64), message="too many pixels"
    )
    with tf.control_dependencies([bounded]):
        image = tf.cond(
            tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff"),
            jpeg,
            lambda: tf.cond(tf.equal(head, b"\x89PNG\r\n\x1a\n"), png, gif_or_bmp),
        )
    image.set_shape([None, None, 3])
    resized = tf.image.resize(image, (size, size), method="bilinear", antialias=False)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def decode_batch(image_bytes: Any, size: int) -> tuple[Any, Any]:
    """``(images, ok)``: the decodable elements decoded, the others zeros with ``ok`` False.

    Graph ops cannot catch an error, so each element is decoded in a ``tf.data`` pipeline whose
    ``ignore_errors`` drops the ones that fail; their positions say which.
    """
    import tensorflow as tf

    n = tf.shape(image_bytes)[0]
    decoded = (
        tf.data.Dataset.from_tensor_slices((tf.range(n), image_bytes))
        .map(lambda i, b: (i, _decode_one(b, size)))
        .ignore_errors()
        # one placeholder that always decodes, so that the batch below is never empty
        .concatenate(
            tf.data.Dataset.from_tensors((tf.constant(-1), tf.zeros([size, size, 3], tf.uint8)))
        )
    )
    index, images = decoded.batch(tf.cast(n, tf.int64) + 1).get_single_element()
    real = index >= 0
    index, images = tf.boolean_mask(index, real), tf.boolean_mask(images, real)
    full = tf.scatter_nd(index[:, None], images, tf.stack([n, size, size, 3]))
    ok = tf.scatter_nd(index[:, None], tf.ones_like(index, tf.bool), [n])
    return full, ok


def export_saved_model(
    model: Any, out_dir: Path, *, image_size: int, classes: Sequence[str]
) -> None:
    """Write ``model`` as a SavedModel with the ``serve`` and ``serve_bytes`` signatures."""
    import keras
    import tensorflow as tf

    names = tf.constant(list(classes))
    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(
        input_signature=[tf.TensorSpec((None, image_size, image_size, 3), tf.uint8, name="image")]
    )
    def serve(image: Any) -> Any:
        """The model's probabilities; an empty batch gets an empty answer (the convolutions
        refuse a batch of none). One graph of the model, which serve_bytes calls too."""
        return tf.cond(
            tf.shape(image)[0] > 0,
            lambda: tf.cast(model(image, training=False), tf.float32),
            lambda: tf.zeros([0, len(classes)], tf.float32),
        )

    archive.add_endpoint("serve", serve)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
    def serve_bytes(image_bytes: Any) -> dict[str, Any]:
        images, ok = decode_batch(image_bytes, image_size)
        probabilities = serve(images)
        best = tf.argmax(probabilities, axis=1, output_type=tf.int32)
        return {
            "probabilities": tf.where(ok[:, None], probabilities, 0.0),
            "class_index": tf.where(ok, best, -1),
            "class_name": tf.where(ok, tf.gather(names, best), ""),
            "error": tf.where(ok, "", DECODE_ERROR),
        }

    archive.add_endpoint(BYTES_SIGNATURE, serve_bytes)
    _store_each_weight_once(archive)
    archive.write_out(str(out_dir), verbose=False)


def _store_each_weight_once(archive: Any) -> None:
    """Keras's export saves every weight twice: once as the Keras variable it tracked (its
    ``variables`` lists) and once as the ``tf.Variable`` inside it that the endpoints capture,
    doubling the SavedModel. Listing the ``tf.Variable`` itself makes both one object, which
    the checkpoint writes once; ``variables`` and reloading are unchanged."""
    trackable = archive._tf_trackable
    for name in ("variables", "trainable_variables", "non_trainable_variables"):
        tracked = getattr(trackable, name)
        setattr(trackable, name, [getattr(v, "value", v) for v in tracked])


def score_files(signature: Any, paths: Sequence[Path], *, batch: int = 64) -> dict[str, np.ndarray]:
    """``serve_bytes`` over files, ``batch`` at a time: its outputs, concatenated."""
    import tensorflow as tf

    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(paths), batch):
        data = [Path(p).read_bytes() for p in paths[start : start + batch]]
        out = signature(**{BYTES_INPUT: tf.constant(data)})
        for key, value in out.items():
            parts.setdefault(key, []).append(value.numpy())
    return {key: np.concatenate(values) for key, values in parts.items()}


def agreement(
    reference_probs: np.ndarray, served: dict[str, np.ndarray], labels: np.ndarray
) -> dict[str, Any]:
    """How ``serve_bytes`` on the original files compares with the training path's
    predictions on the cached pixels of the same images."""
    ok = served["class_index"] >= 0
    same = served["class_index"] == np.argmax(reference_probs, axis=1)
    diff = np.abs(served["probabilities"][ok] - reference_probs[ok])
    return {
        "n": len(labels),
        "undecodable": int((~ok).sum()),
        "label_agreement": float(np.mean(same)),
        "max_probability_difference": float(diff.max()) if diff.size else 0.0,
        "accuracy": float(np.mean(served["class_index"] == labels)),
    }
