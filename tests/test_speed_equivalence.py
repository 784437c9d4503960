"""The fast paths of the JKOnet* interaction term against the implementation they replaced (issue 12).

``jkonet_star_loss`` with an interaction term now runs one blocked sweep over the B^2 pairs with a
hand-written backward pass (a custom VJP); ``_interaction_mean`` sweeps an MLP ``W`` in row blocks with the
first layer split into per-point products. The reference below is a verbatim copy of the code before that
change (``mlp_input_gradient``, ``_energy_gradients``, ``_interaction_mean``, ``jkonet_star_loss`` of commit
c274dd9), differentiated by autodiff: loss, parameter gradient, gradients in the data, and the parameters
after training epochs must agree up to float32 round-off.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jkonetstar import models, training
from jkonetstar.training import TrainingData, TrainState, make_optimizer, train_epoch


# ---------------------------------------------------------------------------------------------------
# Reference: the implementation before the blocked sweep (copied, not imported).


def _ref_mlp_input_gradient(params, x):
    n_layers = len(params)
    pre = []
    h = x
    for i in range(n_layers - 1):
        layer = params[f"Dense_{i}"]
        a = h @ layer["kernel"] + layer["bias"]
        pre.append(a)
        h = jax.nn.softplus(a)
    g = jnp.broadcast_to(params[f"Dense_{n_layers - 1}"]["kernel"][:, 0], h.shape)
    for i in reversed(range(n_layers - 1)):
        g = g * jax.nn.sigmoid(pre[i])
        g = g @ params[f"Dense_{i}"]["kernel"].T
    return g


def _ref_energy_gradients(term_params, points, times=None):
    shape = points.shape
    flat = points.reshape(-1, shape[-1])
    if times is None:
        return _ref_mlp_input_gradient(term_params, flat).reshape(shape)
    inputs = jnp.concatenate([flat, times.reshape(-1, 1).astype(flat.dtype)], axis=1)
    return _ref_mlp_input_gradient(term_params, inputs)[:, :-1].reshape(shape)


def _ref_interaction_mean(term_params, points, population, coef=None, chunk=None):
    def rows(p, c):
        grads = _ref_energy_gradients(term_params, p[:, None, :] - population[None])
        if c is None:
            return jnp.mean(grads, axis=1)
        return jnp.einsum("nk,nkd->nd", c, grads) / jnp.maximum(jnp.sum(c, axis=1, keepdims=True), 1e-30)

    if chunk is None:
        return rows(points, coef)
    return jax.lax.map(lambda p: rows(p[None], None)[0], points, batch_size=chunk)


def _ref_loss(params, batch, *, spec, tau=1.0, interaction_average="snapshot"):
    g = jnp.zeros_like(batch.target)
    if spec.potential:
        times = batch.time if spec.time_dependent else None
        g = g + _ref_energy_gradients(params["potential"], batch.target, times)
    if spec.interaction:
        if interaction_average == "snapshot":
            same = batch.time[:, None] == batch.time[None, :]
            coef = same * batch.weight[None, :]
        else:
            coef = jnp.broadcast_to((batch.weight > 0).astype(batch.target.dtype), (len(batch.weight),) * 2)
        g = g + _ref_interaction_mean(params["interaction"], batch.target, batch.target, coef)
    if spec.internal:
        g = g + params["beta"] * batch.grad_rho / batch.rho[:, None]
    residual = tau * g + (batch.target - batch.source)
    return jnp.sum(batch.weight * jnp.sum(residual**2, axis=-1))


# ---------------------------------------------------------------------------------------------------
# Fixed inputs

SPEC = models.get_solver("jkonet-star")


def _batch(seed, m, n_padding, dim=2, n_labels=2):
    """``m`` rows of ``n_labels`` interleaved snapshots, the last ``n_padding`` with weight 0 (minibatch padding)."""
    rng = np.random.default_rng(seed)
    source = rng.normal(size=(m, dim))
    target = source + 0.3 * rng.normal(size=(m, dim))
    weight = rng.uniform(0.5, 1.5, size=m) / m
    weight[m - n_padding:] = 0.0
    return TrainingData(
        source=jnp.asarray(source, jnp.float32), target=jnp.asarray(target, jnp.float32),
        time=jnp.asarray(1 + np.arange(m) % n_labels, jnp.int32), weight=jnp.asarray(weight, jnp.float32),
        rho=jnp.asarray(rng.uniform(0.1, 1.0, size=m), jnp.float32),
        grad_rho=jnp.asarray(rng.normal(size=(m, dim)), jnp.float32))


def _params(seed, hidden, dim=2, scale=1.0):
    """Initial parameters with every leaf moved by N(0, (scale / 4)^2), so no weight or bias is trivially 0."""
    params = models.init_params(jax.random.key(seed), SPEC, dim, hidden)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
    leaves = [leaf + 0.25 * scale * jax.random.normal(k, leaf.shape, leaf.dtype) for leaf, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, leaves)


def _close(got, want, rtol):
    """Leafwise ``|got - want| <= rtol * max|want|`` (sums reordered: error relative to the leaf's scale)."""
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        np.testing.assert_allclose(g, w, rtol=0, atol=rtol * float(np.max(np.abs(w))) + 1e-30)


# float32: a gradient entry sums ~B^2 = 62500 pair terms in a different order (blocks of rows, the coupling
# weight applied before instead of after the pair gradient); the error of such sums is ~sqrt(B^2) * 6e-8
# of the largest term, i.e. ~2e-5 of the leaf's scale at worst, 1e-6 in practice. The loss is one such sum.
LOSS_RTOL, GRAD_RTOL = 1e-5, 2e-5


@pytest.mark.parametrize("average", ["snapshot", "minibatch"])
@pytest.mark.parametrize("m, n_padding, hidden", [(250, 20, (64, 64)), (130, 9, (64, 64)), (40, 5, (8, 6, 5)),
                                                   (12, 3, (4,))])
def test_loss_and_gradients_equal_the_previous_implementation(average, m, n_padding, hidden):
    # 250 rows: 10 blocks of 25; 130: 3 blocks of 48, the last padded; 40 and 12: one block, other depths.
    params = _params(1, hidden) | {"beta": jnp.asarray(0.3, jnp.float32)}
    batch = _batch(m, m, n_padding)
    tau = 0.7
    floats = batch._replace(time=None)  # the snapshot label is an integer: no gradient

    def fast(p, b, t):
        return models.jkonet_star_loss(p, b._replace(time=batch.time), spec=SPEC, tau=t, interaction_average=average)

    def ref(p, b, t):
        return _ref_loss(p, b._replace(time=batch.time), spec=SPEC, tau=t, interaction_average=average)

    got_loss, got_grads = jax.jit(jax.value_and_grad(fast, (0, 1, 2)))(params, floats, tau)
    want_loss, want_grads = jax.jit(jax.value_and_grad(ref, (0, 1, 2)))(params, floats, tau)
    np.testing.assert_allclose(float(got_loss), float(want_loss), rtol=LOSS_RTOL)
    got_params, got_batch, got_tau = got_grads
    want_params, want_batch, want_tau = want_grads
    _close(got_params, want_params, GRAD_RTOL)
    for field in ("source", "target", "weight", "rho", "grad_rho"):
        _close(getattr(got_batch, field), getattr(want_batch, field), GRAD_RTOL)
    np.testing.assert_allclose(float(got_tau), float(want_tau), rtol=GRAD_RTOL)
    # The loss alone (no differentiation) runs the sweep without its backward pass.
    np.testing.assert_allclose(float(jax.jit(fast)(params, floats, tau)), float(want_loss), rtol=LOSS_RTOL)


def _groups_data(seed, n_per_snapshot=300, n_snapshots=3):
    rng = np.random.default_rng(seed)
    m = n_per_snapshot * n_snapshots
    source = rng.normal(size=(m, 2))
    return TrainingData(
        source=jnp.asarray(source, jnp.float32),
        target=jnp.asarray(source * 0.95 + 0.05 * rng.normal(size=(m, 2)), jnp.float32),
        time=jnp.asarray(np.repeat(np.arange(1, n_snapshots + 1), n_per_snapshot), jnp.int32),
        weight=jnp.full((m,), 1.0 / n_per_snapshot, jnp.float32),
        rho=jnp.asarray(rng.uniform(0.2, 1.0, size=m), jnp.float32),
        grad_rho=jnp.asarray(0.1 * rng.normal(size=(m, 2)), jnp.float32))


def _ref_train_epoch(state, key, data, *, spec, optimizer, batch_size, tau=1.0, interaction_average="snapshot",
                     groups=None):
    """``training.train_epoch`` before issue 12 (per-leaf optimiser, per-step gather), with the reference loss."""
    index, valid = training.minibatch_index(key, data.source.shape[0], batch_size, groups)

    def step(state, inputs):
        rows, keep = inputs
        batch = jax.tree.map(lambda a: a[rows], data)
        batch = batch._replace(weight=batch.weight * keep)
        loss, grads = jax.value_and_grad(_ref_loss)(
            state.params, batch, spec=spec, tau=tau, interaction_average=interaction_average
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state), loss

    state, losses = jax.lax.scan(step, state, (index, valid))
    return state, jnp.sum(losses)


@pytest.mark.parametrize("solver, average, groups", [("jkonet-star", "snapshot", (300, 300, 300)),
                                                      ("jkonet-star", "minibatch", None),
                                                      ("jkonet-star-potential", "snapshot", None)])
def test_trained_parameters_equal_the_previous_implementation(solver, average, groups):
    # Three epochs of 300-row snapshots in minibatches of 128 (the last of each snapshot padded with
    # zero-weight rows): train_epoch as it is now against its previous version with the reference loss.
    # Adam normalises each update, so round-off in the gradients moves the parameters by ~1e-6 of lr per step.
    spec = models.get_solver(solver)
    data = _groups_data(0)
    optimizer = make_optimizer(1e-3)
    params = models.init_params(jax.random.key(0), spec, 2)
    if spec.internal:
        params = params | {"beta": jnp.asarray(0.1, jnp.float32)}

    def run(epoch_fn):
        epoch = jax.jit(functools.partial(epoch_fn, spec=spec, optimizer=optimizer, batch_size=128,
                                          interaction_average=average, groups=groups))
        state, losses = TrainState(params, optimizer.init(params)), []
        for k in range(3):
            state, loss_value = epoch(state, jax.random.key(k), data)
            losses.append(float(loss_value))
        return state, losses

    got_state, got_losses = run(train_epoch)
    want_state, want_losses = run(_ref_train_epoch)
    np.testing.assert_allclose(got_losses, want_losses, rtol=LOSS_RTOL)
    assert jax.tree.structure(got_state) == jax.tree.structure(want_state)
    # 3 epochs x 8 steps of at most lr = 1e-3 each: agreement to 1e-3 of the largest possible move (2.4e-5).
    for g, w in zip(jax.tree.leaves(got_state.params), jax.tree.leaves(want_state.params), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0, atol=1e-3 * 24 * 1e-3)
    # Adam's moments: the same maths, so the same up to the gradients' round-off.
    _close(got_state.opt_state, want_state.opt_state, GRAD_RTOL)
    moved = max(float(jnp.max(jnp.abs(a - b)))
                for a, b in zip(jax.tree.leaves(want_state.params), jax.tree.leaves(params)))
    assert moved > 1e-2  # training did move the parameters (the comparison is not vacuous)


@pytest.mark.parametrize("n, k", [(250, 250), (70, 1000), (1000, 30)])
def test_interaction_mean_equals_the_previous_implementation(n, k):
    # The prediction path: mean over a population (chunked reference), and coupling-weighted rows.
    params = _params(2, (64, 64))["interaction"]
    rng = np.random.default_rng(3)
    points = jnp.asarray(rng.normal(size=(n, 2)), jnp.float32)
    population = jnp.asarray(rng.normal(size=(k, 2)), jnp.float32)
    coef = jnp.asarray(rng.uniform(0.0, 1.0, size=(n, k)) * (rng.uniform(size=(n, k)) > 0.3), jnp.float32)
    got = jax.jit(lambda p, x, y: models._interaction_mean(p, None, x, y, chunk=64))(params, points, population)
    want = jax.jit(lambda p, x, y: _ref_interaction_mean(p, x, y, chunk=64))(params, points, population)
    _close(got, want, GRAD_RTOL)
    got = jax.jit(lambda p, x, y, c: models._interaction_mean(p, None, x, y, c))(params, points, population, coef)
    want = jax.jit(lambda p, x, y, c: _ref_interaction_mean(p, x, y, c))(params, points, population, coef)
    _close(got, want, GRAD_RTOL)


@pytest.mark.parametrize("hidden", [(64, 64), (8, 6, 5), (4,)])
def test_mlp_input_gradient_equals_the_previous_implementation_and_autodiff(hidden):
    # softplus and sigmoid now share one exponential and carry closed-form derivatives (custom JVP): the
    # gradient, its parameter VJP (second order, as in the loss) and forward mode must be unchanged.
    params = _params(4, hidden)["potential"]
    x = jnp.asarray(np.random.default_rng(5).normal(size=(50, 2)) * 3, jnp.float32)
    cot = jnp.asarray(np.random.default_rng(6).normal(size=(50, 2)), jnp.float32)
    module = models.MLP(hidden)
    autodiff = jax.vmap(jax.grad(lambda z: module.apply({"params": params}, z)))(x)
    _close(models.mlp_input_gradient(params, x), autodiff, 1e-5)
    _close(models.mlp_input_gradient(params, x), _ref_mlp_input_gradient(params, x), 1e-6)
    vjp = lambda f: jax.grad(lambda p: jnp.sum(f(p, x) * cot))(params)  # noqa: E731
    _close(vjp(models.mlp_input_gradient), vjp(_ref_mlp_input_gradient), 1e-5)
    hessian = lambda f: jax.jacfwd(lambda z: f(params, z[None])[0])(x[0])  # noqa: E731
    _close(hessian(models.mlp_input_gradient), hessian(_ref_mlp_input_gradient), 1e-5)


# ---------------------------------------------------------------------------------------------------
# The epoch's shuffle: training._permutation (one-array sort + rank search) against jax.random.permutation.


@pytest.mark.parametrize("n", [1, 2, 3, 20, 250, 1625, 1626, 5000])
def test_permutation_equals_jax_random_permutation(n):
    # 1625 / 1626: JAX's shuffle switches from one sort round to two between them.
    fast = jax.jit(lambda k: training._permutation(k, n))
    want = jax.jit(lambda k: jax.random.permutation(k, n))
    for seed in range(5):
        key = jax.random.key(seed)
        np.testing.assert_array_equal(np.asarray(fast(key)), np.asarray(want(key)))


def test_stable_argsort_with_ties_equals_the_key_value_sort():
    # Equal keys (impossible to rely on with random 32-bit keys) take the key-value sort: still stable.
    keys = jnp.asarray(np.random.default_rng(0).integers(0, 40, size=300), jnp.uint32)
    got = np.asarray(jax.jit(training._stable_argsort)(keys))
    np.testing.assert_array_equal(got, np.argsort(np.asarray(keys), kind="stable"))
    distinct = jnp.asarray(np.random.default_rng(1).permutation(2**20)[:777], jnp.uint32)
    got = np.asarray(jax.jit(training._stable_argsort)(distinct))
    np.testing.assert_array_equal(got, np.argsort(np.asarray(distinct), kind="stable"))


@pytest.mark.parametrize("m, batch_size, groups", [(5000, 250, None), (5000, 250, (1000,) * 5),
                                                   (900, 128, (300, 300, 300)), (37, 8, (20, 17))])
def test_minibatch_index_equals_the_previous_shuffle(m, batch_size, groups, monkeypatch):
    # Reference: the same function with its shuffle swapped back to jax.random.permutation (before issue 12).
    fast = jax.jit(lambda k: training.minibatch_index(k, m, batch_size, groups))
    got_all = [fast(jax.random.key(seed)) for seed in range(3)]
    monkeypatch.setattr(training, "_permutation", jax.random.permutation)
    want = jax.jit(lambda k: training.minibatch_index(k, m, batch_size, groups))
    for seed in range(3):
        for got, ref in zip(got_all[seed], want(jax.random.key(seed)), strict=True):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
