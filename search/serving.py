"""The exported SavedModel's two signatures, and how close the in-graph decoder comes to training's.

- ``serve``: uint8 RGB images already decoded and resized as the image cache does, shape
  ``(None, S, S, 3)``; returns the class probabilities (``output_0``). Unchanged from before.
- ``serve_bytes``: a batch of encoded images (JPEG, PNG, GIF, BMP, WebP; any size; grey,
  16-bit, palette and transparent ones handled), input ``image_bytes`` (TF Serving's REST API
  base64-decodes ``{"b64": ...}`` values for it). Decoding and resizing happen in the graph,
  to the training decoder's pixels within one grey level (``data_pipeline.images``; tested on
  every format): JPEGs at the same DCT scale (``decode_jpeg``'s ``ratio``: the largest of
  1/2/4/8 that keeps the short side >= S), with the same fast IDCT and plain chroma
  upsampling; a grey PNG of 1, 2 or 4 bits opaque; transparency composited on white (a GIF's
  transparent colour too, by turning it white in the file's palette before decoding); bilinear
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
    "cannot decode: not a JPEG, PNG, GIF, BMP or WebP image, a truncated or corrupt one, or one "
    f"declaring more than {MAX_PIXELS:,} pixels"
)


def _byte(data: Any, offset: Any) -> Any:
    """The byte of the string ``data`` at ``offset`` (int64); past the end is an error."""
    import tensorflow as tf

    b = tf.io.decode_raw(tf.strings.substr(data, offset, 1), tf.uint8)
    return tf.cast(tf.reshape(b, []), tf.int64)


def _be32(data: Any, offset: Any) -> Any:
    value = _byte(data, offset)
    for k in (1, 2, 3):
        value = value * 256 + _byte(data, offset + k)
    return value


def _le32(data: Any, offset: Any) -> Any:
    value = _byte(data, offset + 3)
    for k in (2, 1, 0):
        value = value * 256 + _byte(data, offset + k)
    return value


def _declared_pixels(data: Any) -> Any:
    """Width x height as the file's header declares them (int64), read before decoding, so a
    small file that declares a huge image costs nothing. A header too short to hold them is
    an error, which drops the element as undecodable."""
    import tensorflow as tf

    def le16(o: int) -> Any:
        return _byte(data, o) + 256 * _byte(data, o + 1)

    def le24(o: int) -> Any:
        return le16(o) + 65536 * _byte(data, o + 2)

    def jpeg() -> Any:
        shape = tf.cast(tf.io.extract_jpeg_shape(data), tf.int64)
        return shape[0] * shape[1]

    def bmp() -> Any:
        height = _le32(data, 22)
        height = tf.where(height >= 2**31, 2**32 - height, height)  # top-down: negative
        return _le32(data, 18) * height

    def webp() -> Any:
        chunk = tf.strings.substr(data, 12, 4)
        lossless = _le32(data, 21)  # VP8L: 14 bits of width - 1, then 14 of height - 1
        return tf.case(
            [
                (tf.equal(chunk, b"VP8X"), lambda: (le24(24) + 1) * (le24(27) + 1)),
                (
                    tf.equal(chunk, b"VP8L"),
                    lambda: (lossless % 16384 + 1) * (lossless // 16384 % 16384 + 1),
                ),
            ],
            default=lambda: (le16(26) % 16384) * (le16(28) % 16384),  # VP8: 14-bit sizes
        )

    head = tf.strings.substr(data, 0, 8)
    return tf.case(
        [
            (tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff"), jpeg),
            (tf.equal(head, b"\x89PNG\r\n\x1a\n"), lambda: _be32(data, 16) * _be32(data, 20)),
            (tf.equal(tf.strings.substr(head, 0, 3), b"GIF"), lambda: le16(6) * le16(8)),
            (tf.equal(tf.strings.substr(head, 0, 2), b"BM"), bmp),
            (_is_webp(data), webp),
        ],
        default=lambda: tf.constant(0, tf.int64),  # not an image: the decoder says so
    )


def _is_webp(data: Any) -> Any:
    import tensorflow as tf

    return tf.logical_and(
        tf.equal(tf.strings.substr(data, 0, 4), b"RIFF"),
        tf.equal(tf.strings.substr(data, 8, 4), b"WEBP"),
    )


def _on_white(rgba: Any) -> Any:
    """RGBA uint8 composited on white, rounded to uint8 RGB (as Pillow's alpha_composite)."""
    import tensorflow as tf

    rgba = tf.cast(rgba, tf.float32)
    alpha = rgba[..., 3:] / 255.0
    return tf.cast(tf.round(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)), tf.uint8)


def _png(data: Any) -> Any:
    """A PNG, transparency on white. TensorFlow gives a PNG of 1, 2 or 4 bits per pixel with
    no ``tRNS`` chunk an alpha of 2^bits - 1 instead of opaque: there it means opaque."""
    import tensorflow as tf

    rgba = tf.io.decode_png(data, channels=4)
    bits = _byte(data, 24)
    filler = tf.cast(tf.bitwise.left_shift(tf.constant(1, tf.int64), bits) - 1, tf.uint8)
    misread = tf.logical_and(bits < 8, tf.logical_not(_png_has_trns(data)))
    alpha = rgba[..., 3]
    opaque = tf.constant(255, tf.uint8)
    alpha = tf.where(tf.logical_and(misread, tf.equal(alpha, filler)), opaque, alpha)
    return _on_white(tf.concat([rgba[..., :3], alpha[..., None]], axis=-1))


def _png_has_trns(data: Any) -> Any:
    """Whether a ``tRNS`` chunk comes before the image data (the chunks are walked)."""
    import tensorflow as tf

    n = tf.cast(tf.strings.length(data), tf.int64)

    def kind(p: Any) -> Any:
        return tf.strings.substr(data, p + 4, 4)

    def more(p: Any, found: Any) -> Any:
        return (p + 12 <= n) & tf.logical_not(found) & tf.not_equal(kind(p), b"IDAT")

    def step(p: Any, found: Any) -> tuple[Any, Any]:
        return p + 12 + _be32(data, p), tf.equal(kind(p), b"tRNS")

    return tf.while_loop(more, step, [tf.constant(8, tf.int64), tf.constant(False)])[1]


_ONE_BYTE = [bytes([i]) for i in range(256)]


def _gif(data: Any) -> Any:
    """A GIF's first frame, its transparent colour white. TensorFlow's decoder paints that
    colour black, so the file is edited first: the first frame's palette entry for it becomes
    white and its transparency flag is cleared (the blocks up to the frame are walked)."""
    import tensorflow as tf

    raw = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int32)
    n = tf.size(raw)

    def at(i: Any) -> Any:  # -1 past the end, so that every walk below stops
        return tf.where(i < n, tf.gather(raw, tf.clip_by_value(i, 0, n - 1)), -1)

    def colours(flags: Any) -> Any:  # the size of the colour table these flags announce
        return tf.where(flags >= 128, tf.bitwise.left_shift(2, flags % 8), 0)

    def after_sub_blocks(q: Any) -> Any:
        return tf.while_loop(lambda q: at(q) > 0, lambda q: q + at(q) + 1, [q])[0] + 1

    def extension(p: Any, gce: Any) -> tuple[Any, Any]:
        gce = tf.where(tf.equal(at(p + 1), 0xF9), p, gce)  # a graphic control extension
        return after_sub_blocks(p + 2), gce

    frame, gce = tf.while_loop(
        lambda p, gce: tf.equal(at(p), 0x21),
        extension,
        [13 + 3 * colours(at(10)), tf.constant(-1)],
    )
    index = at(gce + 6)
    local = at(frame + 9) >= 128
    table, size = (
        tf.where(local, frame + 10, 13),
        tf.where(local, colours(at(frame + 9)), colours(at(10))),
    )
    entry = table + 3 * index
    transparent = (gce >= 0) & (at(gce + 3) % 2 == 1) & tf.equal(at(frame), 0x2C)
    usable = transparent & (index < size) & (entry + 3 <= n)

    def replace(s: Any, at_: Any, new: Any, length: int) -> Any:
        return tf.strings.join(
            [tf.strings.substr(s, 0, at_), new, tf.strings.substr(s, at_ + length, n)]
        )

    def on_white() -> Any:
        flags = tf.gather(tf.constant(_ONE_BYTE), at(gce + 3) - 1)  # bit 0 cleared
        return replace(replace(data, gce + 3, flags, 1), entry, b"\xff\xff\xff", 3)

    return tf.io.decode_gif(tf.cond(usable, on_white, lambda: data))[0]


def _webp(data: Any) -> Any:
    """A still WebP, transparency on white. ``decode_webp`` must be asked for exactly the
    channels the file has (3, or 4 with alpha) and crashes the process on an animation
    asked with 0, so they are read from the header and an animation is refused first."""
    import tensorflow as tf

    chunk, flags = tf.strings.substr(data, 12, 4), _byte(data, 20)
    extended = tf.equal(chunk, b"VP8X")
    animated = tf.logical_and(extended, flags % 4 >= 2)
    lossless_alpha = tf.logical_and(tf.equal(chunk, b"VP8L"), _le32(data, 21) // 2**28 % 2 == 1)
    alpha = tf.logical_or(tf.logical_and(extended, flags % 32 >= 16), lossless_alpha)
    still = tf.debugging.assert_equal(animated, False, message="an animated WebP")

    def rgb() -> Any:
        frame = tf.io.decode_webp(data, channels=3)[0]
        opaque = tf.fill(tf.concat([tf.shape(frame)[:2], [1]], 0), tf.constant(255, tf.uint8))
        return tf.concat([frame, opaque], axis=-1)

    with tf.control_dependencies([still]):
        rgba = tf.cond(alpha, lambda: tf.io.decode_webp(data, channels=4)[0], rgb)
    return _on_white(rgba)


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

    def bmp() -> Any:  # 24 or 32 bits per pixel only; the alpha is dropped, as in training
        depth = _byte(data, 28) + 256 * _byte(data, 29)
        true_colour = tf.debugging.assert_equal(
            tf.logical_or(tf.equal(depth, 24), tf.equal(depth, 32)), True, message="palette BMP"
        )
        with tf.control_dependencies([true_colour]):
            return tf.io.decode_bmp(data, channels=3)

    def other() -> Any:  # not an image we know: fails, and the element is undecodable
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    head = tf.strings.substr(data, 0, 8)
    bounded = tf.debugging.assert_less_equal(
        _declared_pixels(data), tf.constant(MAX_PIXELS, tf.int64), message="too many pixels"
    )
    with tf.control_dependencies([bounded]):
        image = tf.case(
            [
                (tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff"), jpeg),
                (tf.equal(head, b"\x89PNG\r\n\x1a\n"), lambda: _png(data)),
                (tf.equal(tf.strings.substr(head, 0, 3), b"GIF"), lambda: _gif(data)),
                (_is_webp(data), lambda: _webp(data)),
                (tf.equal(tf.strings.substr(head, 0, 2), b"BM"), bmp),
            ],
            default=other,
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
    model: Any,
    out_dir: Path,
    *,
    image_size: int,
    classes: Sequence[str],
    with_bytes: bool = True,
) -> None:
    """Write ``model`` as a SavedModel with the ``serve`` and ``serve_bytes`` signatures
    (``with_bytes=False``: ``serve`` alone, for timing it)."""
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
    if not with_bytes:
        archive.write_out(str(out_dir), verbose=False)
        return

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


# serve_bytes on the test files must give the training path's label on at least this share of
# them, and decode every one, for the export check to pass (the decoders agree within one grey
# level by contract; a disagreement beyond a few borderline images is a train/serve skew)
MIN_LABEL_AGREEMENT = 0.995
# A disagreement is borderline, and no sign of skew, when the training path's probabilities
# for the two labels were this close: one grey level moved them by at most 0.007 on the real
# photos (four exports, 320-402 images each), while a model near chance (a tiny test set's
# usual case) can sit within 1e-4 of the boundary on every image.
BORDERLINE_MARGIN = 0.05


def skew_problems(served: dict[str, Any]) -> list[str]:
    """What is wrong with ``agreement``'s answer for the export check (empty when nothing)."""
    problems = []
    if served["undecodable"]:
        problems.append(
            f"serve_bytes could not decode {served['undecodable']} of the {served['n']} test "
            "files the model was scored on"
        )
    borderline = served.get("borderline_disagreements", 0)
    if served["label_agreement"] + borderline / max(served["n"], 1) < MIN_LABEL_AGREEMENT:
        problems.append(
            f"serve_bytes gave the training path's label on {served['label_agreement']:.1%} of "
            f"the test files ({borderline} of the others borderline; at least "
            f"{MIN_LABEL_AGREEMENT:.1%} needed): the in-graph decoder differs from the "
            "training decoder"
        )
    return problems


def agreement(
    reference_probs: np.ndarray, served: dict[str, np.ndarray], labels: np.ndarray
) -> dict[str, Any]:
    """How ``serve_bytes`` on the original files compares with the training path's
    predictions on the cached pixels of the same images. ``borderline_disagreements``: the
    images whose label differs although the training path's probabilities for both labels
    were within ``BORDERLINE_MARGIN`` (a decoder's rounding may flip them)."""
    ok = served["class_index"] >= 0
    reference = np.argmax(reference_probs, axis=1)
    same = served["class_index"] == reference
    rows = np.flatnonzero(ok & ~same)
    margin = (
        reference_probs[rows, reference[rows]] - reference_probs[rows, served["class_index"][rows]]
    )
    diff = np.abs(served["probabilities"][ok] - reference_probs[ok])
    return {
        "n": len(labels),
        "undecodable": int((~ok).sum()),
        "label_agreement": float(np.mean(same)),
        "borderline_disagreements": int((margin <= BORDERLINE_MARGIN).sum()),
        "max_probability_difference": float(diff.max()) if diff.size else 0.0,
        "accuracy": float(np.mean(served["class_index"] == labels)),
    }
