"""Tests of the JKOnet baselines (jkonetstar.baselines).

References: autodiff (jax.grad / jax.vjp of the Flax modules) for the closed-form maps and pullbacks, the
proximal map of a quadratic potential for the inner JKO solve, POT for the Sinkhorn cost, Danskin's
formula for its gradient. Properties: ICNN convexity and monotone gradient, divergence recorded as data.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest

from jkonetstar import baselines as B
from jkonetstar.models import MLP
from jkonetstar.simulate import simulate, to_population

KEY = jax.random.key(0)


@jax.jit
def _perturbed(params, key, scale):
    """``params`` with every leaf moved by N(0, scale^2): convexity must not depend on the initialisation."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([leaf + scale * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)])


_init_transport = jax.jit(B.init_transport, static_argnums=(1, 2, 3))


def _psi(transport, hidden, key, scale=0.5):
    module = B.ICNN(hidden) if transport == "icnn" else MLP(hidden)
    params = _perturbed(_init_transport(key, transport, 2, hidden), jax.random.fold_in(key, 1), scale)
    return params, jax.jit(lambda points: module.apply({"params": params}, points))


def _pairs(key, n=4000):
    kx, ky = jax.random.split(key)
    return (jax.random.uniform(kx, (n, 2), minval=-4, maxval=4), jax.random.uniform(ky, (n, 2), minval=-4, maxval=4))


# float32 evaluation of psi rounds each value to ~1e-7 relative; 1e-5 of the magnitudes involved (100x that)
# separates rounding from a real violation, which the non-convex MLP shows at the same tolerance.
def _midpoint_gaps(psi, x, y):
    mid = psi((x + y) / 2)
    end = (psi(x) + psi(y)) / 2
    tol = 1e-5 * (jnp.abs(psi(x)) + jnp.abs(psi(y)) + jnp.abs(mid)) + 1e-6
    return np.asarray(end - mid), np.asarray(tol)


@pytest.mark.parametrize("seed", range(4))
def test_icnn_is_convex_midpoint(seed):
    key = jax.random.key(seed)
    _, psi = _psi("icnn", (64, 64), key)
    gaps, tol = _midpoint_gaps(psi, *_pairs(jax.random.fold_in(key, 2)))
    assert np.all(gaps >= -tol), f"midpoint inequality violated by {-gaps.min():.3g}"


def test_midpoint_check_detects_a_non_convex_mlp():
    key = jax.random.key(7)
    _, psi = _psi("mlp", (64, 64), key, scale=1.0)
    gaps, tol = _midpoint_gaps(psi, *_pairs(jax.random.fold_in(key, 2)))
    assert np.any(gaps < -tol)


@pytest.mark.parametrize("seed", range(3))
def test_icnn_gradient_map_is_monotone_with_psd_hessian(seed):
    key = jax.random.key(seed)
    params, psi = _psi("icnn", (64, 64), key)
    x, y = _pairs(jax.random.fold_in(key, 2))
    tx, ty = jax.jit(jax.vmap(B.transport_map, in_axes=(None, None, 0)), static_argnums=1)(params, "icnn", jnp.stack([x, y]))
    inner = jnp.sum((tx - ty) * (x - y), axis=-1)
    # rounding of the two dot products: 1e-5 of |T(x) - T(y)| |x - y| (float32, reordered sums).
    tol = 1e-5 * jnp.linalg.norm(tx - ty, axis=-1) * jnp.linalg.norm(x - y, axis=-1) + 1e-6
    assert bool(jnp.all(inner >= -tol))
    hessians = jax.jit(jax.vmap(jax.hessian(lambda p: psi(p[None])[0])))(x[:200])
    eigenvalues = jnp.linalg.eigvalsh(hessians)
    assert float(eigenvalues.min()) >= -1e-4 * float(jnp.abs(eigenvalues).max())


@pytest.mark.parametrize(
    "transport, hidden", [("icnn", (64, 64)), ("icnn", (16, 8, 12)), ("icnn", (16,)), ("mlp", (64, 64)), ("mlp", (8, 6, 5))]
)
def test_closed_form_map_and_pullback_match_autodiff(transport, hidden):
    params, _ = _psi(transport, hidden, jax.random.key(3))
    x = jax.random.uniform(jax.random.key(4), (100, 2), minval=-4, maxval=4)
    r = jax.random.normal(jax.random.key(5), (100, 2))
    module = B.ICNN(hidden) if transport == "icnn" else MLP(hidden)

    @jax.jit
    def autodiff(p):
        mapped, vjp = jax.vjp(lambda q: jax.grad(lambda z: jnp.sum(module.apply({"params": q}, z)))(x), p)
        return mapped, vjp(r)[0]

    @jax.jit
    def closed_form(p):
        mapped, pullback = B._map_and_pullback(p, transport, x)
        return mapped, pullback(r), B.transport_map(p, transport, x)

    (reference, reference_grads), (mapped, grads, public) = autodiff(params), closed_form(params)
    np.testing.assert_array_equal(public, mapped)
    # same maths in float32, sums reordered: 1e-5 of the largest entry.
    np.testing.assert_allclose(mapped, reference, atol=1e-5 * float(jnp.abs(reference).max()))
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(reference_grads)):
        np.testing.assert_allclose(got, want, atol=1e-5 * float(jnp.abs(want).max()) + 1e-12)


@pytest.mark.parametrize("transport, hidden", [("icnn", (16, 8, 12)), ("mlp", (64, 64)), ("mlp", (8, 6, 5))])
def test_outer_gradient_through_map_and_pullback_matches_autodiff(transport, hidden):
    # The outer JKOnet gradient differentiates the map and the pullback once more (second derivatives of psi,
    # through the hand-written activation derivatives): compare with autodiff of the Flax module twice.
    params, _ = _psi(transport, hidden, jax.random.key(6))
    x = jax.random.uniform(jax.random.key(7), (64, 2), minval=-4, maxval=4)
    r, s = jax.random.normal(jax.random.key(8), (2, 64, 2))
    module = B.ICNN(hidden) if transport == "icnn" else MLP(hidden)
    weights = _perturbed(jax.tree.map(jnp.zeros_like, params), jax.random.key(9), 1.0)

    def scalar(mapped, grads):
        return jnp.sum(mapped * s) + sum(jnp.sum(g * w) for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(weights)))

    def by_autodiff(p):
        mapped, vjp = jax.vjp(lambda q: jax.grad(lambda z: jnp.sum(module.apply({"params": q}, z)))(x), p)
        return scalar(mapped, vjp(r)[0])

    def by_closed_form(p):
        mapped, pullback = B._map_and_pullback(p, transport, x)
        return scalar(mapped, pullback(r))

    want, got = jax.jit(jax.grad(by_autodiff))(params), jax.jit(jax.grad(by_closed_form))(params)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, atol=1e-4 * float(jnp.abs(w).max()) + 1e-10)


@pytest.mark.parametrize("variant", ["jkonet", "jkonet-vanilla"])
def test_outer_gradient_does_not_depend_on_what_the_inner_loop_saves(variant, monkeypatch):
    # The inner steps keep their matrix products for the backward pass and recompute the rest
    # (B._REMAT_POLICY); recomputing everything (policy None) and keeping everything must give the same
    # outer gradient. 10 inner steps: over 100 Adam steps whose second moments pass near 0, float32
    # round-off alone is amplified to ~10% of the gradient (measured), whatever is kept.
    rng = np.random.default_rng(0)
    x0 = jnp.asarray(rng.normal(size=(64, 2)), jnp.float32)
    x1 = x0 + 0.1
    params = MLP((16, 16)).init(jax.random.key(1), jnp.zeros(2))["params"]
    spec = B.get_baseline(variant)

    def outer_gradient(policy):
        monkeypatch.setattr(B, "_REMAT_POLICY", policy)
        return jax.jit(jax.grad(lambda p: B.jkonet_loss(p, jax.random.key(3), x0, x1, spec=spec, inner_steps=10)[0]))(
            params)

    default = outer_gradient(B._REMAT_POLICY)
    for policy in (None, jax.checkpoint_policies.everything_saveable):
        for got, want in zip(jax.tree.leaves(default), jax.tree.leaves(outer_gradient(policy))):
            # same maths in float32, reassociated by a different fusion: 1e-5 of the largest entry
            np.testing.assert_allclose(got, want, atol=1e-5 * float(jnp.abs(want).max()) + 1e-12)


def test_potential_value_and_gradient_match_the_mlp():
    params = MLP((64, 64)).init(jax.random.key(1), jnp.zeros(2))["params"]
    x = jax.random.uniform(jax.random.key(2), (300, 2), minval=-6, maxval=6)
    value, grad = jax.jit(B._mlp_value_and_gradient)(params, x)
    reference = MLP((64, 64)).apply({"params": params}, x)
    np.testing.assert_allclose(value, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(B.potential_values({"potential": params}, x), reference, rtol=1e-5, atol=1e-6)
    want = jax.grad(lambda q: jnp.sum(MLP((64, 64)).apply({"params": params}, q)))(x)
    np.testing.assert_allclose(grad, want, atol=1e-5 * float(jnp.abs(want).max()))
    # The inner loop's gradient-only path (no softplus of the last layer) gives the same gradient.
    zeros, grad_only = jax.jit(lambda p, q: B._mlp_value_and_gradient(p, q, with_value=False))(params, x)
    np.testing.assert_array_equal(zeros, np.zeros(len(x)))
    np.testing.assert_allclose(grad_only, want, atol=1e-5 * float(jnp.abs(want).max()))


@jax.jit
def _prox_solve(key, x, a, tau):
    return B.solve_jko_step(lambda y: (a * jnp.sum(y**2, -1) / 2, a * y), key, x, transport="icnn",
                            inner_steps=3000, inner_learning_rate=1e-3, tau=tau)


@pytest.mark.parametrize("a, tau", [(1.0, 1.0), (4.0, 0.5)])
def test_inner_loop_converges_to_the_proximal_map_of_a_quadratic(a, tau):
    """V(x) = a|x|^2/2: the JKO step is x / (1 + tau a), which the ICNN represents exactly (psi = c|x|^2/2).

    The objective is quadratic in T, so J(T) - J* = (a + 1/tau) / 2 * mean|T - T*|^2: the RMS map error
    measures the optimisation gap. Constant-step Adam hovers at a distance set by its step size; at lr 1e-3
    for 3000 steps we measured RMS errors 0.03-0.05 over seeds and cases, so the bound is 0.08, under 5% of
    the RMS displacement |x - T*(x)| (1.7 and 2.2 here). The training setting (lr 0.01, 100 steps) must
    still shrink the initial error (about 60) by over 100x.
    """
    x = jax.random.uniform(jax.random.key(1), (200, 2), minval=-4, maxval=4)
    target = x / (1 + tau * a)
    mapped, objective = _prox_solve(jax.random.key(2), x, a, tau)
    rmse = float(jnp.sqrt(jnp.mean(jnp.sum((mapped - target) ** 2, axis=-1))))
    assert rmse < 0.08
    optimum = float(jnp.mean(a * jnp.sum(target**2, -1) / 2 + jnp.sum((target - x) ** 2, -1) / (2 * tau)))
    assert float(objective[-1]) == pytest.approx(optimum, abs=(a + 1 / tau) / 2 * 0.08**2 * 2)
    initial = math.sqrt(2 * (float(objective[0]) - optimum) / (a + 1 / tau))
    mapped, _ = B.solve_jko_step(lambda y: (a * jnp.sum(y**2, -1) / 2, a * y), jax.random.key(2), x, tau=tau)
    assert float(jnp.sqrt(jnp.mean(jnp.sum((mapped - target) ** 2, axis=-1)))) < initial / 100


_sinkhorn_value_and_grad = jax.jit(jax.value_and_grad(lambda x, y, threshold: B.sinkhorn_cost(x, y, 1.0, threshold)))


@pytest.mark.parametrize("n, m, scale", [(7, 9, 1.0), (20, 15, 2.5)])
def test_sinkhorn_cost_matches_pot(n, m, scale):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 2)) * scale
    y = rng.normal(size=(m, 2)) * scale + 0.5
    a, b = ot.unif(n), ot.unif(m)
    cost = ot.dist(x, y)  # squared Euclidean, not halved: ott's PointCloud default
    plan = ot.sinkhorn(a, b, cost, reg=1.0, stopThr=1e-13, numItermax=100_000)
    linear_part = float(np.sum(plan * cost))
    # POT's sinkhorn2 is the linear part <P, C> only; ott's reg_ot_cost adds eps KL(P | a b^T).
    assert float(ot.sinkhorn2(a, b, cost, reg=1.0, stopThr=1e-13, numItermax=100_000)) == pytest.approx(linear_part)
    regularised = linear_part + 1.0 * float(np.sum(plan * np.log(plan / np.outer(a, b))))
    xs, ys = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    tight, grad = _sinkhorn_value_and_grad(xs, ys, 1e-6)
    # float32 Sinkhorn stopped at marginal error 1e-6: 1e-5 relative.
    assert float(tight) == pytest.approx(regularised, rel=1e-5)
    # the training setting (threshold 1e-3) changes the cost by well under 1e-3 relative.
    assert float(_sinkhorn_value_and_grad(xs, ys, 1e-3)[0]) == pytest.approx(regularised, rel=1e-3)
    # Danskin: d OT_eps / d x_i = sum_j P_ij 2 (x_i - y_j), with POT's plan.
    danskin = 2 * (plan.sum(1)[:, None] * x - plan @ y)
    np.testing.assert_allclose(grad, danskin, atol=1e-4 * np.abs(danskin).max())


@pytest.fixture(scope="module")
def small_snapshots():
    """Three snapshots of 40 trajectories (2 minibatches of 20)."""
    return np.asarray(simulate(jax.random.key(0), potential="wavy_plateau", n_particles=40, dim=2, n_steps=2))


@pytest.mark.parametrize(
    "variant",
    ["jkonet", "jkonet-vanilla", pytest.param("jkonet-monge-gap", marks=pytest.mark.slow)],  # slow: 20 s compile
)
def test_each_variant_trains_with_finite_history(variant, small_snapshots, monkeypatch):
    traces = []
    loss = B.jkonet_loss
    monkeypatch.setattr(B, "jkonet_loss", lambda *a, **k: (traces.append(1), loss(*a, **k))[1])
    evaluated = []

    def evaluate(params):
        evaluated.append(params)
        return 0.5

    lines = []
    result = B.fit_jkonet(KEY, variant, small_snapshots, epochs=3, batch_size=20, inner_steps=4, eval_every=2,
                          evaluate=evaluate, progress=lines.append)
    assert result.status == "ok"
    assert len(traces) == 1  # compiled once, ahead of epoch 1: later epochs do not retrace
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert all(set(row) == {"epoch", "loss", "seconds", "w1", "eval_seconds"} for row in result.history)
    assert all(math.isfinite(row["loss"]) and row["seconds"] > 0 for row in result.history)
    assert [row["w1"] for row in result.history][1:] == [0.5, 0.5] and math.isnan(result.history[0]["w1"])
    assert len(evaluated) == 2 and len(lines) == 2 and result.compile_seconds > 0
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(result.params))
    x = jnp.asarray(small_snapshots[0])
    prediction = B.predict_jkonet(result.params, variant, jax.random.key(1), x, inner_steps=4)
    assert prediction.shape == x.shape and bool(jnp.all(jnp.isfinite(prediction)))


def test_forced_divergence_is_recorded_with_the_last_finite_params(small_snapshots):
    evaluated = []
    result = B.fit_jkonet(KEY, "jkonet-vanilla", small_snapshots, epochs=4, batch_size=20, inner_steps=3,
                          learning_rate=1e20, clip_norm=1e30, eval_every=1, evaluate=lambda p: evaluated.append(p) or 1.0)
    assert result.status == "diverged"
    assert len(result.history) < 4 and math.isnan(result.history[-1]["loss"])
    assert len(evaluated) == len(result.history) - 1  # no evaluation of the diverged epoch
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(result.params))
    if len(result.history) == 1:  # diverged in epoch 1: the initial parameters (fit_jkonet's key split)
        initial = MLP((64, 64)).init(jax.random.split(KEY)[0], jnp.zeros(2))["params"]
        for got, want in zip(jax.tree.leaves(result.params["potential"]), jax.tree.leaves(initial)):
            np.testing.assert_array_equal(got, want)


def test_predict_steps():
    params = {"potential": MLP((64, 64)).init(jax.random.key(1), jnp.zeros(2))["params"]}
    x = jax.random.uniform(jax.random.key(2), (50, 2), minval=-4, maxval=4)
    explicit = B.predict_jkonet(params, "jkonet", KEY, x, tau=0.5, step="explicit")
    grad = jax.grad(lambda q: jnp.sum(MLP((64, 64)).apply({"params": params["potential"]}, q)))(x)
    np.testing.assert_allclose(explicit, x - 0.5 * grad, rtol=1e-5, atol=1e-6)
    first = B.predict_jkonet(params, "jkonet", jax.random.key(3), x, inner_steps=5)
    again = B.predict_jkonet(params, "jkonet", jax.random.key(3), x, inner_steps=5)
    other = B.predict_jkonet(params, "jkonet", jax.random.key(4), x, inner_steps=5)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    with pytest.raises(ValueError, match="unknown step 'implicit'"):
        B.predict_jkonet(params, "jkonet", KEY, x, step="implicit")


def test_save_and_load_params(tmp_path):
    params = {"potential": MLP((64, 64)).init(jax.random.key(1), jnp.zeros(2))["params"]}
    B.save_jkonet_params(tmp_path / "p.npz", params, "jkonet-vanilla")
    loaded, variant = B.load_jkonet_params(tmp_path / "p.npz")
    assert variant == "jkonet-vanilla"
    for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
        np.testing.assert_array_equal(got, want)
    (tmp_path / "bad.npz").write_bytes(b"not an npz file")
    with pytest.raises(ValueError, match="not a readable .npz"):
        B.load_jkonet_params(tmp_path / "bad.npz")
    np.savez(tmp_path / "unknown.npz", solver=np.asarray("jkonet-star"))
    with pytest.raises(ValueError, match="unknown baseline 'jkonet-star'"):
        B.load_jkonet_params(tmp_path / "unknown.npz")
    np.savez(tmp_path / "odd.npz", solver=np.asarray("jkonet"), stray=np.zeros(1))
    with pytest.raises(ValueError, match="unexpected array 'stray'"):
        B.load_jkonet_params(tmp_path / "odd.npz")
    with pytest.raises(ValueError, match="unknown baseline 'jkonet-x'"):
        B.save_jkonet_params(tmp_path / "q.npz", params, "jkonet-x")


def test_snapshots_from_population_round_trip():
    snapshots = np.asarray(simulate(jax.random.key(0), potential="flat", n_particles=10, dim=2, n_steps=3))
    x, t, particle = to_population(snapshots)
    order = np.random.default_rng(0).permutation(len(x))
    np.testing.assert_array_equal(B.snapshots_from_population(x[order], t[order], particle[order]), snapshots)
    np.testing.assert_array_equal(B.snapshots_from_population(x, t), snapshots)
    with pytest.raises(ValueError, match="equal size"):
        B.snapshots_from_population(x[1:], t[1:])
    with pytest.raises(ValueError, match="no trajectories"):
        B.snapshots_from_population(x, t, np.full_like(particle, -1))
    with pytest.raises(ValueError, match="different particle ids"):
        B.snapshots_from_population(x, t, np.where(t == 3, particle + 100, particle))
    # Balanced data keeps its trajectories even when an rng is given.
    np.testing.assert_array_equal(B.snapshots_from_population(x, t, rng=np.random.default_rng(1)), snapshots)


def test_unbalanced_snapshots_are_subsampled_to_the_smallest():
    rng = np.random.default_rng(0)
    sizes = {0: 7, 1: 4, 2: 9}
    t = np.concatenate([np.full(n, label) for label, n in sizes.items()])
    x = np.stack([t * 100.0 + np.arange(len(t)), -np.arange(len(t), dtype=float)], axis=1)  # rows identifiable
    snapshots = B.snapshots_from_population(x, t, rng=rng)
    assert snapshots.shape == (3, 4, 2)
    for label, snapshot in enumerate(snapshots):
        rows = x[t == label]
        # every row comes from its own snapshot, none twice
        assert all(any(np.array_equal(row, r) for r in rows) for row in snapshot)
        assert len({tuple(row) for row in snapshot}) == 4
    np.testing.assert_array_equal(np.sort(snapshots[1][:, 0]), np.sort(x[t == 1][:, 0]))  # the smallest: all of it
    again = B.snapshots_from_population(x, t, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(again, snapshots)


def test_every_baseline_is_registered():
    assert list(B.BASELINES) == ["jkonet", "jkonet-vanilla", "jkonet-monge-gap"]
    assert [B.get_baseline(name).transport for name in B.BASELINES] == ["icnn", "mlp", "mlp"]
    assert [B.get_baseline(name).monge_gap for name in B.BASELINES] == [0.0, 0.0, 1.0]


def test_bad_settings_are_rejected(small_snapshots):
    with pytest.raises(ValueError, match="unknown baseline 'jkonet-star'"):
        B.get_baseline("jkonet-star")
    with pytest.raises(ValueError, match="unknown transport 'resnet'"):
        B.init_transport(KEY, "resnet", 2)
    with pytest.raises(ValueError, match="epochs must be a positive integer, got 0"):
        B.fit_jkonet(KEY, "jkonet", small_snapshots, epochs=0)
    with pytest.raises(ValueError, match="inner_learning_rate must be > 0"):
        B.fit_jkonet(KEY, "jkonet", small_snapshots, epochs=1, inner_learning_rate=0.0)
    with pytest.raises(ValueError, match=r"snapshots must have shape \[T\+1 >= 2, n, d\]"):
        B.fit_jkonet(KEY, "jkonet", small_snapshots[0], epochs=1)
    with pytest.raises(ValueError, match="non-finite"):
        B.fit_jkonet(KEY, "jkonet", np.full((2, 4, 2), np.nan), epochs=1)
