"""JKOnet* models: the solver registry, energy parametrisations, the loss, the closed-form fit and prediction.

A solver is data, a :class:`SolverSpec`: which energy terms it learns (potential V, interaction W,
internal energy with coefficient beta), whether they are MLPs or linear in fixed features, and whether V
depends on time. Parameters are a dict ``{"potential", "interaction", "beta"}`` with ``None`` for an absent
term (linear models add the ``"features"`` they were fitted with), so one loss and one predictor serve all.

JKOnet* fits the first-order optimality condition of the JKO step (paper Prop. 3.2, Eq. 10-11): along an
optimal coupling of consecutive snapshots, each coupled pair ``(x, y) = (x_t, x_{t+1})`` satisfies

.. math::
    \\tau\\,G(y) + (y - x) = 0, \\qquad
    G(y) = \\nabla V(y) + \\int \\nabla W(y - y')\\,d\\mu_{t+1}(y') + \\beta\\,\\frac{\\nabla\\rho_{t+1}(y)}{\\rho_{t+1}(y)},

and the loss is the coupling-weighted squared residual.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jkonetstar import features as feats
from jkonetstar import methods
from jkonetstar.methods import SolverSpec
from jkonetstar.io import load_npz, save_npz

__all__ = [
    "SolverSpec",
    "SOLVERS",
    "get_solver",
    "MLP",
    "mlp_input_gradient",
    "init_params",
    "jkonet_star_loss",
    "fit_linear",
    "PREDICT_STEPS",
    "default_predict_step",
    "StepInfo",
    "predict_step_info",
    "predict",
    "potential_values",
    "energy_gradients",
    "save_params",
    "load_params",
]


SOLVERS = methods.SOLVERS
"""The JKOnet* solvers by name (:data:`jkonetstar.methods.METHODS`, family ``jkonet-star``)."""

INTERACTION_AVERAGES = ("snapshot", "minibatch")


def get_solver(name: str) -> SolverSpec:
    """Returns the spec of solver ``name``; raises ValueError listing the known ones."""
    return methods.get(name, "jkonet-star")


@functools.cache
def _mlp_class():
    """The Flax module :class:`MLP`, defined on first use: importing Flax costs about 0.4 s, which evaluation
    jobs (pure-JAX forward and backward passes over saved parameters) never pay."""
    import flax.linen as nn

    class MLP(nn.Module):
        """Scalar energy ``R^d -> R``: Dense layers of width ``hidden`` with softplus, then a linear output."""

        hidden: tuple[int, ...] = (64, 64)

        @nn.compact
        def __call__(self, x):
            for width in self.hidden:
                x = nn.softplus(nn.Dense(width)(x))
            return nn.Dense(1)(x)[..., 0]

    MLP.__module__ = __name__
    MLP.__qualname__ = "MLP"
    return MLP


def __getattr__(name):
    if name == "MLP":  # jkonetstar.models.MLP, built (and Flax imported) on first access
        return _mlp_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _mlp_apply(params, x):
    """:class:`MLP` applied to ``x`` ``[..., d]`` in plain JAX (the Flax module's Dense/softplus layers, without
    importing Flax): ``softplus(x W_k + b_k)`` per hidden layer, then the linear output."""
    n_layers = len(params)
    for i in range(n_layers):
        layer = params[f"Dense_{i}"]
        x = jnp.matmul(x, layer["kernel"]) + layer["bias"]
        if i < n_layers - 1:
            x = jax.nn.softplus(x)
    return x[..., 0]


def init_params(key: jax.Array, spec: SolverSpec, dim: int, hidden: tuple[int, ...] = (64, 64)) -> dict:
    """Returns initial parameters of an MLP solver; each term gets its own key (never shared weights)."""
    if spec.parametrisation != "mlp":
        raise ValueError(f"solver {spec.name!r} is fitted in closed form; it has no initial parameters")
    key_v, key_w = jax.random.split(key)
    module = _mlp_class()(tuple(hidden))
    dim_v = dim + 1 if spec.time_dependent else dim
    return {
        "potential": module.init(key_v, jnp.zeros(dim_v))["params"] if spec.potential else None,
        "interaction": module.init(key_w, jnp.zeros(dim))["params"] if spec.interaction else None,
        "beta": jnp.zeros(()) if spec.internal else None,
    }


@jax.custom_jvp
def _softplus_sigmoid(pre):
    """``(softplus(pre), sigmoid(pre))`` from one ``exp(-|pre|)``; derivatives ``(s, s (1 - s))`` in closed form."""
    e = jnp.exp(-jnp.abs(pre))
    return jnp.maximum(pre, 0.0) + jnp.log1p(e), jnp.where(pre >= 0, 1.0, e) / (1.0 + e)


@_softplus_sigmoid.defjvp
def _softplus_sigmoid_jvp(primals, tangents):
    (pre,), (d_pre,) = primals, tangents
    softplus, sigmoid = _softplus_sigmoid(pre)
    return (softplus, sigmoid), (sigmoid * d_pre, sigmoid * (1.0 - sigmoid) * d_pre)


def mlp_input_gradient(params: dict, x: jax.Array) -> jax.Array:
    """Returns ``grad_x MLP(x)`` for a batch ``x`` ``[n, d_in]`` as ``[n, d_in]``, by an explicit backward pass.

    Equal to ``vmap(grad(MLP.apply))`` but written as batched matrix products (softplus' = sigmoid, both from
    one exponential, with closed-form derivatives), which differentiates cleanly again in the parameters.
    """
    n_layers = len(params)
    sigmoids = []
    h = x
    for i in range(n_layers - 1):
        layer = params[f"Dense_{i}"]
        h, sigmoid = _softplus_sigmoid(h @ layer["kernel"] + layer["bias"])
        sigmoids.append(sigmoid)
    g = jnp.broadcast_to(params[f"Dense_{n_layers - 1}"]["kernel"][:, 0], h.shape)
    for i in reversed(range(n_layers - 1)):
        g = g * sigmoids[i]
        g = g @ params[f"Dense_{i}"]["kernel"].T
    return g


def _energy_gradients(term_params, fmap, points, times=None):
    """Gradient of one energy term at ``points`` ``[..., d]`` -> ``[..., d]`` (MLP or linear)."""
    shape = points.shape
    flat = points.reshape(-1, shape[-1])
    if fmap is not None:
        return jnp.einsum("ndp,p->nd", feats.feature_gradients(fmap, flat), term_params).reshape(shape)
    if times is None:
        return mlp_input_gradient(term_params, flat).reshape(shape)
    inputs = jnp.concatenate([flat, times.reshape(-1, 1).astype(flat.dtype)], axis=1)
    return mlp_input_gradient(term_params, inputs)[:, :-1].reshape(shape)


def _feature_map(params):
    """The feature map stored with linear parameters (``None`` for MLPs); jit-safe: degree from shapes."""
    f = params.get("features")
    if f is None:
        return None
    n_poly, dim = f["exponents"].shape
    degree = round((n_poly + 1) ** (1.0 / dim)) - 1
    return feats.FeatureMap(f["exponents"], f["centres"], f["width"], degree, f["axis"])


# The interaction term evaluates grad W at all B^2 differences y_i - y_j of a minibatch. Its parameter gradient
# costs six products of a [pairs, 64] block with a 64 x 64 matrix per pair (two forward, four backward; we
# found no exact restructuring with fewer); what the helpers below save is everything around them. The first
# layer is linear, so its pre-activation is (y_i W_0 + b_0) - (y_j W_0): O(B) products instead of O(B^2).
# Rows are processed in blocks of about _PAIR_BLOCK pairs (a block's activations, 1.6 MB each, stay in cache),
# and under differentiation each block runs its hand-written backward pass right after its forward pass, in
# the same sweep (the cotangent of a row's residual needs only that row's pairs), so no [B^2, 64] activation
# is stored and read back, and XLA drops the cotangents nobody asks for (coupling weights, usually).

_PAIR_BLOCK = 6250
"""Pairs per block of the interaction sweep (rows per block: ``_PAIR_BLOCK // n``, at least 1); 2500-12500
measured equal within noise on 2 cores, 62500 (one block per minibatch) 15% slower."""


def _mlp_layers(params):
    """Kernels and biases of an :class:`MLP`'s layers, input layer first."""
    layers = [params[f"Dense_{k}"] for k in range(len(params))]
    return [layer["kernel"] for layer in layers], [layer["bias"] for layer in layers]


def _pair_forward(kernel, bias, first_rows, first_cols):
    """Activations and input-gradient chain of the pair network at ``first_rows_i - first_cols_j``.

    ``first_rows`` ``[r, H_0]`` and ``first_cols`` ``[n, H_0]`` are the two parts of the first pre-activation
    (``y_i W_0 + b_0`` and ``y_j W_0``); pairs are row-major, ``[r * n, .]``. Hidden layer ``k`` has
    ``pre_k = h_{k-1} W_k + b_k``, ``h_k = softplus(pre_k)``, ``s_k = sigmoid(pre_k)``; the input gradient is
    ``u_0 W_0^T`` with ``g_{L-1} = w`` (output kernel), ``u_k = g_k * s_k``, ``g_{k-1} = u_k W_k^T``.
    Returns ``(h, s, g, u)`` per hidden layer (``h`` without the last layer's, which no gradient needs).
    """
    width = first_cols.shape[1]
    pre = (first_rows[:, None, :] - first_cols[None]).reshape(-1, width)
    n_hidden = len(kernel) - 1
    h, s = [], []
    for k in range(n_hidden):
        if k == n_hidden - 1:
            s.append(jax.nn.sigmoid(pre))
        else:
            softplus, sigmoid = _softplus_sigmoid(pre)
            h.append(softplus)
            s.append(sigmoid)
            pre = softplus @ kernel[k + 1] + bias[k + 1]
    g, u = [None] * n_hidden, [None] * n_hidden
    g[-1] = kernel[-1][:, 0]
    for k in range(n_hidden - 1, -1, -1):
        u[k] = g[k] * s[k]
        if k > 0:
            g[k - 1] = u[k] @ kernel[k].T
    return h, s, g, u


def _pair_pullback(kernel, h, s, g, u, cot_u0):
    """Parameter cotangents of ``sum <cot_u0, u_0>`` over pairs, and the cotangent of the first pre-activation.

    Up the gradient chain (``u_k = g_k * s_k``, ``g_{k-1} = u_k W_k^T``), then down the forward chain through
    ``s_k' = s_k (1 - s_k)``. Returns ``(d_kernel, d_bias, cot_pre_0)`` for layers ``1..L`` (the output bias
    gets no gradient: ``grad W`` does not depend on it).
    """
    n_hidden = len(kernel) - 1
    ones = jnp.ones((cot_u0.shape[0],), cot_u0.dtype)
    d_kernel, d_bias, cot_pre_s = [None] * (n_hidden + 1), [None] * (n_hidden + 1), [None] * n_hidden
    cot_u = cot_u0
    for k in range(n_hidden):
        if k > 0:  # g_{k-1} = u_k W_k^T
            d_kernel[k] = cot_g.T @ u[k]
            cot_u = cot_g @ kernel[k]
        cot_pre_s[k] = cot_u * g[k] * s[k] * (1.0 - s[k])
        cot_g = cot_u * s[k]  # cotangent of g_k
    d_kernel[n_hidden] = (ones @ cot_g)[:, None]
    d_bias[n_hidden] = jnp.zeros((1,), cot_u0.dtype)
    cot_pre = cot_pre_s[-1]
    for k in range(n_hidden - 1, 0, -1):  # pre_k = h_{k-1} W_k + b_k
        d_kernel[k] = d_kernel[k] + h[k - 1].T @ cot_pre
        d_bias[k] = ones @ cot_pre
        cot_pre = cot_pre_s[k - 1] + (cot_pre @ kernel[k].T) * s[k - 1]
    return d_kernel, d_bias, cot_pre


def _row_blocks(n, k):
    """Rows per block and number of blocks for ``n`` rows of ``k`` pairs each."""
    rows = max(1, min(n, _PAIR_BLOCK // k))
    return rows, -(-n // rows)


def _blocked(arrays, rows, n_blocks):
    """Pads the leading axis of each array to ``rows * n_blocks`` with zeros and splits it into blocks."""
    def split(a):
        a = jnp.pad(a, [(0, rows * n_blocks - a.shape[0])] + [(0, 0)] * (a.ndim - 1))
        return a.reshape(n_blocks, rows, *a.shape[1:])
    return [split(a) for a in arrays]


def _sweep(block, carry, xs, n):
    """Runs ``block(carry, x) -> (carry, per_row)`` over the row blocks ``xs``; per-row outputs cut to ``n``."""
    if xs[0].shape[0] == 1:
        carry, per_row = block(carry, [x[0] for x in xs])
        return carry, jax.tree.map(lambda a: a[:n], per_row)
    carry, per_row = jax.lax.scan(block, carry, xs)
    return carry, jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:n], per_row)


def _mlp_interaction_mean(params, points, population, coef=None):
    """``sum_j coef_ij grad W(points_i - population_j)`` (``coef`` ``[n, k]``; ``None``: ``1 / k``) -> ``[n, d]``."""
    kernel, bias = _mlp_layers(params)
    first_cols = population @ kernel[0]
    n = points.shape[0]
    rows, n_blocks = _row_blocks(n, population.shape[0])
    xs = _blocked([points @ kernel[0] + bias[0]] + ([] if coef is None else [coef]), rows, n_blocks)

    def block(carry, x):
        u0 = _pair_forward(kernel, bias, x[0], first_cols)[3][0].reshape(x[0].shape[0], -1, first_cols.shape[1])
        summed = jnp.mean(u0, axis=1) if coef is None else jnp.einsum("rk,rkh->rh", x[1], u0)
        return carry, summed @ kernel[0].T

    return _sweep(block, (), xs, n)[1]


def _interaction_loss_sweep(params, points, coef, rest, weight, tau, with_grad):
    """Loss ``sum_i w_i |tau sum_j coef_ij grad W(y_i - y_j) + rest_i|^2`` and, ``with_grad``, its cotangents."""
    kernel, bias = _mlp_layers(params)
    first_cols = points @ kernel[0]
    n, width = first_cols.shape
    rows, n_blocks = _row_blocks(n, n)
    xs = _blocked([points @ kernel[0] + bias[0], coef, rest, weight], rows, n_blocks)

    def block(carry, x):
        first_rows, coef_rows, rest_rows, weight_rows = x
        h, s, g, u = _pair_forward(kernel, bias, first_rows, first_cols)
        u0 = u[0].reshape(first_rows.shape[0], n, width)
        summed = jnp.einsum("rk,rkh->rh", coef_rows, u0)
        interaction = summed @ kernel[0].T
        residual = tau * interaction + rest_rows
        squares = jnp.sum(residual**2, axis=-1)
        loss = carry[0] + jnp.sum(weight_rows * squares)
        if not with_grad:
            return (loss,), ()
        cot_residual = 2.0 * weight_rows[:, None] * residual
        cot_interaction = tau * cot_residual
        cot_summed = cot_interaction @ kernel[0]
        cot_u0 = (coef_rows[:, :, None] * cot_summed[:, None, :]).reshape(-1, width)
        d_kernel, d_bias, cot_pre = _pair_pullback(kernel, h, s, g, u, cot_u0)
        cot_pre = cot_pre.reshape(first_rows.shape[0], n, width)
        accumulated = (d_kernel[1:], d_bias[1:], cot_interaction.T @ summed, -jnp.sum(cot_pre, axis=0),
                       jnp.sum(cot_residual * interaction))
        carry = (loss, jax.tree.map(jnp.add, carry[1], accumulated))
        per_row = (jnp.sum(cot_pre, axis=1), jnp.einsum("rh,rkh->rk", cot_summed, u0), cot_residual, squares)
        return carry, per_row

    zero = jnp.zeros((), points.dtype)
    if not with_grad:
        return _sweep(block, (zero,), xs, n)[0][0]
    accumulated = ([jnp.zeros_like(k) for k in kernel[1:]], [jnp.zeros_like(b) for b in bias[1:-1]]
                   + [jnp.zeros((1,), points.dtype)], jnp.zeros_like(kernel[0]), jnp.zeros_like(first_cols), zero)
    (loss, accumulated), per_row = _sweep(block, (zero, accumulated), xs, n)
    d_kernel, d_bias, d_kernel_0, cot_first_cols, d_tau = accumulated
    cot_first_rows, d_coef, d_rest, d_weight = per_row
    cot_first = cot_first_rows + cot_first_cols
    d_kernel = [d_kernel_0 + points.T @ cot_first] + list(d_kernel)
    d_bias = [jnp.sum(cot_first_rows, axis=0)] + list(d_bias)
    d_params = jax.tree.unflatten(jax.tree.structure(params), jax.tree.leaves(
        {f"Dense_{k}": {"kernel": dk, "bias": db} for k, (dk, db) in enumerate(zip(d_kernel, d_bias))}))
    cotangents = (d_params, cot_first @ kernel[0].T, d_coef, d_rest, d_weight, d_tau)
    inputs = (params, points, coef, rest, weight, tau)
    return loss, jax.tree.map(lambda c, a: c.astype(a.dtype), cotangents, inputs)  # mixed float widths


@jax.custom_vjp
def _interaction_residual_loss(params, points, coef, rest, weight, tau):
    """``sum_i weight_i |tau sum_j coef_ij grad W(points_i - points_j) + rest_i|^2``, ``W`` an :class:`MLP`.

    Differentiable in every argument (the loss of one sweep, the cotangents of the same sweep).
    """
    return _interaction_loss_sweep(params, points, coef, rest, weight, tau, with_grad=False)


def _interaction_residual_loss_fwd(params, points, coef, rest, weight, tau):
    return _interaction_loss_sweep(params, points, coef, rest, weight, tau, with_grad=True)


def _interaction_residual_loss_bwd(cotangents, g):
    return jax.tree.map(lambda c: (g * c).astype(c.dtype), cotangents)


_interaction_residual_loss.defvjp(_interaction_residual_loss_fwd, _interaction_residual_loss_bwd)


def _interaction_mean(term_params, fmap, points, population, coef=None, chunk=None):
    """``sum_j c_ij grad W(points_i - population_j) / sum_j c_ij`` -> ``[n, d]``; ``c`` defaults to uniform.

    With ``chunk``, rows of ``points`` are processed ``chunk`` at a time to bound memory (n * k pairs); an
    MLP ``W`` is always swept in blocks of rows (:func:`_mlp_interaction_mean`) and ignores ``chunk``.
    """

    if fmap is not None:
        return jnp.einsum("ndk,k->nd", feats.mean_feature_gradients(fmap, points, population), term_params)
    if len(term_params) > 1:
        if coef is not None:
            coef = coef / jnp.maximum(jnp.sum(coef, axis=1, keepdims=True), 1e-30)
        return _mlp_interaction_mean(term_params, points, population, coef)

    def rows(p, c):
        grads = _energy_gradients(term_params, fmap, p[:, None, :] - population[None])
        if c is None:
            return jnp.mean(grads, axis=1)
        return jnp.einsum("nk,nkd->nd", c, grads) / jnp.maximum(jnp.sum(c, axis=1, keepdims=True), 1e-30)

    if chunk is None:
        return rows(points, coef)
    return jax.lax.map(lambda p: rows(p[None], None)[0], points, batch_size=chunk)


def jkonet_star_loss(params: dict, batch, *, spec: SolverSpec, tau: float = 1.0, interaction_average: str = "snapshot"):
    """Returns the JKOnet* loss of a minibatch: ``sum_i w_i |tau_i G(y_i) + (y_i - x_i)|^2`` (paper Eq. 11).

    Args:
        params: MLP parameters from :func:`init_params`.
        batch: a :class:`jkonetstar.training.TrainingData` of ``B`` coupling rows (source ``x``, target ``y``,
            target snapshot label, weight ``w``, density ``rho`` and ``grad_rho`` at ``y``). Rows of zero
            weight are padding and change nothing.
        spec: the solver.
        tau: JKO step; the paper trains with ``tau = 1`` on data simulated with ``dt = 0.01``, so the learnt
            energies approximate ``dt * V``. Row ``i`` steps ``tau * batch.tau_scale[i]`` (snapshots at real
            times: the transition's gap in the dataset's time unit, :func:`jkonetstar.pipeline.time_scales`;
            ones for evenly spaced labels, which leaves every number as with ``tau`` alone), and a
            time-dependent potential receives ``batch.time_input`` (the target's time in that unit).
        interaction_average: how ``int grad W(y - y') dmu_{t+1}(y')`` is estimated: ``"snapshot"`` averages
            over the minibatch rows of the same target snapshot (weighted by their coupling weights), as the
            integral says; ``"minibatch"`` over the whole minibatch, mixing snapshots (the upstream code).

    With an interaction term the loss and its gradient come from one blocked sweep over the ``B^2`` pairs
    (:func:`_interaction_residual_loss`, a custom VJP equal to autodiff of the formula above up to float32
    round-off; it supports reverse-mode differentiation only).
    """
    g = jnp.zeros_like(batch.target)
    if spec.potential:
        times = _time_inputs(batch) if spec.time_dependent else None
        g = g + _energy_gradients(params["potential"], None, batch.target, times)
    coef = None
    if spec.interaction:
        if interaction_average == "snapshot":
            same = batch.time[:, None] == batch.time[None, :]
            coef = same * batch.weight[None, :]
        elif interaction_average == "minibatch":
            coef = jnp.broadcast_to((batch.weight > 0).astype(batch.target.dtype), (len(batch.weight),) * 2)
        else:
            raise ValueError(f"unknown interaction_average {interaction_average!r}: choose one of {INTERACTION_AVERAGES}")
        if len(params["interaction"]) < 2:  # no hidden layer: grad W is constant
            g = g + _interaction_mean(params["interaction"], None, batch.target, batch.target, coef)
            coef = None
    if spec.internal:
        g = g + params["beta"] * batch.grad_rho / batch.rho[:, None]
    scale = _tau_scales(batch)
    if scale is None:
        residual = tau * g + (batch.target - batch.source)
    else:
        residual = (tau * scale)[:, None] * g + (batch.target - batch.source)
    if coef is None:
        return jnp.sum(batch.weight * jnp.sum(residual**2, axis=-1))
    coef = coef / jnp.maximum(jnp.sum(coef, axis=1, keepdims=True), 1e-30)
    weight = batch.weight
    if scale is not None:
        # |tau s_i I_i + r_i|^2 = s_i^2 |tau I_i + r_i / s_i|^2: the sweep keeps one tau (exact when s_i = 1).
        residual, weight = residual / scale[:, None], weight * scale**2
    return _interaction_residual_loss(params["interaction"], batch.target, coef, residual, weight,
                                      jnp.asarray(tau, batch.target.dtype))


def _tau_scales(data):
    """Per-row JKO step in units of ``tau`` (``data.tau_scale``), or None where the data carry none."""
    scale = getattr(data, "tau_scale", None)
    return None if scale is None else scale.astype(data.target.dtype)


def _time_inputs(data):
    """Per-row time input of a time-dependent potential: ``data.time_input``, else the target label."""
    time_input = getattr(data, "time_input", None)
    return data.time if time_input is None else time_input


def fit_linear(
    spec: SolverSpec,
    data,
    *,
    tau: float = 1.0,
    ridge: float = 0.01,
    gradient_at: str = "source",
    feature_options: dict | None = None,
) -> tuple[dict, float]:
    """Returns ``(params, loss)`` of a linear solver, solved in closed form (paper Prop. 3.4, Eq. 12).

    With ``theta = -s / tau`` and per-row design ``Y_i = c_i Z_i`` (``Z_i [d, K]``: feature gradients of V,
    interaction feature gradients averaged over the rows of the same snapshot pair, and ``grad rho / rho``
    for beta; ``c_i`` the row's ``data.tau_scale``, its step ``tau c_i``, 1 for evenly spaced snapshots),
    ``s`` solves the weighted ridge normal equations
    ``(sum_i w_i Y_i^T Y_i + ridge I) s = sum_i w_i Y_i^T (y_i - x_i)``. The loss is the weighted squared
    residual ``sum_i w_i |tau Y_i theta + y_i - x_i|^2``.

    Args:
        spec: a linear solver.
        data: :class:`jkonetstar.training.TrainingData`.
        gradient_at: where the V and W feature gradients are evaluated: ``"source"`` ``x_t`` (upstream code;
            exact for the explicit generator) or ``"target"`` ``x_{t+1}`` (the paper's first-order condition).
        feature_options: keyword arguments of :func:`jkonetstar.features.feature_map`.

    Raises:
        ValueError: for a non-linear solver, an unknown ``gradient_at`` or too many features for the dimension.
    """
    if spec.parametrisation != "linear":
        raise ValueError(f"solver {spec.name!r} is not linear")
    if gradient_at not in ("source", "target"):
        raise ValueError(f"unknown gradient_at {gradient_at!r}: choose 'source' or 'target'")
    fmap = feats.feature_map(data.source.shape[1], **(feature_options or {}))
    order = np.argsort(np.asarray(data.time), kind="stable")
    data = jax.tree.map(lambda a: jnp.asarray(a)[order], data)
    groups = tuple(int(c) for c in np.unique(np.asarray(data.time), return_counts=True)[1])
    theta, loss = _solve_linear(fmap, data, tau, ridge, spec=spec, gradient_at=gradient_at, groups=groups)
    sizes = [fmap.size if spec.potential else 0, fmap.size if spec.interaction else 0]
    params = {
        "potential": theta[: sizes[0]] if spec.potential else None,
        "interaction": theta[sizes[0] : sizes[0] + sizes[1]] if spec.interaction else None,
        "beta": theta[-1] if spec.internal else None,
        "features": {"exponents": fmap.exponents, "centres": fmap.centres, "width": np.asarray(fmap.width),
                     "axis": fmap.axis},
    }
    return params, float(loss)


@functools.partial(jax.jit, static_argnames=("spec", "gradient_at", "groups"))
def _solve_linear(fmap, data, tau, ridge, *, spec, gradient_at, groups):
    points = data.source if gradient_at == "source" else data.target
    blocks = []
    if spec.potential:
        blocks.append(feats.feature_gradients(fmap, points))
    if spec.interaction:
        # Row i averages grad phi(p_i - p_j) over the rows j of its snapshot pair, weighted by the coupling:
        # the plan's marginal, i.e. the empirical snapshot itself.
        means, offset = [], 0
        for size in groups:
            p, w = points[offset : offset + size], data.weight[offset : offset + size]
            means.append(feats.mean_feature_gradients(fmap, p, p, w))
            offset += size
        blocks.append(jnp.concatenate(means))
    if spec.internal:
        blocks.append((data.grad_rho / data.rho[:, None])[..., None])
    design = jnp.concatenate(blocks, axis=-1)
    scale = _tau_scales(data)
    if scale is not None:  # row i steps tau s_i: its design row is s_i Y_i (exact when s_i = 1)
        design = design * scale[:, None, None]
    step = data.target - data.source
    normal = jnp.einsum("m,mdk,mdl->kl", data.weight, design, design) + ridge * jnp.eye(design.shape[-1])
    rhs = jnp.einsum("m,mdk,md->k", data.weight, design, step)
    theta = -jnp.linalg.solve(normal, rhs) / tau
    residual = tau * jnp.einsum("mdk,k->md", design, theta) + step
    return theta, jnp.sum(data.weight * jnp.sum(residual**2, axis=-1))


PREDICT_STEPS = ("explicit", "implicit")
"""Prediction steps of the JKOnet* solvers (:func:`predict_step_info`)."""

IMPLICIT_TOLERANCE = 1e-5
"""Default stopping tolerance of the implicit step: largest particle move of one fixed-point iteration."""

IMPLICIT_MAX_ITERATIONS = 200
"""Default iteration cap of the implicit step."""

IMPLICIT_SOLVERS = ("anderson", "picard")
"""Solvers of the implicit step's fixed point (:func:`predict_step_info`); the first is the default."""

ANDERSON_MEMORY = 5
"""Past iterates an Anderson step combines."""

ANDERSON_REGULARISATION = 1e-6
"""Tikhonov term of the Anderson least-squares problem, relative to its largest diagonal entry (float32)."""


def default_predict_step(spec: SolverSpec, gradient_at: str | None = None) -> str:
    """The step a solver predicts with unless told: the one its loss was trained on.

    Energy gradients at the target (``gradient_at: target``, the MLP solvers' default: the first-order condition)
    pair with ``"implicit"``; at the source (the linear solvers' default) with ``"explicit"``. ``gradient_at``
    None: the solver's default.
    """
    if gradient_at is None:
        gradient_at = "source" if spec.parametrisation == "linear" else "target"
    return "explicit" if gradient_at == "source" else "implicit"


class StepInfo(NamedTuple):
    """One prediction step: the predicted population, the last fixed-point residual and the iterations run.

    ``residual`` is the largest particle move ``max_i |y_i^{k+1} - y_i^k|`` of the last iteration (0 for the
    explicit step); the step converged when it is at most the tolerance.
    """

    y: jax.Array
    residual: jax.Array
    iterations: jax.Array


def predict_step_info(params: dict, spec: SolverSpec, key: jax.Array, x, t_target: int | None = None, *,
                      tau: float = 1.0, step: str | None = None, tolerance: float = IMPLICIT_TOLERANCE,
                      max_iterations: int = IMPLICIT_MAX_ITERATIONS, time_input: float | None = None,
                      solver: str = IMPLICIT_SOLVERS[0]) -> StepInfo:
    """Returns one step of the learnt dynamics from ``x`` ``[n, d]`` with its fixed-point diagnostics.

    With ``G(y) = grad V(y) + mean_j grad W(y - y_j)`` (``grad_x V(y, t_target)`` for a time-dependent
    potential) and ``noise = sqrt(2 tau |beta|) xi`` (solvers with an internal energy; else 0):

    - ``step="explicit"`` (the paper's evaluation of the time-independent solvers, paper.md 3.3):
      ``y = x - tau G(x) + noise``;
    - ``step="implicit"`` (the JKO step the loss was trained on, paper App. B): the fixed point
      ``y = x - tau G(y) + noise``, iterated from ``y = x`` until the largest particle move is at most
      ``tolerance`` or ``max_iterations`` iterations ran. The first iterate is the explicit step.
      ``solver`` finds that fixed point: ``"picard"`` iterates ``y <- x - tau G(y) + noise``; ``"anderson"``
      (default) combines the last :data:`ANDERSON_MEMORY` iterates (:func:`_anderson`): the same fixed point
      and stopping rule in up to 10x fewer evaluations of ``G`` (benchmarks/bench_implicit.py). Either way the
      residual is the largest particle move of one plain iteration from the last iterate, and ``iterations``
      counts evaluations of ``G``.

    ``step=None`` is :func:`default_predict_step`. Jit with ``spec``, ``tau``, ``step``, ``max_iterations`` and
    ``solver`` static.

    Snapshots at real times: ``tau`` is the step of this transition (the configured tau times the gap's
    scale, :func:`jkonetstar.pipeline.time_scales`), and ``time_input`` the time a time-dependent potential
    receives (the target's time in the dataset's time unit); ``None``: the label ``t_target``.
    """
    step = default_predict_step(spec) if step is None else step
    if step not in PREDICT_STEPS:
        raise ValueError(f"unknown predict_step {step!r}: choose one of {list(PREDICT_STEPS)}")
    if solver not in IMPLICIT_SOLVERS:
        raise ValueError(f"unknown implicit_solver {solver!r}: choose one of {list(IMPLICIT_SOLVERS)}")
    x = jnp.asarray(x)
    fmap = _feature_map(params)
    times = None
    if spec.time_dependent:
        if t_target is None:
            raise ValueError(f"solver {spec.name!r} needs the target time t_target")
        times = jnp.full((len(x),), t_target if time_input is None else time_input)

    def drift(y):
        g = jnp.zeros_like(y)
        if spec.potential:
            g = g + _energy_gradients(params["potential"], fmap, y, times)
        if spec.interaction:
            g = g + _interaction_mean(params["interaction"], fmap, y, y, chunk=64)
        return g

    start = x
    if spec.internal:
        start = x + jnp.sqrt(2.0 * tau * jnp.abs(params["beta"])) * jax.random.normal(key, x.shape, x.dtype)
    explicit = start - tau * drift(x)
    if step == "explicit":
        return StepInfo(explicit, jnp.zeros((), x.dtype), jnp.ones((), jnp.int32))

    solve = _anderson if solver == "anderson" else _picard
    return solve(lambda y: start - tau * drift(y), x, explicit, tolerance, max_iterations)


def _largest_move(y_new, y):
    return jnp.max(jnp.sqrt(jnp.sum((y_new - y) ** 2, axis=-1)))


def _keep_going(iterations, residual, tolerance, max_iterations):
    return (iterations < max_iterations) & ~(residual <= tolerance)  # NaN residual: keep going to the cap


def _picard(g, x, gx, tolerance, max_iterations) -> StepInfo:
    """The fixed point of ``g`` by plain iteration ``y <- g(y)`` from ``y = x`` (``gx = g(x)``, the first
    iterate): stops once an iteration moves no particle more than ``tolerance``, or after ``max_iterations``
    evaluations of ``g``."""

    def body(state):
        y, _, iterations = state
        y_new = g(y)
        return StepInfo(y_new, _largest_move(y_new, y), iterations + 1)

    return jax.lax.while_loop(lambda s: _keep_going(s.iterations, s.residual, tolerance, max_iterations), body,
                              StepInfo(gx, _largest_move(gx, x), jnp.ones((), jnp.int32)))


def _anderson(g, x, gx, tolerance, max_iterations, memory: int = ANDERSON_MEMORY) -> StepInfo:
    """The fixed point of ``g`` by Anderson acceleration (type II, Walker & Ni, SIAM J. Numer. Anal. 2011).

    From the last ``memory`` iterates ``y_i``, their images ``g(y_i)`` and residuals ``f_i = g(y_i) - y_i``, the
    next iterate is ``sum_i a_i g(y_i)``, where ``a`` minimises ``|sum_i a_i f_i|`` subject to ``sum_i a_i = 1``
    (normal equations, Tikhonov-regularised by :data:`ANDERSON_REGULARISATION`). With one iterate in memory
    this is a plain iteration, so the second iterate is :func:`_picard`'s. Same stopping rule and output as
    :func:`_picard`: ``g`` of the last iterate, whose plain-iteration move is the residual.
    """
    shape, n = x.shape, x.size
    slots = jnp.arange(memory)

    def body(state):
        info, images, residuals = state
        filled = slots < info.iterations  # slots fill in order; the newest is (iterations - 1) % memory
        gram = residuals @ residuals.T
        scale = jnp.max(jnp.where(filled, jnp.diag(gram), 0.0))
        gram = (jnp.where(filled[:, None] & filled[None, :], gram, 0.0)
                + jnp.diag(jnp.where(filled, ANDERSON_REGULARISATION * scale, 1.0)))
        weights = jnp.linalg.solve(gram, filled.astype(x.dtype))
        y = ((weights / jnp.sum(weights)) @ images).reshape(shape)
        gy = g(y)
        slot = info.iterations % memory
        return (StepInfo(gy, _largest_move(gy, y), info.iterations + 1), images.at[slot].set(gy.reshape(-1)),
                residuals.at[slot].set((gy - y).reshape(-1)))

    images = jnp.zeros((memory, n), x.dtype).at[0].set(gx.reshape(-1))
    residuals = jnp.zeros((memory, n), x.dtype).at[0].set((gx - x).reshape(-1))
    start = (StepInfo(gx, _largest_move(gx, x), jnp.ones((), jnp.int32)), images, residuals)
    return jax.lax.while_loop(lambda s: _keep_going(s[0].iterations, s[0].residual, tolerance, max_iterations),
                              body, start)[0]


def predict(params: dict, spec: SolverSpec, key: jax.Array, x, t_target: int | None = None, *, tau: float = 1.0,
            step: str | None = None, tolerance: float = IMPLICIT_TOLERANCE,
            max_iterations: int = IMPLICIT_MAX_ITERATIONS, time_input: float | None = None):
    """Returns the population ``[n, d]`` after one step of the learnt dynamics from ``x`` ``[n, d]``.

    The ``y`` of :func:`predict_step_info` (explicit ``x - tau G(x) + noise`` or the implicit fixed point
    ``y = x - tau G(y) + noise``; ``tau`` and ``time_input`` as there).
    """
    return predict_step_info(params, spec, key, x, t_target, tau=tau, step=step, tolerance=tolerance,
                             max_iterations=max_iterations, time_input=time_input).y


def potential_values(params: dict, spec: SolverSpec, x, t: float | None = None):
    """Returns the learnt potential ``V(x)`` (``V(x, t)`` if time-dependent) at points ``x`` ``[n, d]``."""
    if not spec.potential:
        raise ValueError(f"solver {spec.name!r} learns no potential")
    x = jnp.asarray(x)
    fmap = _feature_map(params)
    if fmap is not None:
        return feats.features(fmap, x) @ params["potential"]
    if spec.time_dependent:
        x = jnp.concatenate([x, jnp.full((len(x), 1), 0.0 if t is None else t, x.dtype)], axis=1)
    return jax.vmap(lambda p: _mlp_apply(params["potential"], p))(x)


def _flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        if value is None:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = np.asarray(value)
    return flat


def save_params(path, params: dict, spec: SolverSpec) -> None:
    """Saves ``params`` of solver ``spec`` to an .npz (keys ``term/layer/array``), atomically, no pickle."""
    save_npz(path, solver=np.asarray(spec.name), **_flatten(params))


def load_params(path) -> tuple[dict, SolverSpec]:
    """Returns ``(params, spec)`` saved by :func:`save_params`; raises ValueError naming a bad file."""
    arrays = load_npz(path, required=("solver",))
    try:
        spec = get_solver(str(arrays.pop("solver")))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    terms = [t for t, used in (("potential", spec.potential), ("interaction", spec.interaction)) if used]
    needed = terms + (["beta"] if spec.internal else [])
    if spec.parametrisation == "linear":
        needed += [f"features/{k}" for k in ("exponents", "centres", "width", "axis")]
    missing = [n for n in needed if not any(k == n or k.startswith(f"{n}/") for k in arrays)]
    if missing:
        raise ValueError(f"{path}: parameters of solver {spec.name!r} lack {missing}")
    params: dict = {"potential": None, "interaction": None, "beta": None}
    for name, value in arrays.items():
        *parents, leaf = name.split("/")
        node = params
        for parent in parents:
            if node.get(parent) is None:
                node[parent] = {}
            node = node[parent]
        node[leaf] = jnp.asarray(value)
    return params, spec


def energy_gradients(params: dict, spec: SolverSpec, term: str, x, t: float | None = None):
    """Returns the gradient of one learnt energy term at points ``x`` ``[n, d]`` as ``[n, d]``.

    ``term`` is ``"potential"`` (``grad V(x)``, at time ``t`` if V is time-dependent) or ``"interaction"``
    (``grad W(z)`` at differences ``z = x``). Like the energies, the gradients approximate ``dt / tau`` times
    the true ones (see :func:`jkonet_star_loss`).

    Raises:
        ValueError: for an unknown term or one the solver does not learn.
    """
    if term not in ("potential", "interaction"):
        raise ValueError(f"unknown energy term {term!r}: choose 'potential' or 'interaction'")
    if not getattr(spec, term):
        raise ValueError(f"solver {spec.name!r} learns no {term}")
    x = jnp.asarray(x)
    times = None
    if term == "potential" and spec.time_dependent:
        times = jnp.full((len(x),), 0.0 if t is None else t, x.dtype)
    return _energy_gradients(params[term], _feature_map(params), x, times)
