"""Tests of jkonetstar.training: one compilation, determinism, divergence, history, padding, errors."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jkonetstar.training as training
from jkonetstar.models import get_solver, init_params, jkonet_star_loss
from jkonetstar.training import TrainingData, TrainState, fit, make_optimizer, minibatch_index, train_epoch

POTENTIAL = get_solver("jkonet-star-potential")
HIDDEN = (4,)  # tiny MLPs: these tests are about the loop, not the fit


def _data(m=50, dim=2, labels=(1, 2), scale=1.0, seed=0) -> TrainingData:
    """``m`` coupling rows spread over target snapshots ``labels``; weights sum to 1 per snapshot."""
    rng = np.random.default_rng(seed)
    source = scale * rng.normal(size=(m, dim))
    time = np.asarray(labels)[np.arange(m) % len(labels)]
    counts = {label: np.sum(time == label) for label in labels}
    weight = np.array([1.0 / counts[label] for label in time])
    rho = rng.uniform(0.1, 1.0, size=m)
    return TrainingData(
        source=jnp.asarray(source, jnp.float32),
        target=jnp.asarray(0.8 * source + 0.1 * rng.normal(size=(m, dim)), jnp.float32),
        time=jnp.asarray(time, jnp.int32),
        weight=jnp.asarray(weight, jnp.float32),
        rho=jnp.asarray(rho, jnp.float32),
        grad_rho=jnp.asarray(rng.normal(size=(m, dim)) * rho[:, None], jnp.float32),
    )


@pytest.fixture(scope="module")
def runs():
    """Short fits of JKOnet*_V shared by the tests below, with a trace counter on the loss.

    The counter wraps ``jkonetstar.training.jkonet_star_loss`` (the name ``train_epoch`` calls) before
    ``fit`` builds its jitted epoch, so it counts how many times the loss is traced (Python-executed).
    """
    data = _data()
    calls = {"loss": 0}
    original = training.jkonet_star_loss

    def counting_loss(*args, **kwargs):
        calls["loss"] += 1
        return original(*args, **kwargs)

    evaluations = []

    def evaluate(params):
        evaluations.append(params)
        return 0.5 + len(evaluations)

    lines = []
    settings = dict(batch_size=16, learning_rate=1e-2, hidden=HIDDEN)
    key_a, key_b = jax.random.split(jax.random.key(0))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "jkonet_star_loss", counting_loss)
        one_epoch = fit(key_a, POTENTIAL, data, epochs=1, **settings)
        traces_one_epoch, calls["loss"] = calls["loss"], 0
        five_epochs = fit(key_a, POTENTIAL, data, epochs=5, eval_every=2, evaluate=evaluate, progress=lines.append,
                          **settings)
        traces_five_epochs = calls["loss"]
    return dict(
        data=data, traces=(traces_one_epoch, traces_five_epochs), one_epoch=one_epoch, five_epochs=five_epochs,
        again=fit(key_a, POTENTIAL, data, epochs=5, eval_every=2, **settings),
        other_key=fit(key_b, POTENTIAL, data, epochs=5, eval_every=2, **settings),
        evaluations=evaluations, lines=lines,
    )


def test_later_epochs_do_not_retrace(runs):
    # Tracing a fit of 1 epoch and one of 5 runs the loss the same number of times (at least once): the
    # epoch is compiled once and epochs 2..5 reuse it.
    traces_one, traces_five = runs["traces"]
    assert traces_one >= 1
    assert traces_five == traces_one


def test_jitted_epoch_is_not_retraced_for_new_keys_or_data():
    optimizer = make_optimizer(1e-3)
    params = init_params(jax.random.key(1), POTENTIAL, 2, HIDDEN)
    count = {"n": 0}

    def counted(*args, **kwargs):
        count["n"] += 1
        return train_epoch(*args, **kwargs)

    epoch = jax.jit(counted, static_argnames=("spec", "optimizer", "batch_size"))
    state = TrainState(params, optimizer.init(params))
    for step in range(3):
        state, _ = epoch(state, jax.random.key(step), _data(seed=step), spec=POTENTIAL, optimizer=optimizer,
                         batch_size=16)
    assert count["n"] == 1


def test_same_key_same_history_different_key_different(runs):
    losses = [row["loss"] for row in runs["five_epochs"].history]
    assert losses == [row["loss"] for row in runs["again"].history]
    jax.tree.map(np.testing.assert_array_equal, runs["five_epochs"].params, runs["again"].params)
    other = [row["loss"] for row in runs["other_key"].history]
    assert all(a != b for a, b in zip(losses, other, strict=True))


def test_history_columns_and_evaluation_epochs(runs):
    # eval_every=2 over 5 epochs: w1 is evaluate's value at epochs 2, 4 and the last (5), NaN elsewhere.
    result = runs["five_epochs"]
    assert result.status == "ok"
    history = result.history
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]
    for row in history:
        assert {"epoch", "loss", "seconds", "w1"} <= set(row)
        assert np.isfinite(row["loss"]) and row["seconds"] >= 0
    w1 = [row["w1"] for row in history]
    assert math.isnan(w1[0]) and math.isnan(w1[2])
    assert (w1[1], w1[3], w1[4]) == (1.5, 2.5, 3.5)
    assert len(runs["evaluations"]) == 3 and len(runs["lines"]) == 3
    assert result.compile_seconds > 0
    # The parameters evaluated last are the ones returned.
    jax.tree.map(np.testing.assert_array_equal, runs["evaluations"][-1], result.params)
    # With the default evaluate, w1 is NaN, and a single epoch is evaluated (it is the last).
    assert [row["epoch"] for row in runs["one_epoch"].history] == [1]
    assert math.isnan(runs["one_epoch"].history[0]["w1"])


def test_training_lowers_the_loss(runs):
    losses = [row["loss"] for row in runs["five_epochs"].history]
    assert losses[-1] < losses[0]


@pytest.fixture(scope="module")
def diverging_data():
    return _data(m=64, scale=50.0, seed=3)


def test_divergence_is_recorded_and_keeps_finite_params(diverging_data):
    # Adam's first step moves every weight by about the learning rate, so lr = 1e12 (clipping off) puts
    # weights of 1e12 into an MLP fed data of size 50: the second epoch's loss overflows float32.
    # (lr = 1e8 only reaches losses ~1e35 with this one-layer MLP, still finite.)
    result = fit(jax.random.key(0), POTENTIAL, diverging_data, epochs=20, batch_size=64, learning_rate=1e12,
                 clip_norm=1e30, hidden=HIDDEN)
    assert result.status == "diverged"
    assert len(result.history) < 20
    assert not np.isfinite(result.history[-1]["loss"])
    assert all(np.isfinite(row["loss"]) for row in result.history[:-1])
    for leaf in jax.tree.leaves(result.params):
        assert np.all(np.isfinite(np.asarray(leaf)))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_diverged_fit_never_returns_non_finite_params(diverging_data):
    # fit promises "keeps the last finite parameters". With one minibatch per epoch the epoch loss is
    # computed before the epoch's only update; learning_rate=1e39 (inf in float32) turns the weights
    # into inf/NaN while that loss is still finite. The next epoch's loss is NaN, the run is "diverged",
    # and the weights returned must be the last finite ones, not the overflowed ones.
    result = fit(jax.random.key(0), POTENTIAL, diverging_data, epochs=5, batch_size=64, learning_rate=1e39,
                 clip_norm=1e30, hidden=HIDDEN)
    assert result.status == "diverged"
    for leaf in jax.tree.leaves(result.params):
        assert np.all(np.isfinite(np.asarray(leaf)))


@pytest.mark.parametrize(
    ("spec_name", "batch_size"),
    [("jkonet-star-potential-internal", 16), ("jkonet-star", 32)],
)
def test_padded_epoch_loss_equals_full_data_loss(spec_name, batch_size):
    # m = 50 rows, not a multiple of the batch size: the last minibatch (of each snapshot group for the
    # interaction solver) is padded with zero-weight rows. With a learning rate of 1e-30 the parameters
    # do not move, so the summed minibatch losses must equal the loss of the full data at those params
    # (every row counted once, padding counted zero). For jkonet-star ("snapshot" averaging, one snapshot
    # per minibatch, groups of 25 <= 32) each minibatch holds a whole snapshot, so even the interaction
    # means agree. float32 sums in another order: rtol 1e-5.
    spec = get_solver(spec_name)
    data = _data(m=50)
    groups = None
    if spec.interaction:
        order = np.argsort(np.asarray(data.time), kind="stable")
        data = jax.tree.map(lambda a: a[order], data)
        groups = (25, 25)
    params = init_params(jax.random.key(2), spec, 2, HIDDEN)
    if spec.internal:
        params = params | {"beta": jnp.asarray(0.2)}
    optimizer = make_optimizer(1e-30)
    epoch = jax.jit(train_epoch, static_argnames=("spec", "optimizer", "batch_size", "groups"))
    state, epoch_loss = epoch(TrainState(params, optimizer.init(params)), jax.random.key(3), data, spec=spec,
                              optimizer=optimizer, batch_size=batch_size, groups=groups)
    full = jax.jit(jkonet_star_loss, static_argnames=("spec",))(params, data, spec=spec)
    np.testing.assert_allclose(float(epoch_loss), float(full), rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-20), state.params, params)


def test_minibatch_index_groups_pad_and_cover_every_row_once():
    groups = (5, 7, 3)
    index_fn = jax.jit(minibatch_index, static_argnums=(1, 2, 3))
    index, valid = index_fn(jax.random.key(0), 15, 4, groups)
    index, valid = np.asarray(index), np.asarray(valid)
    assert index.shape == valid.shape == (2 + 2 + 1, 4)
    assert sorted(index[valid].tolist()) == list(range(15))
    group_of = np.repeat(np.arange(3), groups)
    for rows in index:
        assert len(set(group_of[rows])) == 1  # one snapshot per minibatch, padding included
    again, _ = index_fn(jax.random.key(0), 15, 4, groups)
    np.testing.assert_array_equal(again, index)
    plain, plain_valid = index_fn(jax.random.key(0), 15, 4, None)
    assert np.asarray(plain).shape == (4, 4) and int(np.sum(plain_valid)) == 15
    assert sorted(np.asarray(plain)[np.asarray(plain_valid)].tolist()) == list(range(15))


def test_linear_solver_is_one_closed_form_epoch():
    result = fit(jax.random.key(0), get_solver("jkonet-star-linear-potential"), _data(), epochs=10,
                 evaluate=lambda params: 0.25, feature_options=dict(degree=2, rbf_per_dim=0))
    assert result.status == "ok" and result.compile_seconds == 0.0
    assert len(result.history) == 1
    row = result.history[0]
    assert row["epoch"] == 1 and row["w1"] == 0.25 and np.isfinite(row["loss"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (dict(epochs=0), "epochs must be a positive integer, got 0"),
        (dict(epochs=2.5), "epochs must be a positive integer, got 2.5"),
        (dict(batch_size=0), "batch_size must be a positive integer, got 0"),
        (dict(eval_every=-1), "eval_every must be a positive integer, got -1"),
        (dict(learning_rate=0.0), "learning_rate must be a finite number > 0, got 0.0"),
        (dict(learning_rate=-1e-3), "learning_rate must be a finite number > 0, got -0.001"),
        (dict(learning_rate=float("nan")), "learning_rate must be a finite number > 0, got nan"),
    ],
)
def test_bad_settings_raise_naming_the_setting(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        fit(jax.random.key(0), POTENTIAL, _data(), **override)


def test_training_data_file_round_trip(tmp_path):
    data = _data(m=10)
    path = tmp_path / "couplings.npz"
    data.save(path)
    loaded = TrainingData.load(path)
    for name in TrainingData._fields:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(data, name))
        assert getattr(loaded, name).dtype == getattr(data, name).dtype


def test_training_data_load_errors_name_the_file(tmp_path):
    data = _data(m=10)
    missing = tmp_path / "missing.npz"
    np.savez(missing, **{k: np.asarray(v) for k, v in data._asdict().items() if k != "rho"})
    with pytest.raises(ValueError, match=re.escape(f"{missing}: missing array 'rho'")):
        TrainingData.load(missing)
    ragged = tmp_path / "ragged.npz"
    np.savez(ragged, **{k: np.asarray(v) for k, v in data._asdict().items()} | {"weight": np.ones(9)})
    with pytest.raises(ValueError, match=re.escape(f"{ragged}: coupling arrays are empty, of unequal lengths")):
        TrainingData.load(ragged)
    bad = tmp_path / "nan.npz"
    source = np.asarray(data.source).copy()
    source[0, 0] = np.nan
    np.savez(bad, **{k: np.asarray(v) for k, v in data._asdict().items()} | {"source": source})
    with pytest.raises(ValueError, match=re.escape(f"{bad}: coupling arrays are empty, of unequal lengths or not")):
        TrainingData.load(bad)


def _poison(monkeypatch, module, epoch_to_break: int, what: str, record: list):
    """Wraps ``module.run_epochs`` so that epoch ``epoch_to_break`` of the real epoch step turns non-finite.

    ``what="loss"``: that epoch's loss is NaN (parameters finite); ``"params"``: its loss stays finite but a
    parameter is NaN. ``record`` receives the parameters entering each epoch.
    """
    real = training.run_epochs

    def poisoned(epoch_step, state, **kwargs):
        def step(state, epoch):
            record.append(state.params)
            new_state, loss = epoch_step(state, epoch)
            if epoch == epoch_to_break and what == "loss":
                loss = jnp.nan
            if epoch == epoch_to_break and what == "params":
                leaves, tree = jax.tree.flatten(new_state.params)
                new_state = new_state._replace(params=jax.tree.unflatten(tree, [leaves[0] * jnp.nan, *leaves[1:]]))
            return new_state, loss

        return real(step, state, **kwargs)

    monkeypatch.setattr(module, "run_epochs", poisoned)


@pytest.mark.parametrize("what", ["loss", "params"])
@pytest.mark.parametrize("family", ["jkonet-star", "jkonet"])
def test_one_divergence_rule_for_both_families(family, what, monkeypatch):
    # Both fit and fit_jkonet hand their compiled epoch to run_epochs. An epoch 3 with a NaN loss, or with a
    # finite loss but a NaN parameter, stops the run at epoch 3 for either family: status "diverged", the
    # history rows 1..3 with row 3's loss, w1 and eval_seconds NaN (no evaluation of it), and the parameters
    # entering epoch 3 (the last finite ones) returned. (Before the shared loop, fit kept the finite loss.)
    import jkonetstar.baselines as baselines

    entering, evaluated = [], []
    evaluate = lambda params: evaluated.append(params) or 0.5  # noqa: E731
    if family == "jkonet-star":
        _poison(monkeypatch, training, 3, what, entering)
        result = fit(jax.random.key(0), POTENTIAL, _data(), epochs=6, batch_size=16, hidden=HIDDEN, eval_every=1,
                     evaluate=evaluate, validate=lambda params: 1.0)
    else:
        _poison(monkeypatch, baselines, 3, what, entering)
        snapshots = np.random.default_rng(0).normal(size=(3, 8, 2))
        result = baselines.fit_jkonet(jax.random.key(0), "jkonet-vanilla", snapshots, epochs=6, batch_size=8,
                                      inner_steps=2, hidden=HIDDEN, eval_every=1, evaluate=evaluate)
    assert result.status == "diverged"
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    last = result.history[-1]
    assert math.isnan(last["loss"]) and math.isnan(last["w1"]) and math.isnan(last["eval_seconds"])
    assert all(math.isfinite(row["loss"]) and row["w1"] == 0.5 for row in result.history[:2])
    assert "selected" not in last  # no model selection on a diverged run
    assert len(evaluated) == 2 and len(entering) == 3
    jax.tree.map(np.testing.assert_array_equal, result.params, entering[2])
    jax.tree.map(np.testing.assert_array_equal, result.params, evaluated[-1])
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(result.params))


def test_run_epochs_schedule_selection_and_rows():
    # A hand-written epoch step (params = the epoch count): evaluations at epochs 2, 4 and the last (5),
    # validation keeps the lowest score's parameters, the columns in order, one progress line per evaluation
    # plus one for the selection.
    def step(state, epoch):
        return TrainState({"x": state.params["x"] + 1.0}, None), jnp.asarray(10.0 - epoch)

    lines = []
    result = training.run_epochs(step, TrainState({"x": jnp.zeros(())}, None), epochs=5, eval_every=2,
                                 evaluate=lambda p: {"w1": float(p["x"]), "w1_explicit": -1.0},
                                 validate=lambda p: abs(float(p["x"]) - 4.0), name="toy", progress=lines.append,
                                 compile_seconds=1.5)
    assert result.status == "ok" and result.compile_seconds == 1.5
    assert float(result.params["x"]) == 4.0  # selected at epoch 4, not the last
    assert [row["loss"] for row in result.history] == [9.0, 8.0, 7.0, 6.0, 5.0]
    assert list(result.history[1]) == ["epoch", "loss", "seconds", "w1", "eval_seconds", "w1_explicit",
                                       "validation_w1", "selected"]
    assert list(result.history[0]) == ["epoch", "loss", "seconds", "w1", "eval_seconds", "selected"]
    assert [row["selected"] for row in result.history] == [0.0, 0.0, 0.0, 1.0, 0.0]
    assert [row["w1"] for row in result.history][1::2] == [2.0, 4.0]
    assert len(lines) == 4 and lines[0].startswith("toy: epoch 2/5")
    assert "keeping the parameters of epoch 4" in lines[-1]
    with pytest.raises(ValueError, match="eval_every must be a positive integer, got 0"):
        training.run_epochs(step, TrainState({"x": jnp.zeros(())}, None), epochs=5, eval_every=0)
