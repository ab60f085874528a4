"""The model card written beside an exported model: what it is, how good it is, how to call it.

``best_model/model_card.json`` (for programs and the report) and ``best_model/README.md`` (for
people) say what the model was trained on (split sizes, classes), its test accuracy with a 95%
interval (confirmed over seeds against the baseline when the run has a confirmation, else the
exported model's own, marked unconfirmed), its parameters, its preprocessing, the library
versions, and three ways to call it. Each of the three is run by ``tests/test_serving.py`` on a
tiny exported model, as written here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from search.confirm import NOT_MEASURED, refit_ending, tta_words
from search.rundir import RunConfig
from search.serving import BORDERLINE_MARGIN, BYTES_INPUT, BYTES_SIGNATURE
from search.stats import accuracy_ci

EXAMPLE_IMAGE = "cat.jpg"  # the image the usage examples send; any JPEG/PNG/GIF/BMP/WebP will do

PYTHON = f"""import tensorflow as tf

model = tf.saved_model.load("best_model")
serve_bytes = model.signatures["{BYTES_SIGNATURE}"]
with open("{EXAMPLE_IMAGE}", "rb") as f:
    out = serve_bytes({BYTES_INPUT}=tf.constant([f.read()]))
print(out["class_name"].numpy()[0].decode(), out["probabilities"].numpy()[0])"""

SAVED_MODEL_CLI = [
    "python -c \"import numpy as np; np.save('images.npy', "
    f"np.array([open('{EXAMPLE_IMAGE}', 'rb').read()], dtype=object))\"",
    f"saved_model_cli run --dir best_model --tag_set serve --signature_def {BYTES_SIGNATURE} "
    f"--inputs {BYTES_INPUT}=images.npy",
]

REST_BODY = {"signature_name": BYTES_SIGNATURE, "inputs": {BYTES_INPUT: [{"b64": "<BASE64>"}]}}
REST_NOTE = (
    "TensorFlow Serving's REST API (POST /v1/models/NAME:predict): replace <BASE64> with the "
    f"base64 of {EXAMPLE_IMAGE}'s bytes, e.g. "
    f'base64 -w0 {EXAMPLE_IMAGE}; TF Serving decodes {{"b64": ...}} values into bytes.'
)

PREPROCESSING = (
    "serve_bytes: encoded JPEG, PNG, GIF, BMP (24 or 32 bits) or still WebP of any size, "
    "decoded in the graph as in training (the same pixels within one grey level): JPEGs at "
    "the largest DCT scale (1/2, 1/4, 1/8) that keeps the short side at least S, fast "
    "integer IDCT, plain chroma upsampling; CMYK as TensorFlow converts it; 16-bit greys "
    "by their high byte; transparency (alpha, tRNS, a GIF's transparent colour) on white; "
    "RGB; "
    "bilinear resize to S x S (half-pixel centres, no antialiasing), rounded to uint8. "
    "serve: uint8 RGB pixels (None, S, S, 3) already decoded and resized that way. The model "
    "divides by 255 itself."
)


def build_card(
    config: RunConfig,
    record: dict[str, Any],
    *,
    confirmed: dict[str, Any] | None,
) -> dict[str, Any]:
    """The card's content. ``record`` is the export's (``export.json``) fields; ``confirmed``
    the run's confirmed comparison (``search.confirm.evidence``), if it has one."""

    n_test = int(record["n_test"])
    own = float(record["test_accuracy_in_memory"])
    on_test = bool(record.get("trained_on_test"))
    accuracy: dict[str, Any] = {
        # --refit all: the test images trained it, so there is no own score to give
        "test_accuracy": None if on_test else own,
        "test_ci95": None if on_test else list(accuracy_ci(own, n_test)),
        "what": NOT_MEASURED
        if on_test
        else f"this model on {n_test} test images that chose nothing in its training",
        "confirmed": None,
    }
    if confirmed and confirmed.get("winner"):
        win, base = confirmed["winner"], confirmed.get("baseline") or {}
        accuracy["confirmed"] = {
            "seeds": confirmed.get("confirm_seeds"),
            "tuned_test_accuracy_seeds": win.get("test_accuracy_seeds"),
            "tuned_test_accuracy_mean": win.get("test_accuracy_mean"),
            "baseline_test_accuracy_mean": base.get("test_accuracy_mean"),
            "delta_points": confirmed.get("delta_points"),
            "delta_ci95": confirmed.get("delta_ci95"),
            "verdict": confirmed.get("verdict"),
            "sentence": confirmed.get("sentence"),
        }
    trained_on = ["train", "validation"] if record.get("trained_on_validation") else ["train"]
    trained_on += ["test"] if on_test else []
    ending = refit_ending(int(record.get("averaged_epochs") or 1))
    refits = len(record.get("source_seeds") or [])
    if refits > 1:  # --refit-seeds
        ending = (
            f"{refits} times with different seeds, each {ending}, their class probabilities "
            "averaged"
        )
    tta = str(record.get("tta", "none"))
    if tta == "flip":
        ending += f"; {tta_words(tta)}"
    if on_test:
        shipped = (
            f"the winner refitted on train + validation + test once the verdict was settled "
            f"({ending}), with --refit all: no image is left to score it"
        )
    elif record.get("trained_on_validation"):
        shipped = (
            f"the winner refitted on train + validation once every choice was made ({ending}); "
            "its test accuracy is measured once, on images no choice used"
        )
    else:
        shipped = "a training run on train, its epoch chosen on validation"
        chosen = (confirmed or {}).get("shipped") or {}
        if chosen.get("what") and chosen.get("run_id") == record.get("source_run"):
            shipped = f"{chosen['what']}: {shipped}"  # which run, and why not a refit
    return {
        "model": "AlexNet (alexnet-tuner), a Keras model exported as a TensorFlow SavedModel",
        "source": record.get("source_run") or f"trial {record['source_trial']}",
        "shipped": shipped,
        "trained_on": {
            "splits": trained_on,
            "data": Path(str(config.data_config.data_dir)).name,
            "layout": config.data.get("layout"),
            "split_sizes": {s: config.split_size(s) for s in ("train", "validation", "test")},
            "image_size": config.image_size,
        },
        "classes": list(config.classes),
        "accuracy": accuracy,
        "test_time": tta_words(tta),
        "parameters": record["params"],
        "preprocessing": PREPROCESSING,
        "signatures": {
            "serve": "image: uint8 (None, S, S, 3) -> output_0: float32 (None, classes)",
            BYTES_SIGNATURE: f"{BYTES_INPUT}: string (None,) -> probabilities, class_index "
            "(-1: undecodable), class_name, error",
        },
        "serve_bytes_agreement": record.get("serve_bytes"),
        "size": {
            "parameters": record.get("n_params"),
            "float32_weights_bytes": 4 * int(record.get("n_params") or 0),
        },
        "latency_ms_per_image": {
            "batch_1": record.get("latency_ms_per_image"),
            "batch_32": record.get("latency_ms_per_image_batch_32"),
            "measured_on": "the machine that exported it, CPU, the serve signature, median "
            "of 7 calls",
        },
        "chosen": _chosen(confirmed),
        "traded": _traded(confirmed),
        "versions": config.versions,
        "usage": {
            "python": PYTHON,
            "saved_model_cli": SAVED_MODEL_CLI,
            "tf_serving_rest_body": REST_BODY,
            "tf_serving_note": REST_NOTE,
        },
    }


def _chosen(confirmed: dict[str, Any] | None) -> str:
    """How the shipped configuration was chosen, and on which images, in one line."""
    if not confirmed or not confirmed.get("winner"):
        return "the search's best trial by validation accuracy; no retraining over seeds judged it"
    sel = confirmed.get("selection") or {}
    seeds = confirmed.get("confirm_seeds")
    ranked = sel.get("candidates") or []
    if len(ranked) > 1:
        how = (
            f"the best of the search's top {len(ranked)} configurations, each retrained with "
            f"{ranked[0].get('seeds')} seeds, validated on "
            f"{sel.get('validated_on', 'the validation images')}, never on test, and ranked "
            f"by the {sel.get('rule')}"
        )
    else:
        how = "the search's best configuration by validation accuracy"
    return (
        f"{how}; then it and the blog's configuration were trained with {seeds} fresh seeds "
        "(the blog's first: the search's baseline run) and scored once on the test images "
        "for the verdict above, which no choice used"
    )


def _traded(confirmed: dict[str, Any] | None) -> str:
    """What the shipped model gave up for its size (``--select smallest``), in one line."""
    confirmed = confirmed or {}
    smaller = confirmed.get("smaller")
    if not smaller:
        return (
            "nothing: the best configuration is shipped (run with --select smallest to "
            "look for a smaller equivalent one)"
        )
    if smaller.get("ships"):
        return (
            f"{smaller['times_smaller']:.1f}x fewer parameters than the best configuration "
            f"(trial {smaller['winner_trial_id']}), for a test accuracy difference of "
            f"{smaller['delta_points']:+.1f} points ({smaller['interval']}): equivalent within "
            f"+-{confirmed.get('margin_points', 2.0):g} points"
        )
    return f"nothing: the best configuration is shipped; {smaller['why']}"


def card_markdown(card: dict[str, Any]) -> str:
    acc = card["accuracy"]
    if acc["test_accuracy"] is None:
        accuracy = f"- **Test accuracy**: {acc['what']}.\n"
    else:
        lo, hi = acc["test_ci95"]
        accuracy = (
            f"- **Test accuracy**: {acc['test_accuracy']:.4f} (95% CI {lo:.3f}-{hi:.3f}): "
            f"{acc['what']}.\n"
        )
    confirmed = acc["confirmed"]
    verdict = (
        f"- **Confirmed against the blog's configuration**: {confirmed['sentence']}\n"
        if confirmed and confirmed.get("sentence")
        else "- **Unconfirmed**: the run did not retrain its winner and the baseline over seeds.\n"
    )
    sizes = ", ".join(f"{k} {v:,}" for k, v in card["trained_on"]["split_sizes"].items())
    if card.get("chosen"):
        verdict += f"- **How it was chosen**: {card['chosen']}.\n"
    verdict += f"- **What was shipped**: {card.get('shipped', '')}.\n"
    size, latency = card.get("size") or {}, card.get("latency_ms_per_image") or {}
    if size.get("parameters"):
        verdict += (
            f"- **Size**: {size['parameters']:,} parameters, "
            f"{size['float32_weights_bytes'] / 2**20:,.1f} MiB of float32 weights.\n"
        )
    if latency.get("batch_1") is not None and latency.get("batch_32") is not None:
        verdict += (
            f"- **Latency** ({latency['measured_on']}): {latency['batch_1']:.1f} ms for one "
            f"image, {latency['batch_32']:.1f} ms per image in batches of 32.\n"
        )
    if card.get("traded"):
        verdict += f"- **Traded for size**: {card['traded']}.\n"
    params = ", ".join(f"{k}={v}" for k, v in card["parameters"].items())
    versions = ", ".join(f"{k} {v}" for k, v in card["versions"].items())
    agree = card.get("serve_bytes_agreement") or {}
    agreement = (
        f"On the {agree['n']} test images, serve_bytes from the original files gives the "
        f"training path's label for {100 * agree['label_agreement']:.2f}% of them"
        f"{_borderline(agree)} (largest "
        f"probability difference {agree['max_probability_difference']:.2g}; accuracy "
        f"{agree['accuracy']:.4f}).\n\n"
        if agree
        else ""
    )
    usage = card["usage"]
    return f"""# Model card: {card["source"]}

{card["model"]}.

- **Trained on**: {card["trained_on"]["data"]} ({card["trained_on"]["layout"]} layout), {sizes}
  images; input {card["trained_on"]["image_size"]}x{card["trained_on"]["image_size"]} RGB.
- **Classes**: {", ".join(card["classes"])} (class_index in this order).
{accuracy}{verdict}- **Parameters**: {params}.
- **Versions**: {versions}.

## Preprocessing

{card["preprocessing"]}

{agreement}## Signatures

- `serve`: {card["signatures"]["serve"]}
- `{BYTES_SIGNATURE}`: {card["signatures"][BYTES_SIGNATURE]}

## Three ways to call it (from the folder that holds `best_model/` and `{EXAMPLE_IMAGE}`)

Python:

```python
{usage["python"]}
```

`saved_model_cli`:

```bash
{chr(10).join(usage["saved_model_cli"])}
```

{usage["tf_serving_note"]}

```json
{json.dumps(usage["tf_serving_rest_body"], indent=2)}
```
"""


def _borderline(agree: dict[str, Any]) -> str:
    """The disagreements a decoder's rounding explains (``search.serving.agreement``)."""
    n = agree.get("borderline_disagreements", 0)
    if not n:
        return ""
    return (
        f", and of the others {n} borderline (the training path's probabilities for the two "
        f"labels within {BORDERLINE_MARGIN})"
    )


def write_card(model_dir: Path, card: dict[str, Any]) -> None:
    (model_dir / "model_card.json").write_text(json.dumps(card, indent=2, default=str))
    (model_dir / "README.md").write_text(card_markdown(card))
