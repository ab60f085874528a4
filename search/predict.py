"""``python -m search.predict MODEL_DIR IMG...``: classify images with an exported model.

MODEL_DIR is ``RUN_DIR/best_model`` (or the run directory itself). Images are decoded and
resized exactly as in training, then fed to the SavedModel's ``serve`` signature.
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


def predict(model_dir: Path, paths: Sequence[Path]) -> list[dict[str, Any]]:
    import tensorflow as tf

    if (model_dir / "best_model" / "labels.json").exists():
        model_dir = model_dir / "best_model"
    meta_path = model_dir / "labels.json"
    if not meta_path.exists():
        raise FileNotFoundError(
            f"{str(model_dir)!r} is not an exported model (no labels.json); "
            "pass RUN_DIR/best_model."
        )
    meta = json.loads(meta_path.read_text())
    size = int(meta["image_size"])
    pixels = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    metas = decode_files(list(paths), size, out=pixels)
    serve = tf.saved_model.load(str(model_dir)).signatures["serve"]
    out: list[dict[str, Any]] = []
    ok = [i for i, m in enumerate(metas) if m.error is None]
    probs: dict[int, np.ndarray] = {}
    if ok:
        batch = pixels[ok]  # uint8: the model scales its input itself
        result = serve(tf.constant(batch))
        values = next(iter(result.values())).numpy()
        probs = dict(zip(ok, values, strict=True))
    for i, path in enumerate(paths):
        if i in probs:
            k = int(np.argmax(probs[i]))
            out.append(
                {"path": str(path), "label": meta["classes"][k], "probability": float(probs[i][k])}
            )
        else:
            out.append(
                {"path": str(path), "label": None, "probability": None, "error": metas[i].error}
            )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.predict", description=__doc__)
    p.add_argument("model_dir", type=Path)
    p.add_argument("images", type=Path, nargs="+")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    args = p.parse_args(argv)
    missing = [str(i) for i in args.images if not i.is_file()]
    if missing:
        print(f"error: image(s) not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        rows = predict(args.model_dir, args.images)
    except FileNotFoundError as exc:
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
