"""The prediction steps (explicit, implicit fixed point), gradients at the source, recovery metrics and the
scores of a diverged run, against closed forms and hand-checked values."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jkonetstar import features as feats
from jkonetstar import metrics, models, pipeline, training
from jkonetstar.models import get_solver, predict_step_info

FEATURES = {"degree": 2, "rbf_per_dim": 0}


def quadratic_params(a: float) -> dict:
    """Linear-solver parameters of V(x) = a |x|^2 / 2 in 2-D (monomials of degree <= 2, no RBFs): grad V = a x."""
    fmap = feats.feature_map(2, **FEATURES)
    theta = np.zeros(fmap.size, np.float32)
    for exponent in ([2, 0], [0, 2]):
        theta[np.flatnonzero(np.all(fmap.exponents == exponent, axis=1))] = 0.5 * a
    return {"potential": jnp.asarray(theta), "interaction": None, "beta": None,
            "features": {"exponents": fmap.exponents, "centres": fmap.centres, "width": np.asarray(fmap.width),
                         "axis": fmap.axis}}


X = np.random.default_rng(0).uniform(-3, 3, size=(200, 2)).astype(np.float32)
SPEC = get_solver("jkonet-star-linear-potential")


@pytest.mark.parametrize("solver", models.IMPLICIT_SOLVERS)
@pytest.mark.parametrize("a, tau", [(2.0, 0.3), (-1.5, 0.2), (0.5, 1.0)])
def test_implicit_step_is_the_closed_form_fixed_point_of_a_quadratic(a, tau, solver):
    # y = x - tau a y  <=>  y = x / (1 + tau a); the plain iteration contracts by |tau a| < 1.
    info = predict_step_info(quadratic_params(a), SPEC, jax.random.key(0), X, tau=tau, step="implicit",
                             tolerance=1e-6, max_iterations=500, solver=solver)
    np.testing.assert_allclose(np.asarray(info.y), X / (1 + tau * a), rtol=2e-5, atol=2e-5)
    assert float(info.residual) <= 1e-6
    # contraction |tau a|: iterations to a residual below 1e-6 from a first move of |tau a| max|x| (+ a few)
    first_move = abs(tau * a) * np.max(np.linalg.norm(X, axis=1))
    bound = math.ceil(math.log(1e-6 / first_move) / math.log(abs(tau * a))) + 3
    assert 1 < int(info.iterations) <= bound
    if solver == "anderson":  # a linear map with one eigenvalue: two residuals span the secant, then exact
        assert int(info.iterations) <= 4


def test_anderson_solves_an_implicit_step_the_plain_iteration_cannot():
    # tau a = 3: y <- x - 3 y diverges, but the fixed point y = x / 4 exists (the JKO step is well posed).
    picard = predict_step_info(quadratic_params(3.0), SPEC, jax.random.key(0), X, tau=1.0, step="implicit",
                               max_iterations=50, solver="picard")
    anderson = predict_step_info(quadratic_params(3.0), SPEC, jax.random.key(0), X, tau=1.0, step="implicit",
                                 max_iterations=50, solver="anderson")
    assert not float(picard.residual) <= 1e-5
    assert float(anderson.residual) <= 1e-5 and int(anderson.iterations) <= 10
    np.testing.assert_allclose(np.asarray(anderson.y), X / 4, rtol=1e-5, atol=1e-5)


def test_anderson_and_picard_reach_the_same_fixed_point_of_an_mlp(key):
    # A non-linear drift: a random MLP potential scaled so that tau G contracts (Lipschitz about 0.5).
    spec = get_solver("jkonet-star-potential")
    params = models.init_params(key, spec, 2, hidden=(16, 16))
    lipschitz = np.max(np.abs(np.asarray(jax.vmap(jax.jacobian(lambda y: models.mlp_input_gradient(
        params["potential"], y[None])[0]))(jnp.asarray(X)))))
    tau = 0.5 / max(lipschitz, 1e-6)
    steps = {solver: predict_step_info(params, spec, jax.random.key(0), X, tau=tau, step="implicit",
                                       tolerance=1e-6, max_iterations=500, solver=solver)
             for solver in models.IMPLICIT_SOLVERS}
    # reference: the plain iteration run 2000 times in float64 numpy, far below either tolerance
    y = X.astype(np.float64)
    for _ in range(2000):
        y = X - tau * np.asarray(models.mlp_input_gradient(params["potential"], jnp.asarray(y, jnp.float32)),
                                 np.float64)
    for solver, info in steps.items():
        assert float(info.residual) <= 1e-6, solver
        np.testing.assert_allclose(np.asarray(info.y), y, atol=1e-5, err_msg=solver)
    assert int(steps["anderson"].iterations) < int(steps["picard"].iterations)


def test_explicit_step_is_the_euler_step():
    a, tau = 2.0, 0.3
    info = predict_step_info(quadratic_params(a), SPEC, jax.random.key(0), X, tau=tau, step="explicit")
    np.testing.assert_allclose(np.asarray(info.y), X * (1 - tau * a), rtol=1e-5, atol=1e-5)
    assert float(info.residual) == 0.0 and int(info.iterations) == 1


def test_unconverged_implicit_step_is_reported():
    # tau a = 3 > 1: the plain iteration y <- x - 3 y diverges; the cap stops it and the predictor says so.
    params = quadratic_params(3.0)
    info = predict_step_info(params, SPEC, jax.random.key(0), X, tau=1.0, step="implicit", max_iterations=10,
                             solver="picard")
    assert int(info.iterations) == 10 and not float(info.residual) <= 1e-5
    x_test = np.concatenate([X, X * 0.9]).astype(np.float32)
    t_test = np.repeat([0, 1], len(X))
    scores = pipeline.evaluate(params, SPEC, x_test, t_test, 0, predict_options={
        "predict_step": "implicit", "implicit_max_iterations": 10, "implicit_solver": "picard"})
    assert scores["implicit_converged"] is False and scores["implicit_solver"] == "picard"
    assert scores["implicit_iterations_per_step"] == [10]
    assert not scores["implicit_residual_per_step"][0] <= scores["implicit_tolerance"]
    converged = pipeline.evaluate(quadratic_params(0.5), SPEC, x_test, t_test, 0,
                                  predict_options={"predict_step": "implicit"})
    assert converged["implicit_converged"] is True


def test_unknown_step_and_option_raise():
    with pytest.raises(ValueError, match=re.escape("unknown predict_step 'midpoint'")):
        predict_step_info(quadratic_params(1.0), SPEC, jax.random.key(0), X, step="midpoint")
    with pytest.raises(ValueError, match=re.escape("unknown implicit_solver 'newton'")):
        predict_step_info(quadratic_params(1.0), SPEC, jax.random.key(0), X, step="implicit", solver="newton")
    with pytest.raises(ValueError, match="unknown prediction options"):
        pipeline.make_predictor(quadratic_params(1.0), SPEC, predict_stp="implicit")


def test_defaults_predict_with_the_step_the_loss_was_trained_on():
    assert models.default_predict_step(get_solver("jkonet-star-potential")) == "implicit"
    assert models.default_predict_step(get_solver("jkonet-star")) == "implicit"
    assert models.default_predict_step(get_solver("jkonet-star-linear")) == "explicit"


def test_evaluate_steps_scores_every_step_of_an_mlp_model(key):
    spec = get_solver("jkonet-star-potential")
    params = models.init_params(key, spec, 2, hidden=(8,))
    x_test = np.concatenate([X, X * 0.9, X * 0.8]).astype(np.float32)
    t_test = np.repeat([0, 1, 2], len(X))
    scores, (labels, observed, predicted, _) = pipeline.evaluate_steps(
        params, spec, x_test, t_test, 0, predict_options={"predict_step": "explicit"})
    assert scores["predict_step"] == "explicit" and set(scores["by_predict_step"]) == {"explicit", "implicit"}
    for step, step_scores in scores["by_predict_step"].items():
        alone = pipeline.evaluate(params, spec, x_test, t_test, 0, predict_options={"predict_step": step})
        assert step_scores["w1_per_step"] == alone["w1_per_step"]
    assert scores["w1_per_step"] == scores["by_predict_step"]["explicit"]["w1_per_step"]
    # the drawn predictions are the configured (explicit) step's
    direct = [metrics.wasserstein1(p, o) for p, o in zip(predicted, observed[1:])]
    np.testing.assert_allclose(direct, scores["w1_per_step"], rtol=1e-12)


def test_diverged_run_is_never_scored():
    x_test = np.concatenate([X, X * 0.9]).astype(np.float32)
    t_test = np.repeat([0, 1], len(X))
    scores, _ = pipeline.evaluate_steps(quadratic_params(0.5), SPEC, x_test, t_test, 0, status="diverged")
    assert math.isnan(scores["w1_mean"]) and all(math.isnan(v) for v in scores["w1_per_step"])
    assert all(math.isnan(s["w1_mean"]) for s in scores["by_predict_step"].values())
    assert math.isfinite(scores["last_finite_parameters"]["w1_mean"])
    recovery = pipeline.recovery(quadratic_params(0.5), SPEC, X, potential="sphere", status="diverged")
    assert recovery and all(math.isnan(v) for v in recovery.values())


def test_gradient_at_source_trains_the_explicit_residual():
    # The rows (2x - y, x) turn the target-gradient loss into tau G(x) + (y - x): check against the residual
    # computed by hand with the potential's gradient at the source.
    spec = get_solver("jkonet-star-potential")
    params = models.init_params(jax.random.key(3), spec, 2, hidden=(8,))
    rng = np.random.default_rng(1)
    source = rng.normal(size=(30, 2)).astype(np.float32)
    target = (source + 0.1 * rng.normal(size=(30, 2))).astype(np.float32)
    data = training.TrainingData(jnp.asarray(source), jnp.asarray(target), jnp.ones(30, jnp.int32),
                                 jnp.full(30, 1 / 30, jnp.float32), jnp.ones(30), jnp.zeros((30, 2)))
    tau = 0.7
    loss = models.jkonet_star_loss(params, training.at_source(data), spec=spec, tau=tau)
    grad_at_source = np.asarray(models.mlp_input_gradient(params["potential"], jnp.asarray(source)))
    expected = np.sum(np.sum((tau * grad_at_source + (target - source)) ** 2, axis=1) / 30)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_gradient_at_source_fit_recovers_the_explicit_generator():
    # Data from the explicit step x_{t+1} = (1 - dt a) x: trained with gradients at the source and predicted with
    # the explicit step, JKOnet*_V reproduces the next snapshot (its pair is consistent); a = 2, dt = 0.05.
    rng = np.random.default_rng(2)
    x0 = rng.uniform(-2, 2, size=(400, 2)).astype(np.float32)
    snapshots = [x0 * (1 - 0.1) ** k for k in range(3)]
    data = training.TrainingData(
        jnp.asarray(np.concatenate(snapshots[:-1])), jnp.asarray(np.concatenate(snapshots[1:])),
        jnp.asarray(np.repeat([1, 2], 400).astype(np.int32)), jnp.full(800, 1 / 400, jnp.float32),
        jnp.ones(800), jnp.zeros((800, 2)))
    spec = get_solver("jkonet-star-potential")
    result = training.fit(jax.random.key(0), spec, data, epochs=300, batch_size=100, learning_rate=3e-3,
                          eval_every=300, hidden=(16,), gradient_at="source")
    predicted = models.predict(result.params, spec, jax.random.key(0), jnp.asarray(x0), step="explicit")
    assert metrics.wasserstein1(np.asarray(predicted), snapshots[1]) < 0.02
    with pytest.raises(ValueError, match=re.escape("unknown gradient_at 'middle'")):
        training.fit(jax.random.key(0), spec, data, epochs=1, gradient_at="middle")


def test_gradient_recovery_against_hand_values():
    true = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    perfect = metrics.gradient_recovery(true / 10, true, scale=10)
    assert perfect["nmae"] == pytest.approx(0, abs=1e-12) and perfect["cosine"] == pytest.approx(1)
    assert perfect["corr"] == pytest.approx(1) and perfect["rel_error"] == pytest.approx(0, abs=1e-12)
    none = metrics.gradient_recovery(np.zeros_like(true), true)
    assert none["nmae"] == pytest.approx(1) and math.isnan(none["cosine"]) and math.isnan(none["corr"])
    opposite = metrics.gradient_recovery(-true, true)
    assert opposite["cosine"] == pytest.approx(-1) and opposite["nmae"] == pytest.approx(2)
    # a 90-degree rotation of every vector: cosine 0, nmae sqrt(2)
    rotated = true @ np.array([[0.0, 1.0], [-1.0, 0.0]])
    assert metrics.gradient_recovery(rotated, true)["cosine"] == pytest.approx(0, abs=1e-12)
    assert metrics.gradient_recovery(rotated, true)["nmae"] == pytest.approx(np.sqrt(2))
    flat = metrics.gradient_recovery(true, np.zeros_like(true))
    assert math.isnan(flat["nmae"]) and math.isnan(flat["rel_error"])
    assert all(math.isnan(v) for v in metrics.gradient_recovery(true * np.nan, true).values())


def test_recovery_of_a_hand_built_sphere_potential():
    # sphere: V = -10 |x|^2, grad V = -20 x; a linear V_hat = dt/tau V gives perfect recovery after tau/dt.
    dt, tau = 0.01, 1.0
    params = quadratic_params(-20 * dt / tau)
    values = pipeline.recovery(params, SPEC, pipeline.recovery_points(X), potential="sphere", tau=tau, dt=dt)
    assert values["potential_grad_nmae"] == pytest.approx(0, abs=1e-5)
    assert values["potential_grad_cosine"] == pytest.approx(1, abs=1e-6)
    points = pipeline.recovery_points(X, n_points=7)
    assert points.shape == (49, 2)
    np.testing.assert_allclose(points.min(axis=0), X.min(axis=0)) and np.testing.assert_allclose(
        points.max(axis=0), X.max(axis=0))
    high = np.random.default_rng(0).normal(size=(10, 5)).astype(np.float32)
    assert pipeline.recovery_points(high).shape == (10, 5)


def _chain_data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-2, 2, size=(n, 2)).astype(np.float32)
    snapshots = [x0 * 0.9**k for k in range(3)]
    return training.TrainingData(
        jnp.asarray(np.concatenate(snapshots[:-1])), jnp.asarray(np.concatenate(snapshots[1:])),
        jnp.asarray(np.repeat([1, 2], n).astype(np.int32)), jnp.full(2 * n, 1 / n, jnp.float32),
        jnp.ones(2 * n), jnp.zeros((2 * n, 2)))


def test_validation_split_holds_out_a_share_of_every_snapshot_pair():
    data = _chain_data()
    kept, held = pipeline.validation_split(data, 0.1, seed=3)
    assert len(kept.source) + len(held.source) == len(data.source)
    for label in (1, 2):
        assert int(np.sum(np.asarray(held.time) == label)) == 20
        np.testing.assert_allclose(np.sum(np.asarray(kept.weight)[np.asarray(kept.time) == label]), 1.0, rtol=1e-6)
    rows = {tuple(r) for r in np.concatenate([np.asarray(held.source), np.asarray(held.target)], axis=1)}
    assert not rows & {tuple(r) for r in np.concatenate([np.asarray(kept.source), np.asarray(kept.target)], axis=1)}
    with pytest.raises(ValueError, match="validation_ratio must be in"):
        pipeline.validation_split(data, 1.0, seed=0)


def test_model_selection_keeps_the_parameters_of_the_best_validation_score():
    # Scores 3, 1, 2 at epochs 5, 10, 15: the run returns the parameters of epoch 10, i.e. those of the same
    # training stopped after 10 epochs (epochs are seeded by their index, so the two runs agree exactly).
    data, spec = _chain_data(), get_solver("jkonet-star-potential")
    scores = iter([3.0, 1.0, 2.0])
    selected = training.fit(jax.random.key(0), spec, data, epochs=15, eval_every=5, batch_size=50, hidden=(8,),
                            validate=lambda params: next(scores))
    stopped = training.fit(jax.random.key(0), spec, data, epochs=10, eval_every=5, batch_size=50, hidden=(8,))
    jax.tree.map(np.testing.assert_array_equal, selected.params, stopped.params)
    history = {row["epoch"]: row for row in selected.history}
    assert [history[e]["validation_w1"] for e in (5, 10, 15)] == [3.0, 1.0, 2.0]
    assert [e for e, row in history.items() if row["selected"] == 1.0] == [10]


def test_cosine_schedule_changes_training_and_bad_names_fail():
    data, spec = _chain_data(), get_solver("jkonet-star-potential")
    common = dict(epochs=4, eval_every=4, batch_size=50, hidden=(8,))
    constant = training.fit(jax.random.key(0), spec, data, **common)
    cosine = training.fit(jax.random.key(0), spec, data, lr_schedule="cosine", **common)
    assert not np.allclose(np.asarray(constant.params["potential"]["Dense_0"]["kernel"]),
                           np.asarray(cosine.params["potential"]["Dense_0"]["kernel"]))
    with pytest.raises(ValueError, match=re.escape("unknown lr_schedule 'step'")):
        training.fit(jax.random.key(0), spec, data, lr_schedule="step", **common)
    with pytest.raises(ValueError, match=re.escape("unknown select 'best'")):
        pipeline.train(spec, data, np.asarray(data.source), np.asarray(data.time), 0, select="best", **common)
