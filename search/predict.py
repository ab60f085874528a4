"""``python -m search.predict MODEL_DIR IMG...``: classify images with an exported model.

MODEL_DIR is ``RUN_DIR/best_model`` (or the run directory itself). By default images are
decoded and resized exactly as in training, then fed to the SavedModel's ``serve`` signature;
``--signature bytes`` sends the files' bytes to ``serve_bytes``, which decodes them in the
graph (as a deployed model does).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.images import decode_files
from search.quiet import import_tensorflow_quietly


class ModelError(ValueError):
    """MODEL_DIR is not a readable exported model: message and exit code 2."""


BATCH = 64  # images decoded and scored at a time: memory stays flat in the number of images


def load_model(model_dir: Path, signature: str = "serve") -> tuple[dict[str, Any], Any]:
    """The export's ``labels.json`` and one of its signatures, or a ``ModelError`` that says
    what is wrong with the folder."""
    import tensorflow as tf

    if (model_dir / "best_model" / "labels.json").exists():
        model_dir = model_dir / "best_model"
    meta_path = model_dir / "labels.json"
    if not meta_path.exists():
        raise ModelError(
            f"{str(model_dir)!r} is not an exported model (no labels.json); "
            "pass RUN_DIR/best_model."
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        size, classes = int(meta["image_size"]), list(meta["classes"])
        if not 1 <= size <= 4096 or len(classes) < 2:
            raise ValueError(f"image_size {size}, {len(classes)} classes")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{meta_path} is damaged ({type(exc).__name__}: {exc}); export the model again "
            "with python -m search.export RUN_DIR."
        ) from None
    try:
        serve = tf.saved_model.load(str(model_dir)).signatures[signature]
    except Exception as exc:  # TensorFlow raises many types for a damaged SavedModel
        raise ModelError(
            f"{str(model_dir)!r} holds no loadable SavedModel with a {signature!r} signature "
            f"({type(exc).__name__}: {str(exc)[:200]}); export it again with "
            "python -m search.export RUN_DIR."
        ) from None
    return {**meta, "image_size": size, "classes": classes}, serve


def predict(
    model_dir: Path, paths: Sequence[Path], *, batch: int = BATCH, signature: str = "pixels"
) -> list[dict[str, Any]]:
    """Label and probability for each image (or its decoding error), ``batch`` at a time;
    ``signature`` ``pixels`` decodes here as in training, ``bytes`` in the model's graph."""
    import tensorflow as tf

    if signature == "bytes":
        return _predict_bytes(model_dir, paths, batch=batch)
    meta, serve = load_model(model_dir)
    size = meta["image_size"]
    out: list[dict[str, Any]] = []
    pixels = np.empty((batch, size, size, 3), dtype=np.uint8)
    for start in range(0, len(paths), batch):
        chunk = list(paths[start : start + batch])
        metas = decode_files(chunk, size, out=pixels[: len(chunk)])
        ok = [i for i, m in enumerate(metas) if m.error is None]
        probs: dict[int, np.ndarray] = {}
        if ok:
            result = serve(tf.constant(pixels[ok]))  # uint8: the model scales its input itself
            probs = dict(zip(ok, next(iter(result.values())).numpy(), strict=True))
        for i, path in enumerate(chunk):
            if i in probs:
                k = int(np.argmax(probs[i]))
                out.append(
                    {
                        "path": str(path),
                        "label": meta["classes"][k],
                        "probability": float(probs[i][k]),
                    }
                )
            else:
                out.append(
                    {"path": str(path), "label": None, "probability": None, "error": metas[i].error}
                )
    return out


def _predict_bytes(model_dir: Path, paths: Sequence[Path], *, batch: int) -> list[dict[str, Any]]:
    from search.serving import BYTES_SIGNATURE, score_files

    _, serve_bytes = load_model(model_dir, BYTES_SIGNATURE)
    out = score_files(serve_bytes, paths, batch=batch)
    rows: list[dict[str, Any]] = []
    for i, path in enumerate(paths):
        k = int(out["class_index"][i])
        if k < 0:
            error = out["error"][i].decode()
            rows.append({"path": str(path), "label": None, "probability": None, "error": error})
        else:
            label = out["class_name"][i].decode()
            rows.append(
                {
                    "path": str(path),
                    "label": label,
                    "probability": float(out["probabilities"][i][k]),
                }
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m search.predict", description=(__doc__ or "").replace("``", "")
    )
    p.add_argument(
        "model_dir",
        type=Path,
        help="an exported model: RUN_DIR/best_model, or the run directory itself",
    )
    p.add_argument(
        "images", type=Path, nargs="+", help="image files to classify (JPEG, PNG, GIF, BMP, WebP)"
    )
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument(
        "--batch-size", type=int, default=BATCH, help="images per batch (default %(default)s)"
    )
    p.add_argument(
        "--signature",
        choices=("pixels", "bytes"),
        default="pixels",
        help="pixels: decode here as in training, then 'serve' (default); bytes: send the "
        "encoded files to 'serve_bytes', which decodes in the model's graph",
    )
    args = p.parse_args(argv)
    import_tensorflow_quietly()
    if not 1 <= args.batch_size <= 4096:
        print(f"error: --batch-size must be 1-4096, but got {args.batch_size}.", file=sys.stderr)
        return 2
    missing = [str(i) for i in args.images if not i.is_file()]
    if missing:
        print(f"error: image(s) not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        rows = predict(args.model_dir, args.images, batch=args.batch_size, signature=args.signature)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            verdict = (
                f"{r['label']} ({r['probability']:.3f})"
                if r["label"]
                else f"unreadable: {r['error']}"
            )
            print(f"{r['path']}: {verdict}")
    return 0 if all(r["label"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
