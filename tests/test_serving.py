"""The exported SavedModel's two signatures on a tiny model, and its model card's three ways to
call it, run as the card writes them."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data_pipeline.images import decode_files
from models.alexnet import AlexNetParams, build_alexnet
from search.model_card import EXAMPLE_IMAGE, build_card, card_markdown, write_card
from search.options import SearchOptions
from search.rundir import RunConfig
from search.serving import (
    BYTES_INPUT,
    BYTES_SIGNATURE,
    agreement,
    export_saved_model,
    skew_problems,
)
from search.space import DEFAULT_SPACE

SIZE = 67


def _photo(seed: int, w: int, h: int) -> np.ndarray:
    """A smooth, photo-like RGB image (gradients and blobs, a little noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [
            127 + 100 * np.sin(x / rng.uniform(8, 40) + c) * np.cos(y / rng.uniform(8, 40) - c)
            for c in range(3)
        ],
        axis=-1,
    )
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("serving")
    model = build_alexnet(AlexNetParams(image_size=SIZE, width=0.125, dense_units=8))
    # weights that make the two classes depend on the picture, not on a constant bias
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in model.get_weights()])
    export_saved_model(model, root / "best_model", image_size=SIZE, classes=("cat", "dog"))
    images = root / "images"
    images.mkdir()
    files = []
    for i, (w, h) in enumerate([(500, 375), (320, 480), (140, 90), (67, 67), (1024, 700)]):
        path = images / f"photo{i}.jpg"
        Image.fromarray(_photo(i, w, h)).save(path, quality=90)
        files.append(path)
    rgba = _photo(7, 200, 150)
    alpha = np.full((*rgba.shape[:2], 1), 128, np.uint8)
    Image.fromarray(np.concatenate([rgba, alpha], axis=-1), "RGBA").save(images / "rgba.png")
    Image.fromarray(_photo(8, 120, 160)[..., 0], "L").save(images / "gray.png")
    Image.fromarray(_photo(9, 150, 150)).save(images / "still.gif")
    Image.fromarray(_photo(10, 180, 120)).save(images / "plain.bmp")
    files += [images / n for n in ("rgba.png", "gray.png", "still.gif", "plain.bmp")]
    return {"root": root, "model": model, "files": files}


def _training_path(model, files: list[Path]) -> np.ndarray:
    pixels = np.empty((len(files), SIZE, SIZE, 3), np.uint8)
    metas = decode_files(files, SIZE, out=pixels)
    assert all(m.error is None for m in metas)
    return pixels


def _served(probs: np.ndarray) -> dict[str, np.ndarray]:
    return {"probabilities": probs, "class_index": np.argmax(probs, axis=1)}


def test_a_label_flipped_on_an_undecided_image_is_no_skew() -> None:
    """A model near chance (8 test images, CI of session 28) flips a label for a rounding of
    1e-5: the export check passes. The same flip where the model was sure is a skew, and
    flips beyond 0.5% of the images fail even when some of them are borderline."""
    sure = np.tile([[0.9, 0.1]], (8, 1))
    undecided = sure.copy()
    undecided[3] = [0.500004, 0.499996]
    rounded = undecided.copy()
    rounded[3] = [0.499994, 0.500006]
    by_bytes = agreement(undecided, _served(rounded), np.zeros(8, int))
    assert by_bytes["label_agreement"] == 7 / 8 and by_bytes["borderline_disagreements"] == 1
    assert skew_problems(by_bytes) == []
    swapped = sure.copy()
    swapped[3] = [0.1, 0.9]  # the decoder turned a sure cat into a sure dog
    skewed = agreement(sure, _served(swapped), np.zeros(8, int))
    assert skewed["borderline_disagreements"] == 0
    assert "differs from the training decoder" in skew_problems(skewed)[0]
    many = np.tile([[0.52, 0.48]], (400, 1))  # a borderline flip excuses itself only
    many[:3] = [[0.1, 0.9]]
    served = many.copy()
    served[:4] = [[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.47, 0.53]]
    mixed = agreement(many, _served(served), np.zeros(400, int))
    assert mixed["borderline_disagreements"] == 1 and skew_problems(mixed)
    served[1:3] = many[1:3]  # one sure flip in 400 and the borderline one: within 0.5%
    assert skew_problems(agreement(many, _served(served), np.zeros(400, int))) == []


def test_serve_bytes_decodes_as_training_does(exported: dict) -> None:
    loaded = tf.saved_model.load(str(exported["root"] / "best_model"))
    files = exported["files"]
    pixels = _training_path(exported["model"], files)
    served = loaded.signatures["serve"](image=tf.constant(pixels))
    reference = next(iter(served.values())).numpy()
    out = loaded.signatures[BYTES_SIGNATURE](
        **{BYTES_INPUT: tf.constant([p.read_bytes() for p in files])}
    )
    out = {k: v.numpy() for k, v in out.items()}
    labels = np.argmax(reference, axis=1)
    result = agreement(reference, out, labels)
    assert result["undecodable"] == 0 and result["label_agreement"] == 1.0
    assert result["max_probability_difference"] < 0.02
    assert [n.decode() for n in out["class_name"]] == [("cat", "dog")[k] for k in labels]
    assert set(out["error"]) == {b""}
    # the decoded pixels themselves: within one grey level of the training decoder's
    from search.serving import decode_batch

    images, ok = decode_batch(tf.constant([p.read_bytes() for p in files]), SIZE)
    diff = np.abs(images.numpy().astype(int) - pixels.astype(int))
    assert ok.numpy().all() and diff.max() <= 1


def test_bad_bytes_fail_only_their_own_element(exported: dict) -> None:
    loaded = tf.saved_model.load(str(exported["root"] / "best_model"))
    good = exported["files"][0].read_bytes()
    batch = [good, b"not an image at all", good[: len(good) // 3], b"", good]
    out = loaded.signatures[BYTES_SIGNATURE](**{BYTES_INPUT: tf.constant(batch)})
    index = out["class_index"].numpy()
    assert list(index[[1, 2, 3]]) == [-1, -1, -1]
    assert index[0] >= 0 and index[0] == index[4]
    assert all(e.startswith(b"cannot decode") for e in out["error"].numpy()[[1, 2, 3]])
    np.testing.assert_array_equal(out["probabilities"].numpy()[1], [0.0, 0.0])
    # the same model goes on serving
    again = loaded.signatures[BYTES_SIGNATURE](**{BYTES_INPUT: tf.constant([good])})
    assert again["class_index"].numpy()[0] == index[0]


def _config(tmp_path: Path) -> RunConfig:
    opts = SearchOptions(data_dir=tmp_path / "data", image_size=SIZE, width=0.125)
    return RunConfig(
        identity=opts.identity(),
        options=opts.to_dict(),
        space=DEFAULT_SPACE,
        data_config=opts.data_config(),
        classes=("cat", "dog"),
        data={"layout": "train-test", "counts": {"test": {"cat": 5, "dog": 5}}},
        versions={"tensorflow": tf.__version__},
        command="",
        created_at="",
    )


def test_the_model_cards_three_ways_run_as_written(
    exported: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    record = {
        "source_trial": "0003",
        "source_run": None,
        "n_test": 10,
        "test_accuracy_in_memory": 0.7,
        "params": AlexNetParams(image_size=SIZE).to_dict(),
        "serve_bytes": {
            "n": 10,
            "undecodable": 0,
            "label_agreement": 1.0,
            "max_probability_difference": 1e-6,
            "accuracy": 0.7,
        },
    }
    card = build_card(_config(tmp_path), record, confirmed=None)
    here = tmp_path / "deploy"
    shutil.copytree(exported["root"] / "best_model", here / "best_model")
    shutil.copy(exported["files"][0], here / EXAMPLE_IMAGE)
    write_card(here / "best_model", card)
    text = (here / "best_model" / "README.md").read_text()
    assert "0.7000 (95% CI 0.397-0.892)" in text and "Unconfirmed" in text
    assert json.loads((here / "best_model" / "model_card.json").read_text()) == json.loads(
        json.dumps(card)
    )
    loaded = tf.saved_model.load(str(here / "best_model"))
    expected = loaded.signatures[BYTES_SIGNATURE](
        **{BYTES_INPUT: tf.constant([(here / EXAMPLE_IMAGE).read_bytes()])}
    )
    name = expected["class_name"].numpy()[0].decode()
    usage = card["usage"]

    # 1. Python, in this process, from the folder the card speaks of
    monkeypatch.chdir(here)
    printed: list[str] = []
    exec(usage["python"], {"print": lambda *a: printed.append(" ".join(map(str, a)))})
    assert printed and printed[0].startswith(name)

    # 2. saved_model_cli, as shell commands
    for command in usage["saved_model_cli"]:
        # as from an activated environment: its scripts (saved_model_cli) on PATH
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        done = subprocess.run(
            command, shell=True, cwd=here, capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr[-2000:]
    assert f"[b'{name}']" in done.stdout and "class_index" in done.stdout

    # 3. the TF Serving REST body, filled in as the note says and decoded as TF Serving does
    #    (TF Serving itself is not installed here: the body's shape and content are checked)
    body = json.loads(
        json.dumps(usage["tf_serving_rest_body"]).replace(
            "<BASE64>", base64.b64encode((here / EXAMPLE_IMAGE).read_bytes()).decode()
        )
    )
    signature = loaded.signatures[body["signature_name"]]
    inputs = {
        key: tf.constant([base64.b64decode(v["b64"]) for v in values])
        for key, values in body["inputs"].items()
    }
    assert signature(**inputs)["class_name"].numpy()[0].decode() == name


def test_a_confirmed_card_carries_the_verdict(tmp_path: Path) -> None:
    record = {
        "source_trial": "0003",
        "source_run": "confirm-0003-s1",
        "n_test": 400,
        "test_accuracy_in_memory": 0.75,
        "params": AlexNetParams().to_dict(),
    }
    confirmed = {
        "confirm_seeds": 3,
        "winner": {"test_accuracy_seeds": [0.74, 0.75, 0.76], "test_accuracy_mean": 0.75},
        "baseline": {"test_accuracy_mean": 0.64},
        "delta_points": 11.0,
        "delta_ci95": [7.0, 15.0],
        "verdict": "better",
        "sentence": "On 400 untouched test images, 3 seeds each: tuned 75.0% vs blog 64.0%, "
        "+11.0 points (95% CI +7.0 to +15.0): better.",
    }
    card = build_card(_config(tmp_path), record, confirmed=confirmed)
    assert card["accuracy"]["confirmed"]["verdict"] == "better"
    assert "tuned 75.0% vs blog 64.0%" in card_markdown(card)
    assert "the search's best configuration by validation accuracy" in card["chosen"]
    # with a selection stage, the card says how it ranked and that test chose nothing
    rule = "mean over seeds of the validation accuracy of each run's last epochs, minus ..."
    confirmed["selection"] = {"rule": rule, "candidates": [{"seeds": 3}] * 3}
    text = card_markdown(build_card(_config(tmp_path), record, confirmed=confirmed))
    chosen = re.search(r"- \*\*How it was chosen\*\*: (.*)", text).group(1)  # type: ignore[union-attr]
    assert "top 3 configurations, each retrained with 3 seeds" in chosen
    assert "validated on the validation images, never on test" in chosen
    assert rule in chosen and "3 fresh seeds" in chosen
    where = "a fold of the train images per seed, the size of validation (...)"
    confirmed["selection"]["validated_on"] = where
    text = card_markdown(build_card(_config(tmp_path), record, confirmed=confirmed))
    assert f"validated on {where}, never on test" in text
    # a judge run shipped in place of a refit that did not learn: the card says why
    why = "the winner's judge run with the best validation accuracy (the refit did not learn)"
    confirmed["shipped"] = {"run_id": "confirm-0003-s1", "what": why}
    card = build_card(_config(tmp_path), record, confirmed=confirmed)
    assert card["shipped"].startswith(why) and "epoch chosen on validation" in card["shipped"]


def test_predict_can_use_either_signature(
    exported: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    from search import predict

    model_dir = exported["root"] / "best_model"
    (model_dir / "labels.json").write_text(
        json.dumps({"classes": ["cat", "dog"], "image_size": SIZE})
    )
    files = [str(p) for p in exported["files"][:3]]
    rows = {}
    for signature in ("pixels", "bytes"):
        capsys.readouterr()
        assert predict.main(["--json", "--signature", signature, str(model_dir), *files]) == 0
        rows[signature] = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in rows["pixels"]] == [r["label"] for r in rows["bytes"]]
    for a, b in zip(rows["pixels"], rows["bytes"], strict=True):
        assert a["probability"] == pytest.approx(b["probability"], abs=0.02)
    bad = exported["root"] / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    capsys.readouterr()
    assert predict.main(["--json", "--signature", "bytes", str(model_dir), str(bad)]) == 1
    assert json.loads(capsys.readouterr().out)[0]["error"].startswith("cannot decode")


def test_the_exported_serve_signature_is_unchanged(exported: dict) -> None:
    loaded = tf.saved_model.load(str(exported["root"] / "best_model"))
    serve = loaded.signatures["serve"]
    _args, kwargs = serve.structured_input_signature
    assert list(kwargs) == ["image"] and kwargs["image"].dtype == tf.uint8
    assert list(serve.structured_outputs) == ["output_0"]


def _png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header and IHDR declaring ``width`` x ``height`` (a decompression bomb's
    shape: a few hundred bytes that claim gigabytes of pixels), then a token IDAT."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_by_both_decoders_before_decoding(
    exported: dict,
) -> None:
    import time

    from data_pipeline.images import pil_decode
    from search.serving import MAX_PIXELS

    bomb = _png_declaring(16000, 16000)
    assert MAX_PIXELS < 16000 * 16000
    meta, pixels = pil_decode(bomb)
    assert pixels is None and "too large" in (meta.error or "")  # the training decoder
    loaded = tf.saved_model.load(str(exported["root"] / "best_model"))
    good = exported["files"][0].read_bytes()
    t0 = time.perf_counter()
    out = loaded.signatures[BYTES_SIGNATURE](**{BYTES_INPUT: tf.constant([good, bomb, good])})
    assert time.perf_counter() - t0 < 10  # nothing was decoded (10 GB and a minute otherwise)
    index = out["class_index"].numpy()
    assert index[1] == -1 and index[0] == index[2] >= 0
    assert b"more than" in out["error"].numpy()[1]
    # just under the bound is not refused for its size (here: its token pixel data is short)
    from search.serving import _declared_pixels

    assert int(_declared_pixels(tf.constant(_png_declaring(9000, 9000)))) == 81_000_000
    for name in ("rgba.png", "still.gif", "plain.bmp", "photo0.jpg"):
        path = next(f for f in exported["files"] if f.name == name)
        w, h = Image.open(path).size
        assert int(_declared_pixels(tf.constant(path.read_bytes()))) == w * h, name


def test_an_empty_batch_gets_an_empty_answer_from_either_signature(exported: dict) -> None:
    loaded = tf.saved_model.load(str(exported["root"] / "best_model"))
    out = loaded.signatures["serve"](image=tf.zeros((0, SIZE, SIZE, 3), tf.uint8))
    assert next(iter(out.values())).shape == (0, 2)
    out = loaded.signatures[BYTES_SIGNATURE](**{BYTES_INPUT: tf.constant([], tf.string)})
    assert out["probabilities"].shape == (0, 2) and out["class_index"].shape == (0,)
