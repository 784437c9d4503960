"""Snapshots at real times: the JKO step of each transition scales with its time gap (pipeline.time_scales).

Convention: the time unit is the median gap between consecutive ``time_values``; the transition k -> k' steps
``tau * (time_values[k'] - time_values[k]) / unit`` and V(x, t) receives ``(time_values[k] - time_values[0]) / unit``.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jkonetstar import baselines, features, metrics, models, pipeline, training
from jkonetstar.training import TrainingData

TAU = 0.7


def _population(n_steps=3, n_particles=40, potential="wavy_plateau", dt=0.01, seed=0):
    return pipeline.simulate_population(seed, potential=potential, n_particles=n_particles, dim=2,
                                        n_steps=n_steps, dt=dt)


def _leaves_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --- the owner of the convention -------------------------------------------------------------------------------

def test_time_scales_unit_steps_and_time_inputs():
    scales = pipeline.time_scales([0, 8, 16, 24, 30])
    assert scales.unit == 8.0
    np.testing.assert_array_equal(scales.times, [0.0, 1.0, 2.0, 3.0, 3.75])
    assert [scales.step_scale(k, k + 1) for k in range(4)] == [1.0, 1.0, 1.0, 0.75]
    assert scales.step_scale(1, 3) == 2.0  # a left-out snapshot between: one step over the doubled gap
    even = pipeline.time_scales([2.0, 4.0, 6.0, 8.0])  # even, not from 0: unit 2, the labels' numbers exactly
    assert even.unit == 2.0 and even.times.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert all(even.step_scale(k, k + 1) == 1.0 for k in range(3))


@pytest.mark.parametrize("values", [[0.0], [0.0, 1.0, 1.0], [3.0, 2.0], [0.0, np.nan], [[0.0, 1.0]]])
def test_time_scales_rejects_bad_time_values(values):
    with pytest.raises(ValueError, match=re.escape("time_values must be at least two finite, strictly increasing")):
        pipeline.time_scales(values)


def test_prepared_rows_carry_step_scale_and_time_input():
    population = {**_population(n_steps=4), "time_values": np.array([0.0, 8.0, 16.0, 24.0, 30.0])}
    data = pipeline.prepare_training_data(population, 0, n_components=2).train
    expected_scale = {1: 1.0, 2: 1.0, 3: 1.0, 4: 0.75}
    expected_time = {1: 1.0, 2: 2.0, 3: 3.0, 4: 3.75}
    time = np.asarray(data.time)
    np.testing.assert_array_equal(data.tau_scale, np.array([expected_scale[k] for k in time], np.float32))
    np.testing.assert_array_equal(data.time_input, np.array([expected_time[k] for k in time], np.float32))
    plain = pipeline.prepare_training_data(_population(n_steps=4), 0, n_components=2).train
    np.testing.assert_array_equal(plain.tau_scale, np.ones(len(plain.time), np.float32))
    np.testing.assert_array_equal(plain.time_input, np.asarray(plain.time, np.float32))


def test_left_out_snapshot_makes_one_step_over_the_doubled_gap():
    population = _population(n_steps=3)
    keep = population["t"] != 1  # snapshot 1 left out: 0 -> 2 is one transition of two gaps
    population = {**{k: v[keep] for k, v in population.items()}, "time_values": np.array([0.0, 1.0, 2.0, 3.0])}
    data = pipeline.prepare_training_data(population, 0, n_components=2).train
    time = np.asarray(data.time)
    assert set(time.tolist()) == {2, 3}
    np.testing.assert_array_equal(np.asarray(data.tau_scale), np.where(time == 2, 2.0, 1.0).astype(np.float32))


def test_labels_beyond_the_time_values_raise():
    population = {**_population(n_steps=3), "time_values": np.array([0.0, 1.0, 2.0])}
    with pytest.raises(ValueError, match=re.escape("need one time value each, got 3 time_values")):
        pipeline.prepare_training_data(population, 0, n_components=2)


def test_training_data_defaults_and_old_files(tmp_path):
    rows = np.arange(4)
    data = TrainingData(np.zeros((4, 2), np.float32), np.ones((4, 2), np.float32), rows.astype(np.int32) + 1,
                        np.full(4, 0.25, np.float32), np.ones(4, np.float32), np.zeros((4, 2), np.float32))
    np.testing.assert_array_equal(data.tau_scale, np.ones(4, np.float32))
    np.testing.assert_array_equal(data.time_input, np.array([1, 2, 3, 4], np.float32))
    old = tmp_path / "old.npz"  # a couplings file written before tau_scale and time_input existed
    np.savez(old, **{k: np.asarray(v) for k, v in data._asdict().items() if k not in ("tau_scale", "time_input")})
    loaded = TrainingData.load(old)
    np.testing.assert_array_equal(loaded.tau_scale, np.ones(4, np.float32))
    np.testing.assert_array_equal(loaded.time_input, np.array([1, 2, 3, 4], np.float32))
    scaled = data._replace(tau_scale=np.array([1, 2, 1, 0.5], np.float32))
    scaled.save(tmp_path / "new.npz")
    np.testing.assert_array_equal(TrainingData.load(tmp_path / "new.npz").tau_scale, scaled.tau_scale)


# --- 1. even times reproduce today's numbers bit for bit ------------------------------------------------------

@pytest.fixture(scope="module")
def even_runs():
    """The same population prepared without time values, with 0..3 and with 2, 4, 6, 8 (unit 2)."""
    population = _population(n_steps=3)
    runs = {}
    for name, values in (("none", None), ("labels", [0.0, 1.0, 2.0, 3.0]), ("from2", [2.0, 4.0, 6.0, 8.0])):
        pop = population if values is None else {**population, "time_values": np.array(values)}
        runs[name] = (values, pipeline.prepare_training_data(pop, 0, n_components=2))
    return runs


@pytest.mark.parametrize("solver", ["jkonet-star-potential", "jkonet-star-time-potential", "jkonet-star",
                                    "jkonet-star-potential-internal"])
def test_even_times_give_todays_loss_and_gradient(even_runs, solver):
    spec = models.get_solver(solver)
    params = models.init_params(jax.random.key(1), spec, 2, (8, 8))
    plain = jax.tree.map(jnp.asarray, even_runs["none"][1].train)
    today = plain._replace(tau_scale=None, time_input=None)  # the loss's path without any scale: today's code
    reference = jax.value_and_grad(lambda p: models.jkonet_star_loss(p, today, spec=spec, tau=TAU))(params)
    for name in ("none", "labels", "from2"):
        batch = jax.tree.map(jnp.asarray, even_runs[name][1].train)
        _leaves_equal(batch, plain)  # the same rows, scales of exactly 1 and time inputs 0..T
        _leaves_equal(jax.value_and_grad(lambda p: models.jkonet_star_loss(p, batch, spec=spec, tau=TAU))(params),
                      reference)


@pytest.mark.parametrize("solver", ["jkonet-star-potential", "jkonet-star-time-potential", "jkonet-star-linear"])
def test_even_times_give_todays_training_and_predictions(even_runs, solver):
    spec = models.get_solver(solver)
    settings = dict(epochs=3, batch_size=32, eval_every=1, hidden=(8, 8)) if spec.parametrisation == "mlp" else {}
    results = []
    for name in ("none", "labels", "from2"):
        values, prepared = even_runs[name]
        fit = pipeline.train(spec, prepared.train, prepared.x_test, prepared.t_test, 0, tau=TAU, time_values=values,
                             **settings)
        scores, steps = pipeline.evaluate_steps(fit.params, spec, prepared.x_test, prepared.t_test, 0, tau=TAU,
                                                time_values=values)
        results.append((fit.params, [row["w1"] for row in fit.history], scores["w1_per_step"], steps[2]))
    for other in results[1:]:
        _leaves_equal(other, results[0])


def test_even_times_give_todays_baseline_training():
    population = _population(n_steps=2, n_particles=20)
    x, t = population["x"], population["t"]
    fits = [pipeline.train(pipeline.get_method("jkonet-vanilla"), None, x, t, 0, x_train=x, t_train=t, epochs=1,
                           batch_size=20, eval_every=1, inner_steps=2, hidden=(8, 8), tau=TAU, time_values=values)
            for values in (None, [2.0, 4.0, 6.0])]
    _leaves_equal((fits[1].params, fits[1].history[0]["w1"]), (fits[0].params, fits[0].history[0]["w1"]))


# --- 2. uneven times recover the same dynamics -----------------------------------------------------------------

DT = 0.001
"""Base step of the simulation. V = sphere = -10 |x|^2 (quadratic, in the features' span): x_{s+1} = (1 + 20 dt) x_s."""
OBSERVED = [0, 1, 3, 4, 5, 7]
"""Observed base steps: gaps 1, 2, 1, 1, 2 (median 1, so the time unit is the base step)."""


def _linear_fit(population, time_values=None):
    prepared = pipeline.prepare_training_data(population if time_values is None else
                                              {**population, "time_values": np.asarray(time_values, float)},
                                              0, n_components=1)
    spec = models.get_solver("jkonet-star-linear-potential")
    fit = pipeline.train(spec, prepared.train, prepared.x_test, prepared.t_test, 0, time_values=time_values)
    return fit.params, spec


@pytest.fixture(scope="module")
def recovery_fits():
    full = _population(n_steps=OBSERVED[-1], n_particles=200, potential="sphere", dt=DT, seed=3)
    keep = np.isin(full["t"], OBSERVED)
    relabel = {step: label for label, step in enumerate(OBSERVED)}
    sparse = {"x": full["x"][keep], "t": np.array([relabel[s] for s in full["t"][keep]], np.int32),
              "particle": full["particle"][keep]}
    points = pipeline.recovery_points(full["x"][full["t"] == 0], 20)
    fits = {"even": _linear_fit(full), "gaps": _linear_fit(sparse, OBSERVED), "index": _linear_fit(sparse)}
    return fits, points


def test_uneven_gaps_recover_the_even_fit(recovery_fits):
    fits, points = recovery_fits
    grads = {name: np.asarray(models.energy_gradients(params, spec, "potential", points))
             for name, (params, spec) in fits.items()}
    true = np.asarray(jax.vmap(jax.grad(lambda v: -10.0 * jnp.sum(v**2)))(points))
    error = {name: metrics.gradient_recovery(g, true, 1.0 / DT)["rel_error"] for name, g in grads.items()}
    to_even = {name: float(np.linalg.norm(grads[name] - grads["even"]) / np.linalg.norm(grads["even"]))
               for name in ("gaps", "index")}
    print(f"relative gradient error vs the true drift {error}; vs the even fit {to_even}")
    # The gap-aware fit differs from the even one only by the second-order term of a two-gap transition
    # (x_{s+2} - x_s = -2 dt g - dt^2 H g, with H = -20: a relative 10 dt = 1% on 2 of 5 transitions): 2% bounds it.
    assert to_even["gaps"] < 0.02
    # The index convention fits one step to displacements of one and two base steps alike: its gradient is
    # about 1.4x the true one (3 one-gap and 2 two-gap transitions), tens of percent off.
    assert to_even["index"] > 10 * to_even["gaps"] and to_even["index"] > 0.2
    assert error["gaps"] < 0.02 and error["index"] > 10 * error["gaps"]


# --- 3. prediction over a doubled gap ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def linear_model():
    prepared = pipeline.prepare_training_data(_population(n_steps=3), 0, n_components=1)
    spec = models.get_solver("jkonet-star-linear-potential")
    params, _ = models.fit_linear(spec, prepared.train, tau=TAU)
    return params, spec, prepared


def test_predictor_over_a_doubled_gap_steps_twice_tau(linear_model):
    params, spec, prepared = linear_model
    x = prepared.x_test[prepared.t_test == 0]
    grad_v = np.asarray(models.energy_gradients(params, spec, "potential", x), np.float64)
    predict = pipeline.make_predictor(params, spec, tau=TAU, time_values=[0.0, 1.0, 2.0, 3.0])
    key = jax.random.key(0)
    doubled = predict(key, x, 2, t_source=0)
    np.testing.assert_allclose(doubled, x - 2 * TAU * grad_v, rtol=1e-5, atol=1e-5)  # explicit step, float32
    one_gap = predict(key, x, 1)  # t_source defaults to t_target - 1
    np.testing.assert_allclose(one_gap, x - TAU * grad_v, rtol=1e-5, atol=1e-5)
    assert np.abs(doubled - one_gap).max() > 1e-2  # the two steps differ measurably
    uneven = pipeline.make_predictor(params, spec, tau=TAU, time_values=[0.0, 3.0, 4.0, 5.0])  # unit 1
    np.testing.assert_allclose(uneven(key, x, 1), x - 3 * TAU * grad_v, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=re.escape("cannot step from snapshot 2 to 2")):
        predict(key, x, 2, t_source=2)


def test_evaluation_with_a_left_out_test_snapshot_steps_its_gap(linear_model):
    params, spec, prepared = linear_model
    keep = prepared.t_test != 1
    x_test, t_test = prepared.x_test[keep], prepared.t_test[keep]  # transitions 0 -> 2 (two gaps), 2 -> 3
    _, observed, predicted, _ = pipeline.one_step(params, spec, x_test, t_test, 0, tau=TAU,
                                                  time_values=[0.0, 1.0, 2.0, 3.0])
    for source, y, scale in zip(observed[:2], predicted, (2.0, 1.0)):
        grad_v = np.asarray(models.energy_gradients(params, spec, "potential", source), np.float64)
        np.testing.assert_allclose(y, source - scale * TAU * grad_v, rtol=1e-5, atol=1e-5)
    scores = pipeline.evaluate(params, spec, x_test, t_test, 0, tau=TAU, time_values=[0.0, 1.0, 2.0, 3.0])
    index = pipeline.evaluate(params, spec, x_test, t_test, 0, tau=TAU)
    assert scores["w1_per_step"][1] == index["w1_per_step"][1]  # 2 -> 3: one gap either way
    assert scores["w1_per_step"][0] != index["w1_per_step"][0]


def test_implicit_step_over_a_doubled_gap_is_the_fixed_point_of_twice_tau():
    spec = models.get_solver("jkonet-star-time-potential")
    params = models.init_params(jax.random.key(2), spec, 2, (8, 8))
    x = np.asarray(jax.random.normal(jax.random.key(3), (30, 2)), np.float32)
    values = [0.0, 2.0, 3.0, 7.0]  # diffs 2, 1, 4: unit 2; 1 -> 3 steps (7 - 2) / 2 = 2.5, t input 3.5
    predict = pipeline.make_predictor(params, spec, tau=TAU, time_values=values)
    y = predict(jax.random.key(0), x, 3, t_source=1)
    assert predict.convergence()["implicit_converged"]
    expected = models.predict(params, spec, jax.random.key(0), x, 3, tau=2.5 * TAU, time_input=3.5)
    np.testing.assert_allclose(y, np.asarray(expected), rtol=1e-5, atol=1e-6)  # jitted vs op by op
    drift = np.asarray(models.energy_gradients(params, spec, "potential", y, t=3.5))
    np.testing.assert_allclose(y, x - 2.5 * TAU * drift, atol=1e-4)  # the fixed point (tolerance 1e-5 per move)
    label_time = models.predict(params, spec, jax.random.key(0), x, 3, tau=2.5 * TAU)  # V(x, 3): another field
    assert np.abs(np.asarray(label_time) - y).max() > 1e-6


# --- the loss with per-row steps and time inputs ----------------------------------------------------------------

def _batch(seed=0, m=24):
    rng = np.random.default_rng(seed)
    time = np.repeat([1, 2], m // 2).astype(np.int32)
    weight = np.full(m, 2.0 / m, np.float32)
    return TrainingData(rng.normal(size=(m, 2)).astype(np.float32), rng.normal(size=(m, 2)).astype(np.float32),
                        time, weight, rng.uniform(0.5, 1.0, m).astype(np.float32),
                        rng.normal(size=(m, 2)).astype(np.float32),
                        tau_scale=np.where(time == 1, 1.0, 2.5).astype(np.float32),
                        time_input=np.where(time == 1, 0.5, 3.0).astype(np.float32))


@pytest.mark.parametrize("solver", ["jkonet-star", "jkonet-star-time-potential"])
def test_loss_uses_tau_times_the_row_scale(solver):
    spec = models.get_solver(solver)
    params = models.init_params(jax.random.key(4), spec, 2, (8, 8))
    if spec.internal:
        params["beta"] = jnp.asarray(0.3)
    batch = jax.tree.map(jnp.asarray, _batch())
    loss = models.jkonet_star_loss(params, batch, spec=spec, tau=TAU)
    # reference: per snapshot, the plain loss with tau * scale and the time input as the label (float time)
    expected = 0.0
    for label in (1, 2):
        rows = np.asarray(batch.time) == label
        part = jax.tree.map(lambda a: a[rows], batch)
        scale = float(part.tau_scale[0])
        part = part._replace(tau_scale=None, time_input=None, time=part.time_input)
        expected += float(models.jkonet_star_loss(params, part, spec=spec, tau=TAU * scale))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_linear_fit_uses_tau_times_the_row_scale():
    """Targets made by explicit steps of ``tau * tau_scale`` of a known linear potential: the fit recovers it."""
    spec = models.get_solver("jkonet-star-linear-potential")
    options = {"degree": 2, "rbf_per_dim": 3}  # 17 features: well conditioned for float32 normal equations
    fmap = features.feature_map(2, **options)
    data = _batch(m=200)
    gradients = features.feature_gradients(fmap, jnp.asarray(data.source))  # [m, d, K]
    theta = jax.random.normal(jax.random.key(8), (fmap.size,)) / fmap.size
    field = np.asarray(gradients @ theta)
    target = data.source - TAU * data.tau_scale[:, None] * field
    data = jax.tree.map(jnp.asarray, data._replace(target=np.asarray(target, np.float32)))
    params, loss = models.fit_linear(spec, data, tau=TAU, ridge=1e-8, feature_options=options)
    learnt = np.asarray(gradients @ params["potential"])
    # float32 normal equations: the recovered field to 1e-3 of its size, and the loss about 0
    np.testing.assert_allclose(learnt, field, atol=1e-3 * np.abs(field).max())
    assert loss < 1e-8
    ignored, _ = models.fit_linear(spec, data._replace(tau_scale=None), tau=TAU, ridge=1e-8, feature_options=options)
    assert np.abs(np.asarray(gradients @ ignored["potential"]) - field).max() > 0.1 * np.abs(field).max()


# --- the baselines ----------------------------------------------------------------------------------------------

def test_baseline_epoch_steps_each_transition_its_own_tau():
    spec = baselines.get_baseline("jkonet-vanilla")
    snapshots = jnp.asarray(jax.random.normal(jax.random.key(5), (3, 16, 2)))
    params = {"potential": models.MLP((8,)).init(jax.random.key(6), jnp.zeros(2))["params"]}
    optimizer = training.make_optimizer(1e-2)
    state = training.TrainState(params, optimizer.init(params))
    run = lambda **kw: baselines.train_epoch_jkonet(state, jax.random.key(7), snapshots, spec=spec,  # noqa: E731
                                                    optimizer=optimizer, batch_size=16, inner_steps=3, **kw)
    uniform = run(tau=2 * TAU)
    scaled = run(tau=TAU, tau_scales=jnp.array([2.0, 2.0]))
    for a, b in zip(jax.tree.leaves(uniform), jax.tree.leaves(scaled)):  # traced vs constant tau: round-off
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    uneven = run(tau=TAU, tau_scales=jnp.array([1.0, 2.0]))
    assert not np.allclose(float(uneven[1]), float(uniform[1]))


def test_pipeline_train_hands_baselines_their_step_scales(monkeypatch):
    seen = {}
    monkeypatch.setattr(baselines, "fit_jkonet", lambda key, name, snapshots, **kw: seen.update(kw))
    population = _population(n_steps=3, n_particles=10)
    keep = population["t"] != 2  # labels 0, 1, 3
    x, t = population["x"][keep], population["t"][keep]
    pipeline.train(pipeline.get_method("jkonet"), None, x, t, 0, x_train=x, t_train=t,
                   time_values=[0.0, 1.0, 3.0, 4.0])
    assert seen["tau_scales"] == [1.0, 3.0]  # diffs 1, 2, 1: unit 1; 1 -> 3 spans 4 - 1 = 3


@pytest.mark.parametrize("scales", [[1.0], [1.0, 0.0], [1.0, np.inf]])
def test_fit_jkonet_rejects_bad_step_scales(scales):
    snapshots = np.zeros((3, 4, 2), np.float32)
    with pytest.raises(ValueError, match=re.escape("tau_scales must be 2 finite numbers > 0 (one per transition)")):
        baselines.fit_jkonet(jax.random.key(0), "jkonet", snapshots, tau_scales=scales)
