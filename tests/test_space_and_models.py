"""The search space (pinned), its two translators, and the AlexNet builder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import optuna
import pandas as pd
import pytest

from models.alexnet import (
    AlexNetParams,
    build_alexnet,
    compile_alexnet,
    multiply_adds,
    smallest_image_size,
)
from models.checkpoint import load_weights, save_weights
from models.lrn import LocalResponseNormalization
from reports import figures as fig
from reports.tables import results_rows
from search.plan import BLOG_PARAMS
from search.space import (
    DEFAULT_SPACE,
    BoolParam,
    FixedParam,
    FloatParam,
    IntParam,
    SpaceError,
    baseline_values,
    complete,
    load_space,
    parse_space,
    resolve,
    sample,
    suggest_optuna,
    to_keras_tuner,
    to_toml,
)


def test_default_space_and_baseline_are_pinned() -> None:
    pinned = (
        FloatParam("dropout", 0.0, 0.6, baseline=0.25, domain=(0.0, 0.95)),
        BoolParam("lrn", baseline=True),
        IntParam("dense_units", 512, 4096, baseline=4096, step=512, domain=(1, 65536)),
        FloatParam("learning_rate", 1e-5, 1e-3, baseline=1e-5, log=True, domain=(1e-8, 1.0)),
        FixedParam(
            "weight_decay",
            0.0,
            baseline=0.0,
            of=FloatParam("weight_decay", 1e-6, 1e-3, 0.0, log=True, domain=(0.0, 1.0)),
        ),
    )
    assert pinned == DEFAULT_SPACE
    assert baseline_values() == {
        "dropout": 0.25,
        "lrn": True,
        "dense_units": 4096,
        "learning_rate": 1e-5,
        "weight_decay": 0.0,
    }
    blog = resolve(baseline_values(), image_size=227, width=1.0, num_classes=2)
    assert blog == AlexNetParams()


def test_keras_tuner_translation() -> None:
    hp = to_keras_tuner(DEFAULT_SPACE)
    config = {h.name: h.get_config() for h in hp.space}
    # weight_decay is fixed (the blog has none): Keras Tuner does not hold it (see below)
    assert set(config) == {"dropout", "lrn", "dense_units", "learning_rate"}
    assert (config["dropout"]["min_value"], config["dropout"]["max_value"]) == (0.0, 0.6)
    assert config["learning_rate"]["sampling"] == "log"
    assert (
        config["dense_units"]["min_value"],
        config["dense_units"]["max_value"],
        config["dense_units"]["step"],
    ) == (512, 4096, 512)
    assert type(hp.space[1]).__name__ == "Boolean"


def test_optuna_translation_respects_the_space() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(30):
        trial = study.ask()
        values = suggest_optuna(trial, DEFAULT_SPACE)
        study.tell(trial, 0.5)
        seen.append(values)
    assert all(0.0 <= v["dropout"] <= 0.6 for v in seen)
    assert all(1e-5 <= v["learning_rate"] <= 1e-3 for v in seen)
    assert {v["dense_units"] for v in seen} <= set(range(512, 4097, 512))
    assert {v["lrn"] for v in seen} == {True, False}
    dists = study.trials[0].distributions
    assert dists["learning_rate"].log and dists["dense_units"].step == 512


def test_space_file_overrides_and_fixes(tmp_path: Path) -> None:
    f = tmp_path / "space.toml"
    f.write_text(
        "[learning_rate]\nlow = 1e-4\nhigh = 1e-2\n[lrn]\nvalue = false\n"
        "[dense_units]\nlow = 1024\nhigh = 2048\nstep = 1024\n"
    )
    space = load_space(f)
    assert space[0] == DEFAULT_SPACE[0]
    assert space[1] == FixedParam("lrn", False, baseline=True, of=DEFAULT_SPACE[1])
    assert space[2] == replace(DEFAULT_SPACE[2], low=1024, high=2048, step=1024)
    assert space[3] == replace(DEFAULT_SPACE[3], low=1e-4, high=1e-2)
    assert (space[2].baseline, space[3].baseline, space[3].log) == (4096, 1e-5, True)
    hp = to_keras_tuner(space)
    assert "lrn" not in hp.values  # fixed: Keras Tuner does not draw it
    assert complete(space, hp.values)["lrn"] is False


OPEN_WEIGHT_DECAY = "[weight_decay]\nlow = 1e-6\nhigh = 1e-3\n"


def test_a_space_file_opens_weight_decay_for_both_engines_the_model_and_the_figures() -> None:
    space = parse_space(OPEN_WEIGHT_DECAY)
    wd = next(p for p in space if p.name == "weight_decay")
    assert isinstance(wd, FloatParam) and (wd.low, wd.high, wd.log) == (1e-6, 1e-3, True)
    assert baseline_values(space)["weight_decay"] == 0.0  # the baseline stays the blog's
    assert "[weight_decay]\nlow = 1e-06\nhigh = 0.001\nlog = true" in to_toml(space)
    assert parse_space(to_toml(space)) == space
    hp = {h.name: h.get_config() for h in to_keras_tuner(space).space}
    assert hp["weight_decay"]["sampling"] == "log" and hp["weight_decay"]["max_value"] == 1e-3
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    rows = []
    for i in range(16):
        trial = study.ask()
        values = suggest_optuna(trial, space)
        # weight decay is the only thing that matters here
        score = 0.9 - 0.1 * (np.log10(values["weight_decay"]) + 6) / 3
        study.tell(trial, score)
        rows.append(
            {"trial_id": f"{i:04d}", "status": "completed", **values, "val_accuracy": score}
        )
    assert all(1e-6 <= r["weight_decay"] <= 1e-3 for r in rows)
    assert study.trials[0].distributions["weight_decay"].log
    params = resolve(rows[0], image_size=67, width=0.125, num_classes=2, space=space)
    assert params.weight_decay == rows[0]["weight_decay"]
    model = build_alexnet(params)
    assert len(model.losses) == 8  # an L2 term per kernel: 5 conv + 3 dense
    assert not build_alexnet(AlexNetParams(image_size=67, width=0.125)).losses
    trials = pd.DataFrame(rows)
    parallel = fig.parallel_info(trials, space)
    assert "log10(weight_decay)" in parallel.dimensions
    sl = fig.slice_info(trials, space)
    assert sl.axes["weight_decay"] == "log" and "weight_decay" in next(iter(sl.views.values()))
    imp = fig.importance_info(trials, space)
    assert max(imp.importances, key=imp.importances.get) == "weight_decay"
    rendered = results_rows(trials, space)[0]["display"]["weight_decay"]
    assert "e-0" in rendered  # printed as a log-range value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[dropout]\nlow = 0.7\nhigh = 0.2\n", "dropout: low must be below high"),
        ("[dropout]\nlow = 0.1\nhigh = 1.5\n", "dropout: range must lie within"),
        ("[learning_rate]\nlow = 0.0\n", "learning_rate"),
        ("[dense_units]\nlow = 100\nhigh = 1000\nstep = 7\n", "dense_units: step"),
        ("[momentum]\nlow = 0.1\n", "unknown parameter(s) ['momentum']"),
        ("[dropout]\nlo = 0.1\n", "unknown key(s) ['lo']"),
        ("[lrn]\nvalue = 3\n", "lrn: value must be true or false"),
        ("[dropout]\nvalue = 0.2\nlow = 0.1\n", "cannot be combined"),
        ("dropout = [", "not valid TOML"),
    ],
)
def test_space_file_errors_name_parameter_and_value(
    tmp_path: Path, text: str, message: str
) -> None:
    f = tmp_path / "space.toml"
    f.write_text(text)
    with pytest.raises(SpaceError, match=__import__("re").escape(message)):
        load_space(f)


def test_blog_model_has_the_blogs_parameters_and_shapes() -> None:
    model = build_alexnet(AlexNetParams())
    assert model.count_params() == BLOG_PARAMS == 58_289_538
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes == {
        "rescale": (227, 227, 3),
        "conv1": (55, 55, 96),
        "pool1": (27, 27, 96),
        "lrn1": (27, 27, 96),
        "conv2": (27, 27, 256),
        "pool2": (13, 13, 256),
        "lrn2": (13, 13, 256),
        "conv3": (13, 13, 384),
        "conv4": (13, 13, 384),
        "conv5": (13, 13, 256),
        "pool3": (6, 6, 256),
        "flatten": (9216,),
        "fc1": (4096,),
        "dropout1": (4096,),
        "fc2": (4096,),
        "dropout2": (4096,),
        "fc3": (2,),
    }
    assert isinstance(model.get_layer("lrn2"), LocalResponseNormalization)
    assert model.inputs[0].dtype == "uint8" and model.get_layer("rescale").scale == 1 / 255


def test_variants_and_invalid_sizes() -> None:
    no_lrn = build_alexnet(AlexNetParams(lrn=False, dense_units=512, image_size=128, width=0.5))
    assert not any(isinstance(layer, LocalResponseNormalization) for layer in no_lrn.layers)
    assert no_lrn.get_layer("conv1").filters == 48
    assert smallest_image_size() == 67
    build_alexnet(AlexNetParams(image_size=67))
    with pytest.raises(ValueError, match=r"image_size must be at least 67.*got 66"):
        build_alexnet(AlexNetParams(image_size=66))


@pytest.mark.parametrize(
    "params",
    [
        AlexNetParams(),
        AlexNetParams(lrn=False, dense_units=512, image_size=128, width=0.5),
        AlexNetParams(dense_units=100, image_size=99, width=0.3, num_classes=5),
    ],
)
def test_multiply_adds_are_the_built_models(params: AlexNetParams) -> None:
    """What the ETA's prior counts: every convolution's and dense layer's multiply-adds."""
    model = build_alexnet(params)
    conv = dense = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, _ = layer.output.shape
            conv += h * w * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, keras.layers.Dense):
            dense += int(np.prod(layer.kernel.shape))
    assert multiply_adds(params) == (conv, dense)


def test_draws_from_the_space_follow_its_priors() -> None:
    """The ETA's stand-in for trials not drawn yet: inside the ranges, on the grid, log
    parameters spread evenly over decades, fixed ones fixed; the same for a seed."""
    space = parse_space("[weight_decay]\nvalue = 1e-4\n[dense_units]\nlow = 1024\n")
    draws = sample(space, 2000, seed=3)
    assert draws == sample(space, 2000, seed=3) and draws != sample(space, 2000, seed=4)
    units = np.array([d["dense_units"] for d in draws])
    assert set(units) == set(range(1024, 4097, 512))
    assert all(isinstance(d["lrn"], bool) for d in draws)
    assert 0.45 < np.mean([d["lrn"] for d in draws]) < 0.55
    rates = np.array([d["learning_rate"] for d in draws])
    assert rates.min() >= 1e-5 and rates.max() <= 1e-3
    assert 0.45 < np.mean(rates < 1e-4) < 0.55  # 1e-4: the middle of 1e-5..1e-3 in decades
    dropout = np.array([d["dropout"] for d in draws])
    assert dropout.min() >= 0.0 and dropout.max() <= 0.6 and 0.27 < np.median(dropout) < 0.33
    assert {d["weight_decay"] for d in draws} == {1e-4}


def test_metric_is_sparse_categorical_accuracy() -> None:
    params = AlexNetParams(image_size=67, width=0.125, dense_units=8)
    model = build_alexnet(params)
    compile_alexnet(model, params, jit_compile=False)
    x = np.zeros((4, 67, 67, 3), np.uint8)
    y = np.array([0, 1, 1, 1])
    model.evaluate(x, y, verbose=0)
    assert any(
        isinstance(m, keras.metrics.SparseCategoricalAccuracy) for m in model.metrics[1].metrics
    )


def _lrn_reference(
    a: np.ndarray, r: int = 2, bias: float = 2.0, alpha: float = 1e-4, beta: float = 0.75
) -> np.ndarray:
    """AlexNet's section 3.3, written out: each channel over the sum of squares of its
    neighbours within ``r`` channels."""
    a = a.astype(np.float64)
    sq = np.pad(a**2, [(0, 0)] * (a.ndim - 1) + [(r, r)])
    sums = sum(sq[..., i : i + a.shape[-1]] for i in range(2 * r + 1))
    return a / (bias + alpha * sums) ** beta


@pytest.mark.parametrize(("radius", "beta"), [(2, 0.75), (1, 0.5), (0, 1.0), (5, 0.75)])
def test_lrn_values_and_gradients_are_tensorflows_own(radius: int, beta: float) -> None:
    """The layer computes LRN with a matrix product (faster to train on a CPU); its values
    and its gradient must be ``tf.nn.lrn``'s, at the edges of the channel axis too."""
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(1).normal(0, 30, (2, 3, 3, 7)).astype(np.float32))
    weights = tf.constant(np.random.default_rng(2).normal(0, 1, (2, 3, 3, 7)), tf.float32)
    layer = LocalResponseNormalization(depth_radius=radius, bias=2.0, alpha=1e-3, beta=beta)

    def value_and_grad(f: Any) -> tuple[np.ndarray, np.ndarray]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = f(x)
            loss = tf.reduce_sum(y * weights)
        return np.asarray(y), np.asarray(tape.gradient(loss, x))

    ours = value_and_grad(layer)
    theirs = value_and_grad(
        lambda v: tf.nn.local_response_normalization(
            v, depth_radius=radius, bias=2.0, alpha=1e-3, beta=beta
        )
    )
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-4, atol=1e-6)


def test_lrn_matches_its_definition_serialises_and_computes_in_float32(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(0, 30, (2, 3, 3, 8)).astype(np.float32)
    out = np.asarray(LocalResponseNormalization()(x))
    np.testing.assert_allclose(out, _lrn_reference(x), rtol=1e-5)
    # float16 squares overflow at 256 (65504): computed in float32, the layer stays finite
    big = np.full((1, 2, 2, 8), 300.0, np.float16)
    half = LocalResponseNormalization(dtype="mixed_float16")(big)
    assert keras.backend.standardize_dtype(half.dtype) == "float16"
    np.testing.assert_allclose(
        np.asarray(half, np.float32), _lrn_reference(big.astype(np.float32)), rtol=2e-3
    )
    bf16 = LocalResponseNormalization(dtype="mixed_bfloat16")(np.ones((1, 2, 2, 4), np.float32))
    assert keras.backend.standardize_dtype(bf16.dtype) == "bfloat16"  # no bf16 CPU kernel needed

    params = AlexNetParams(image_size=67, width=0.125, dense_units=8)
    model = build_alexnet(params)
    images = np.random.default_rng(0).integers(0, 256, (2, 67, 67, 3), dtype=np.uint8)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_array_equal(model.predict_on_batch(images), again.predict_on_batch(images))
    assert isinstance(again.get_layer("lrn1"), LocalResponseNormalization)
    assert again.get_layer("lrn1").get_config()["bias"] == 2.0
    ckpt = tmp_path / "w.npz"
    save_weights(model, ckpt)
    fresh = build_alexnet(params)
    load_weights(fresh, ckpt)
    np.testing.assert_array_equal(model.predict_on_batch(images), fresh.predict_on_batch(images))
    without = build_alexnet(replace(params, lrn=False))
    assert not any(isinstance(layer, LocalResponseNormalization) for layer in without.layers)


def _tiny_model_and_batch() -> tuple[AlexNetParams, Any, np.ndarray, np.ndarray]:
    """A compiled tiny AlexNet with its optimizer built, and one batch to train it on."""
    params = AlexNetParams(image_size=67, width=0.125, dense_units=8)
    model = build_alexnet(params)
    compile_alexnet(model, params)
    model.optimizer.build(model.trainable_variables)
    x = np.random.default_rng(0).integers(0, 256, (8, 67, 67, 3), dtype=np.uint8)
    return params, model, x, np.array([0, 1] * 4)


def _holding_writer() -> Any:
    """A checkpoint writer that has not written yet: it keeps the states it was given."""
    from models.checkpoint import CheckpointWriter

    class HoldingWriter(CheckpointWriter):
        def __init__(self) -> None:
            self.held: list[tuple] = []

        def save_state(self, state: tuple, path: Path) -> None:
            self.held.append(state)

    return HoldingWriter()


def test_epoch_state_reuses_its_arrays_but_never_those_it_handed_to_the_writer(
    tmp_path: Path,
) -> None:
    """Snapshots copy into the previous epoch's arrays (fresh ones cost 10x more); a flushed
    snapshot is the writer's until written: later epochs must not change it."""
    from models.checkpoint import EpochState

    _, model, x, y = _tiny_model_and_batch()
    model.train_on_batch(x, y)
    writer = _holding_writer()
    state = EpochState(tmp_path / "s.npz", writer, every_s=3600)
    state.snapshot(model, {"epochs": 1})
    first = state._latest[0][0] if state._latest else None
    model.train_on_batch(x, y)
    state.snapshot(model, {"epochs": 2})
    assert state._latest is not None and state._latest[0][0] is first  # reused, not new
    flushed = [w.copy() for w in model.get_weights()]
    flushed_slots = [v.numpy().copy() for v in model.optimizer.variables]
    state.flush()
    for _ in range(2):
        model.train_on_batch(x, y)
        state.snapshot(model, {"epochs": 3})
    assert not np.array_equal(model.get_weights()[0], flushed[0])  # training moved them
    weights, named = writer.held[0]
    assert json.loads(str(named["meta"]))["epochs"] == 2
    for got, want in zip(weights, flushed, strict=True):
        np.testing.assert_array_equal(got, want)
    for i, want in enumerate(flushed_slots):
        np.testing.assert_array_equal(named[f"opt_{i}"], want)
    latest, _ = state._latest
    for got, want in zip(latest, model.get_weights(), strict=True):  # and the latest is now
        np.testing.assert_array_equal(got, want)


def test_epoch_state_is_a_snapshot_and_restores_weights_and_optimizer(tmp_path: Path) -> None:
    """The state an interrupted trial resumes from: taken at an epoch's end, it does not move
    while training goes on, and it restores the weights and Adam's slots and step count."""
    from models.checkpoint import CheckpointWriter, EpochState, TailMean, load_training_state

    params, model, x, y = _tiny_model_and_batch()
    model.train_on_batch(x, y)
    writer = CheckpointWriter()
    state = EpochState(tmp_path / "epoch_state.npz", writer, every_s=3600)
    tail = TailMean(epochs=4, window=3)  # a refit's running mean: epochs 2, 3 and 4
    tail.add(1, model.get_weights())  # before its window: not counted
    tail.add(2, model.get_weights())
    state.snapshot(model, {"epochs": 2}, tail)
    expected = [w.copy() for w in model.get_weights()]
    slots = [v.numpy().copy() for v in model.optimizer.variables]
    model.train_on_batch(x, y)  # training goes on after the snapshot
    assert not (tmp_path / "epoch_state.npz").exists()  # kept in memory until a flush
    state.flush()
    writer.wait()
    writer.close()
    fresh = build_alexnet(params)
    compile_alexnet(fresh, params)
    fresh.optimizer.build(fresh.trainable_variables)
    resumed = TailMean(epochs=4, window=3)
    meta = load_training_state(fresh, tmp_path / "epoch_state.npz", tail=resumed)
    assert meta is not None and meta["epochs"] == 2
    assert resumed.count == 1  # the resumed refit adds epochs 3 and 4 to epoch 2's weights
    for got, want in zip(resumed.mean(), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    resumed.add(3, [2 * w for w in expected])
    for got, want in zip(resumed.mean(), expected, strict=True):
        np.testing.assert_allclose(got, 1.5 * want, rtol=1e-6)
    for got, want in zip(fresh.get_weights(), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    for var, want in zip(fresh.optimizer.variables, slots, strict=True):
        np.testing.assert_array_equal(var.numpy(), want)
    (tmp_path / "torn.npz").write_bytes((tmp_path / "epoch_state.npz").read_bytes()[:200])
    assert load_training_state(fresh, tmp_path / "torn.npz") is None  # torn: start over


def test_the_best_weights_live_in_the_epoch_state_and_survive_a_later_best(
    tmp_path: Path,
) -> None:
    """The best epoch's weights are kept in memory and travel in the epoch state when they
    are not the current ones; arrays handed to the writer are never overwritten by a later
    best; a resumed training gets back the best weights of the epoch it resumes from."""
    from models.checkpoint import BestWeights, EpochState, _write, load_training_state

    params, model, x, y = _tiny_model_and_batch()
    writer = _holding_writer()
    state = EpochState(tmp_path / "s.npz", writer, every_s=3600)
    best = BestWeights()
    model.train_on_batch(x, y)
    best.keep(model, 1)  # epoch 1 is the best: the state's own weights say so
    epoch1 = [w.copy() for w in model.get_weights()]
    state.snapshot(model, {"epochs": 1}, best=best)
    state.flush()
    model.train_on_batch(x, y)  # epoch 2 is worse: the state carries epoch 1's weights
    state.snapshot(model, {"epochs": 2}, best=best)
    state.flush()
    model.train_on_batch(x, y)
    best.keep(model, 3)  # a later best: the flushed arrays are the writer's
    epoch3 = [w.copy() for w in model.get_weights()]
    first, second = writer.held
    assert "best_0" not in first[1] and "best_0" in second[1]
    assert json.loads(str(second[1]["meta"]))["best_weights_epoch"] == 1
    for i, want in enumerate(epoch1):
        np.testing.assert_array_equal(second[1][f"best_{i}"], want)
    for got, want in zip(best.weights or [], epoch3, strict=True):
        np.testing.assert_array_equal(got, want)
    for name, (weights, named) in zip(("one", "two"), writer.held, strict=True):
        _write(weights, tmp_path / f"{name}.npz", **named)
        fresh = build_alexnet(params)
        compile_alexnet(fresh, params)
        fresh.optimizer.build(fresh.trainable_variables)
        resumed = BestWeights()
        meta = load_training_state(fresh, tmp_path / f"{name}.npz", best=resumed)
        assert meta is not None and resumed.epoch == 1
        for got, want in zip(resumed.weights or [], epoch1, strict=True):
            np.testing.assert_array_equal(got, want)


def test_an_average_of_refits_serves_the_mean_of_their_probabilities_and_reloads(
    tmp_path: Path,
) -> None:
    """--refit-seeds: the shipped model is one Keras model whose output is the mean of its
    members' class probabilities (still probabilities), saved and reloaded as it scores."""
    from models.alexnet import average_of, build_float32

    params = AlexNetParams(image_size=67, width=0.125, dense_units=8)
    members = []
    for i in range(2):
        keras.utils.set_random_seed(i)
        member = build_float32(params)
        member.name = f"alexnet_{i + 1}"
        members.append(member)
    assert average_of(members[:1]) is members[0]
    model = average_of(members)
    assert model.count_params() == 2 * members[0].count_params()
    images = np.random.default_rng(0).integers(0, 256, (5, 67, 67, 3), dtype=np.uint8)
    probs = np.asarray(model.predict_on_batch(images))
    each = [np.asarray(m.predict_on_batch(images)) for m in members]
    assert not np.allclose(each[0], each[1])  # different members, so the mean is not either
    assert np.allclose(probs, (each[0] + each[1]) / 2, atol=1e-6)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    assert np.array_equal(np.asarray(again.predict_on_batch(images)), probs)
    # --tta flip: each member on the image and on its mirror image, all four averaged; one
    # member is wrapped too, and the .keras file reloads it (the Mirror layer is registered)
    flipped = np.ascontiguousarray(images[:, :, ::-1])
    for chosen in (members[:1], members):
        mirrored = average_of(chosen, mirror=True)
        assert mirrored.count_params() == len(chosen) * members[0].count_params()
        views = [np.asarray(m.predict_on_batch(v)) for m in chosen for v in (images, flipped)]
        got = np.asarray(mirrored.predict_on_batch(images))
        assert np.allclose(got, np.mean(views, axis=0), atol=1e-6)
        assert not np.allclose(got, views[0], atol=1e-4)  # the mirror changed something
        mirrored.save(tmp_path / "mirrored.keras")
        again = keras.saving.load_model(tmp_path / "mirrored.keras", compile=False)
        assert np.array_equal(np.asarray(again.predict_on_batch(images)), got)
