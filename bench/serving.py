"""``python -m bench.serving MODEL_DIR DATA_DIR``: how closely ``serve_bytes`` (decoding in the
SavedModel's graph) agrees with the training path (the image cache's decoder, then ``serve``).

For every image file below DATA_DIR: the pixels of both decoders (mean and 99th percentile of
the absolute difference per channel value), the predicted labels (share equal) and the largest
probability difference. With ``--size N`` and no trained model, a model with random weights at
N pixels is exported first, to measure the decoders at another size (labels then only compare
two paths through the same random function).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from search.quiet import import_tensorflow_quietly


def measure(model_dir: Path, files: list[Path], size: int, batch: int = 64) -> dict[str, float]:
    import tensorflow as tf

    from data_pipeline.images import decode_files
    from search.serving import BYTES_SIGNATURE, agreement, decode_batch, score_files

    loaded = tf.saved_model.load(str(model_dir))
    pixels = np.empty((len(files), size, size, 3), np.uint8)
    metas = decode_files(files, size, out=pixels)
    ok = [i for i, m in enumerate(metas) if m.error is None]
    files = [files[i] for i in ok]
    pixels = pixels[ok]
    serve = loaded.signatures["serve"]
    reference = np.concatenate(
        [
            serve(image=tf.constant(pixels[i : i + batch]))["output_0"].numpy()
            for i in range(0, len(files), batch)
        ]
    )
    served = score_files(loaded.signatures[BYTES_SIGNATURE], files, batch=batch)
    diffs = []
    for i in range(0, len(files), batch):
        data = tf.constant([p.read_bytes() for p in files[i : i + batch]])
        images, _ = decode_batch(data, size)
        diffs.append(np.abs(images.numpy().astype(np.int16) - pixels[i : i + batch]))
    diff = np.concatenate(diffs)
    result = agreement(reference, served, np.argmax(reference, axis=1))
    return {
        "size": size,
        "images": len(files),
        "pixel_mean_abs_diff": float(diff.mean()),
        "pixel_p99_abs_diff": float(np.percentile(diff, 99)),
        "pixel_max_abs_diff": int(diff.max()),
        "label_agreement": result["label_agreement"],
        "max_probability_difference": result["max_probability_difference"],
        "undecodable": result["undecodable"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--model-dir", type=Path, help="an exported best_model/ (trained)")
    p.add_argument("--size", type=int, default=None, help="random-weight model at this size")
    args = p.parse_args(argv)
    import_tensorflow_quietly()
    files = sorted(f for f in args.data_dir.rglob("*") if f.suffix.lower() in (".jpg", ".jpeg"))
    if args.model_dir:
        size = int(json.loads((args.model_dir / "labels.json").read_text())["image_size"])
        print(json.dumps(measure(args.model_dir, files, size)))
        return 0
    from models.alexnet import AlexNetParams, build_alexnet
    from search.serving import export_saved_model

    size = args.size or 227
    model = build_alexnet(AlexNetParams(image_size=size, width=0.25, dense_units=64))
    with tempfile.TemporaryDirectory() as tmp:
        export_saved_model(model, Path(tmp) / "m", image_size=size, classes=("cat", "dog"))
        print(json.dumps(measure(Path(tmp) / "m", files, size)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
