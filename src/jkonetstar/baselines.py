"""The JKOnet baselines (Bunne et al. 2022): a potential learnt through an inner JKO solve (paper.md §3.4).

JKOnet learns a potential ``V_phi`` (MLP [64, 64], softplus) so that one JKO step of ``V_phi`` maps the
observed population at ``t`` onto the one at ``t + 1``. The JKO step from a population ``x`` is computed
by an inner optimisation over a transport map ``T_theta`` started afresh each time:

.. math::
    \\theta^\\star(\\phi) \\approx \\arg\\min_\\theta\\; \\frac{1}{n}\\sum_i V_\\phi(T_\\theta(x_i))
        + \\frac{1}{2\\tau}\\,\\frac{1}{n}\\sum_i \\|T_\\theta(x_i) - x_i\\|^2
        \\;[+\\; \\lambda\\,\\mathcal{M}(T_\\theta)],

run as ``inner_steps`` Adam steps. The outer loss is the entropic OT cost between the prediction
``T_{theta*}(x_t)`` and the observed ``x_{t+1}``; its gradient in ``phi`` is taken by backpropagating
through the unrolled inner Adam steps. Three variants, chosen by :class:`BaselineSpec` data:

- ``jkonet``: ``T = grad psi`` with ``psi`` an input-convex network (:class:`ICNN`), so ``T`` is an OT map.
- ``jkonet-vanilla``: ``T = grad psi`` with ``psi`` a plain softplus MLP (not convex).
- ``jkonet-monge-gap``: vanilla plus ``lambda = 1`` times the Monge gap ``M`` of ``T`` on ``x`` (ott-jax).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jkonetstar import methods
from jkonetstar.io import load_npz, save_npz
from jkonetstar.methods import BaselineSpec
from jkonetstar.models import MLP
from jkonetstar.training import FitResult, TrainState, make_optimizer, run_epochs

__all__ = [
    "BaselineSpec",
    "BASELINES",
    "get_baseline",
    "ICNN",
    "init_transport",
    "transport_map",
    "solve_jko_step",
    "sinkhorn_cost",
    "jkonet_loss",
    "train_epoch_jkonet",
    "snapshots_from_population",
    "fit_jkonet",
    "predict_jkonet",
    "potential_values",
    "save_jkonet_params",
    "load_jkonet_params",
]

TRANSPORTS = ("icnn", "mlp")
_REMAT_POLICY = jax.checkpoint_policies.dots_saveable
"""What the inner loop's backward pass keeps of each step's forward pass (the rest is recomputed): the
matrix products, [n, 64] each. Recomputing those too (no policy) costs 5% (jkonet-vanilla) to 11% (jkonet)
more CPU time per epoch (measured interleaved in one process, one core); keeping everything (no checkpoint)
costs more still, for the memory traffic of ~20 saved arrays per inner step."""
LEAKY_SLOPE = 0.01
STEPS = ("jko", "explicit")


BASELINES = methods.BASELINES
"""The baselines by name (:data:`jkonetstar.methods.METHODS`, family ``jkonet``)."""


def get_baseline(name: str) -> BaselineSpec:
    """Returns the spec of baseline ``name``; raises ValueError listing the known ones."""
    return methods.get(name, "jkonet")


class _PositiveDense(nn.Module):
    """Linear map ``z -> z W`` with entrywise non-negative ``W = softplus(kernel)`` (no bias)."""

    features: int
    init_std: float = 0.1

    @nn.compact
    def __call__(self, z):
        kernel = self.param("kernel", nn.initializers.normal(self.init_std), (z.shape[-1], self.features))
        return z @ nn.softplus(kernel)


class ICNN(nn.Module):
    """Input-convex network ``psi: R^d -> R`` (Amos et al. 2017), whose gradient is a monotone map.

    .. math::
        z_1 = \\sigma(A_0 x + b_0)^2, \\quad z_{k+1} = \\sigma(W_k z_k + A_k x + b_k), \\quad
        \\psi(x) = w^\\top z_K + a^\\top x,

    with ``sigma`` the leaky ReLU (slope ``LEAKY_SLOPE``, flax's default 0.01) and ``W_k, w = softplus(.)`` entrywise
    non-negative. ``sigma(.)^2`` is convex and ``sigma`` convex and non-decreasing, so ``psi`` is convex
    in ``x``. Every weight starts from ``N(0, init_std^2)`` (the non-negative ones through softplus, so
    near 0.69), biases from 0. The output has no bias: it would not change ``grad psi``.

    Attributes:
        hidden: widths of the hidden layers.
        init_std: standard deviation of the initial weights.
    """

    hidden: tuple[int, ...] = (64, 64)
    init_std: float = 0.1

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.normal(self.init_std)
        z = nn.leaky_relu(nn.Dense(self.hidden[0], kernel_init=init)(x), LEAKY_SLOPE) ** 2
        for width in self.hidden[1:]:
            z = nn.leaky_relu(_PositiveDense(width, self.init_std)(z) + nn.Dense(width, kernel_init=init)(x),
                              LEAKY_SLOPE)
        out = _PositiveDense(1, self.init_std)(z) + nn.Dense(1, kernel_init=init, use_bias=False)(x)
        return out[..., 0]


def _psi_module(transport: str, hidden: tuple[int, ...]) -> nn.Module:
    if transport == "icnn":
        return ICNN(tuple(hidden))
    if transport == "mlp":
        return MLP(tuple(hidden))
    raise ValueError(f"unknown transport {transport!r}: choose one of {TRANSPORTS}")


def init_transport(key: jax.Array, transport: str, dim: int, hidden: tuple[int, ...] = (64, 64)) -> dict:
    """Returns fresh parameters of the inner map's potential ``psi`` (``"icnn"`` or ``"mlp"``) on ``R^dim``."""
    return _psi_module(transport, hidden).init(key, jnp.zeros(dim))["params"]


def transport_map(psi_params: dict, transport: str, x: jax.Array) -> jax.Array:
    """Returns ``T(x) = grad psi(x)`` for points ``x`` ``[n, d]`` -> ``[n, d]`` (closed form, equal to autodiff)."""
    return _map_and_pullback(psi_params, transport, x)[0]


def _map_and_pullback(psi_params, transport, x):
    if transport == "icnn":
        return _icnn_map_and_pullback(psi_params, x)
    if transport == "mlp":
        return _mlp_map_and_pullback(psi_params, x)
    raise ValueError(f"unknown transport {transport!r}: choose one of {TRANSPORTS}")


# The inner loop needs T = grad psi and the pullback r -> d<r, T>/d theta at every step, and the outer loss
# differentiates through both once more. Written out by hand they form a graph one autodiff order lower,
# and much smaller, than jax.grad of jax.grad (column sums are dots with a ones vector, softplus and sigmoid
# share one exp); tests check them against autodiff.


def _column_sum(a):
    return jnp.ones(a.shape[0], a.dtype) @ a


@jax.custom_jvp
def _softplus_and_sigmoid(pre):
    """``(log(1 + e^pre), 1 / (1 + e^-pre))`` from one ``exp(-|pre|)``.

    Its derivatives are given in closed form, ``(s, s (1 - s))`` with ``s`` the sigmoid: autodiff of the
    branch-free formula above builds a much larger backward pass (the outer gradient of the JKOnet
    baselines differentiates this activation twice per inner step; 10% of a ``jkonet-vanilla`` epoch).
    """
    e = jnp.exp(-jnp.abs(pre))
    return jnp.maximum(pre, 0.0) + jnp.log1p(e), jnp.where(pre >= 0, 1.0, e) / (1.0 + e)


@_softplus_and_sigmoid.defjvp
def _softplus_and_sigmoid_jvp(primals, tangents):
    (pre,), (d_pre,) = primals, tangents
    softplus, sigmoid = _softplus_and_sigmoid(pre)
    return (softplus, sigmoid), (sigmoid * d_pre, sigmoid * (1.0 - sigmoid) * d_pre)


def _icnn_map_and_pullback(params, x, negative_slope=LEAKY_SLOPE):
    """``T = grad psi`` of an :class:`ICNN` and the pullback ``r [n, d] -> d sum(r * T) / d params``.

    With ``D_k = sigma'(pre_k)`` (piecewise constant), ``s = sigma(pre_0)``, ``g_K = w`` and
    ``u_k = g_{k+1} * D_k``, ``g_k = u_k W_k^T`` (``k >= 1``), ``u_0 = 2 g_1 * s * D_0``:
    ``T = a + sum_k u_k A_k^T``, multilinear in the weights except through ``s``.
    """
    n_hidden = len(params) // 2
    kernel = lambda k: params[f"Dense_{k}"]["kernel"]  # noqa: E731  A_k [d, h_k]
    raw = [params[f"_PositiveDense_{k}"]["kernel"] for k in range(n_hidden)]
    positive, positive_slope = zip(*(_softplus_and_sigmoid(w) for w in raw))  # W_1 .. W_{K-1}, w
    pre = x @ kernel(0) + params["Dense_0"]["bias"]
    slopes = [jnp.where(pre >= 0, 1.0, negative_slope)]
    s = pre * slopes[0]
    z = s * s
    for k in range(1, n_hidden):
        pre = z @ positive[k - 1] + x @ kernel(k) + params[f"Dense_{k}"]["bias"]
        slopes.append(jnp.where(pre >= 0, 1.0, negative_slope))
        z = pre * slopes[k]
    u = [None] * n_hidden
    g = positive[-1][:, 0] * (slopes[-1] if n_hidden > 1 else jnp.ones_like(s))  # u_{K-1}, or g_1 if K = 1
    for k in range(n_hidden - 1, 0, -1):
        u[k] = g
        g = (u[k] @ positive[k - 1].T) * (slopes[k - 1] if k > 1 else 1.0)
    g1 = g  # g_1, cotangent of z_1
    q = 2.0 * s * slopes[0]
    u[0] = g1 * q
    out = kernel(n_hidden)[:, 0] + sum(u[k] @ kernel(k).T for k in range(n_hidden))

    def pullback(r):
        grads = {f"Dense_{k}": {"kernel": r.T @ u[k]} for k in range(n_hidden)}
        grads[f"Dense_{n_hidden}"] = {"kernel": _column_sum(r)[:, None]}
        c_u0 = r @ kernel(0)
        c_pre0 = 2.0 * c_u0 * g1 * slopes[0] * slopes[0]
        grads["Dense_0"]["kernel"] = grads["Dense_0"]["kernel"] + x.T @ c_pre0
        grads["Dense_0"]["bias"] = _column_sum(c_pre0)
        c_g = c_u0 * q  # cotangent of g_1
        for k in range(1, n_hidden):
            grads[f"_PositiveDense_{k - 1}"] = {"kernel": (c_g.T @ u[k]) * positive_slope[k - 1]}
            grads[f"Dense_{k}"]["bias"] = jnp.zeros_like(params[f"Dense_{k}"]["bias"])
            c_g = (r @ kernel(k) + c_g @ positive[k - 1]) * slopes[k]  # cotangent of g_{k+1}
        grads[f"_PositiveDense_{n_hidden - 1}"] = {"kernel": _column_sum(c_g)[:, None] * positive_slope[-1]}
        return grads

    return out, pullback


def _mlp_forward(params, x, last_softplus=True):
    """Pre-activations, softplus outputs (``h[0] = x``) and sigmoids of a softplus MLP's hidden layers.

    Without ``last_softplus`` the last hidden layer's softplus, which only the value of the network needs
    (gradients need its sigmoid), is not computed: ``h`` then ends one layer early.
    """
    n_hidden = len(params) - 1
    h, pre, sig = [x], [], []
    for k in range(n_hidden):
        pre.append(h[k] @ params[f"Dense_{k}"]["kernel"] + params[f"Dense_{k}"]["bias"])
        if k == n_hidden - 1 and not last_softplus:
            sig.append(jax.nn.sigmoid(pre[k]))
            break
        softplus, sigmoid = _softplus_and_sigmoid(pre[k])
        h.append(softplus)
        sig.append(sigmoid)
    return h, pre, sig


def _mlp_value_and_gradient(params, x, with_value=True):
    """``(psi(x) [n], grad psi(x) [n, d])`` of a :class:`jkonetstar.models.MLP` (softplus), by hand.

    With ``with_value=False`` the first entry is zeros and the work only the value needs is skipped.
    """
    n_hidden = len(params) - 1
    h, _, sig = _mlp_forward(params, x, last_softplus=with_value)
    last = params[f"Dense_{n_hidden}"]
    if with_value:
        value = h[-1] @ last["kernel"][:, 0] + last["bias"][0]
    else:
        value = jnp.zeros(x.shape[0], x.dtype)
    g = last["kernel"][:, 0] * sig[-1]
    for k in range(n_hidden - 1, 0, -1):
        g = (g @ params[f"Dense_{k}"]["kernel"].T) * sig[k - 1]
    return value, g @ params["Dense_0"]["kernel"].T


def _mlp_map_and_pullback(params, x):
    """``T = grad psi`` of a softplus MLP and the pullback ``r [n, d] -> d sum(r * T) / d params``.

    ``T = g_0`` with ``g_K = w``, ``u_k = g_{k+1} * S_k``, ``g_k = u_k W_k^T``, ``S_k = sigmoid(pre_k)``;
    the pullback sweeps up the ``g`` chain, then down the forward chain through ``S_k' = S_k (1 - S_k)``.
    """
    n_hidden = len(params) - 1
    kernel = lambda k: params[f"Dense_{k}"]["kernel"]  # noqa: E731
    h, _, sig = _mlp_forward(params, x, last_softplus=False)  # T and its pullback need no value of psi
    g = [None] * (n_hidden + 1)
    u = [None] * n_hidden
    g[n_hidden] = kernel(n_hidden)[:, 0]
    for k in range(n_hidden - 1, -1, -1):
        u[k] = g[k + 1] * sig[k]
        g[k] = u[k] @ kernel(k).T

    def pullback(r):
        grads = {}
        c_g, c_pre_s = r, [None] * n_hidden
        d_kernel = [None] * n_hidden
        for k in range(n_hidden):  # up the g chain: g_k = u_k W_k^T, u_k = g_{k+1} * S_k
            d_kernel[k] = c_g.T @ u[k]
            c_u = c_g @ kernel(k)
            c_pre_s[k] = c_u * g[k + 1] * sig[k] * (1.0 - sig[k])
            c_g = c_u * sig[k]
        grads[f"Dense_{n_hidden}"] = {"kernel": _column_sum(c_g)[:, None],
                                      "bias": jnp.zeros_like(params[f"Dense_{n_hidden}"]["bias"])}
        c_pre = c_pre_s[n_hidden - 1]
        for k in range(n_hidden - 1, -1, -1):  # down the forward chain: pre_k = h_k W_k + b_k
            grads[f"Dense_{k}"] = {"kernel": d_kernel[k] + h[k].T @ c_pre, "bias": _column_sum(c_pre)}
            if k > 0:
                c_pre = c_pre_s[k - 1] + (c_pre @ kernel(k).T) * sig[k - 1]
        return grads

    return g[0], pullback


def _inner_optimizer(learning_rate) -> optax.GradientTransformation:
    # eps_root > 0 keeps d sqrt(nu)/d nu finite where a gradient entry is 0 (e.g. the hidden biases of the
    # ICNN, which T does not depend on), since we differentiate through the optimiser (optax's advice for
    # meta-learning); it moves the denominator by at most 1e-8, the size of eps.
    return optax.adam(learning_rate, b1=0.5, b2=0.9, eps=1e-8, eps_root=1e-16)


def solve_jko_step(
    potential: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    key: jax.Array,
    x: jax.Array,
    *,
    transport: str = "icnn",
    inner_steps: int = 100,
    inner_learning_rate: float = 0.01,
    tau: float = 1.0,
    monge_gap: float = 0.0,
    hidden: tuple[int, ...] = (64, 64),
) -> tuple[jax.Array, jax.Array]:
    """Returns ``(T(x) [n, d], objective [inner_steps])``: one JKO step of a potential from ``x``.

    Minimises ``J(T) = mean_i V(T(x_i)) + mean_i |T(x_i) - x_i|^2 / (2 tau) [+ monge_gap * M(T)]`` over the
    parameters of ``T = grad psi`` by ``inner_steps`` Adam steps (lr ``inner_learning_rate``, b1 0.5,
    b2 0.9, no clipping) from a fresh initialisation drawn with ``key``. The parameter gradient is the
    pullback of ``dJ/dT = (grad V(T) + (T - x) / tau) / n`` through the map. The loop is a ``lax.scan``
    whose steps are rematerialised except for their matrix products, so the result can be differentiated
    in whatever ``potential`` closes over by backpropagating through the unrolled steps at the memory cost
    of those products (about a dozen ``[n, 64]`` arrays per step: 80 MB for n = 250, 100 steps). ``M`` is
    ott-jax's ``monge_gap_from_samples(x, T(x))``: ``mean_i |x_i - T(x_i)|^2`` minus the entropic OT cost
    (``ent_reg_cost``) between ``x`` and ``T(x)``, squared Euclidean, ott's default eps (0.05 times the
    standard deviation of the cost matrix). ``objective`` holds ``J`` before each step.

    Args:
        potential: maps points ``y`` ``[n, d]`` to ``(V(y) [n], grad V(y) [n, d])``.
        key: PRNG key for the initialisation of ``psi``.
        x: the population ``[n, d]``.
        transport: ``"icnn"`` or ``"mlp"`` (see :class:`BaselineSpec`).
        hidden: widths of ``psi``'s hidden layers.
    """
    flat0, unravel = ravel_pytree(init_transport(key, transport, x.shape[-1], hidden))
    optimizer = _inner_optimizer(inner_learning_rate)
    n = x.shape[0]

    @functools.partial(jax.checkpoint, prevent_cse=False, policy=_REMAT_POLICY)  # in scan: CSE cannot merge steps
    def step(carry, _):
        flat, opt_state = carry  # one flat parameter vector: Adam runs as a few ops, not a few per layer
        y, pullback = _map_and_pullback(unravel(flat), transport, x)
        values, grad_v = potential(y)
        objective = jnp.mean(values) + jnp.mean(jnp.sum((y - x) ** 2, axis=-1)) / (2.0 * tau)
        cotangent = (grad_v + (y - x) / tau) / n
        if monge_gap:
            gap, grad_gap = jax.value_and_grad(functools.partial(_monge_gap, x))(y)
            objective = objective + monge_gap * gap
            cotangent = cotangent + monge_gap * grad_gap
        grads = ravel_pytree(pullback(cotangent))[0]
        updates, opt_state = optimizer.update(grads, opt_state, flat)
        return (flat + updates, opt_state), objective

    (flat, _), objectives = jax.lax.scan(step, (flat0, optimizer.init(flat0)), length=inner_steps)
    return transport_map(unravel(flat), transport, x), objectives


def _monge_gap(x, y):
    from ott.neural.methods.monge_gap import monge_gap_from_samples  # imports diffrax; only when used

    return monge_gap_from_samples(x, y)


def sinkhorn_cost(x: jax.Array, y: jax.Array, epsilon: float = 1.0, threshold: float = 1e-3) -> jax.Array:
    """Returns the entropic OT cost between the uniform clouds ``x`` ``[n, d]`` and ``y`` ``[m, d]``.

    .. math::
        \\mathrm{OT}_\\varepsilon = \\min_{P \\in U(a, b)} \\langle P, C\\rangle
            + \\varepsilon\\,\\mathrm{KL}(P \\,\\|\\, a b^\\top), \\qquad C_{ij} = \\|x_i - y_j\\|^2,

    ott-jax's ``reg_ot_cost`` (squared Euclidean cost, not halved; KL term included; POT's ``ot.sinkhorn2``
    returns only ``<P, C>``). Solved by log-domain Sinkhorn until the marginal error is below ``threshold``,
    started from ott's Gaussian initialiser and with Anderson acceleration (2-7x fewer iterations than
    ott's defaults, which upstream used, for the same cost to 1e-5). The gradient in ``x`` follows from
    Danskin's theorem (optimal potentials held fixed).
    """
    # ott-jax imports in ~2 s (all of ott, flow matching included): only the baselines pay for it.
    from ott.geometry import pointcloud
    from ott.initializers.linear import initializers
    from ott.solvers import linear
    from ott.solvers.linear import acceleration

    geom = pointcloud.PointCloud(x, y, epsilon=epsilon)
    out = linear.solve(geom, threshold=threshold, initializer=initializers.GaussianInitializer(),
                       anderson=acceleration.AndersonAcceleration(memory=5))
    return out.reg_ot_cost


def jkonet_loss(
    potential_params: dict,
    key: jax.Array,
    x0: jax.Array,
    x1: jax.Array,
    *,
    spec: BaselineSpec,
    inner_steps: int = 100,
    inner_learning_rate: float = 0.01,
    epsilon: float = 1.0,
    tau: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """Returns ``(OT_eps(T(x0), x1), T(x0))``: the outer JKOnet loss of one transition and the prediction.

    ``T`` is the inner JKO step of ``V = potential_params`` from ``x0`` ``[n, d]`` (:func:`solve_jko_step`)
    and ``x1`` ``[m, d]`` the observed next population; see :func:`sinkhorn_cost` for ``OT_eps``.
    """
    # The inner objective's value is not part of the loss: V's value is not computed (zeros in its place).
    potential = functools.partial(_mlp_value_and_gradient, potential_params, with_value=False)
    prediction, _ = solve_jko_step(potential, key, x0, transport=spec.transport, inner_steps=inner_steps,
                                   inner_learning_rate=inner_learning_rate, tau=tau, monge_gap=spec.monge_gap)
    return sinkhorn_cost(prediction, x1, epsilon), prediction


def train_epoch_jkonet(
    state: TrainState,
    key: jax.Array,
    snapshots: jax.Array,
    *,
    spec: BaselineSpec,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    inner_steps: int = 100,
    inner_learning_rate: float = 0.01,
    epsilon: float = 1.0,
    tau: float = 1.0,
    tau_scales: jax.Array | None = None,
) -> tuple[TrainState, jax.Array]:
    """Returns ``(state, loss)`` after one epoch over the trajectories ``snapshots`` ``[T+1, n, d]``.

    Trajectories are shuffled with ``key`` and cut into ``ceil(n / batch_size)`` minibatches (the last one
    wraps around to the first shuffled trajectories, so shapes are static). For each minibatch a
    ``lax.scan`` over ``t = 0..T-1`` takes one Adam step of ``V`` on :func:`jkonet_loss` between the
    current population and the observed ``x_{t+1}``, then feeds the prediction in as the next population
    (no teacher forcing). ``loss`` is the sum over minibatches and time steps (not finite if any term is
    not: :func:`jkonetstar.training.run_epochs` then records the epoch as diverged). Jit with ``spec``,
    ``optimizer``, ``batch_size`` and ``inner_steps`` static.

    ``tau_scales`` ``[T]``: transition ``t -> t+1`` takes an inner JKO step of ``tau * tau_scales[t]``
    (snapshots at real times: the gap in the dataset's time unit, :func:`jkonetstar.pipeline.time_scales`);
    None: every transition one step of ``tau``.
    """
    n = snapshots.shape[1]
    n_batches = -(-n // batch_size)
    key_shuffle, key_inner = jax.random.split(key)
    order = jax.random.permutation(key_shuffle, n)
    index = order[jnp.arange(n_batches * batch_size) % n].reshape(n_batches, batch_size)

    def grad_fn(potential_params, step_key, x0, x1, scale):
        step_tau = tau if scale is None else tau * scale
        return jax.value_and_grad(
            functools.partial(jkonet_loss, spec=spec, inner_steps=inner_steps,
                              inner_learning_rate=inner_learning_rate, epsilon=epsilon, tau=step_tau),
            has_aux=True,
        )(potential_params, step_key, x0, x1)

    def time_step(carry, inputs):
        state, x0 = carry
        x1, step_key, scale = inputs
        (loss, prediction), grads = grad_fn(state.params["potential"], step_key, x0, x1, scale)
        updates, opt_state = optimizer.update({"potential": grads}, state.opt_state, state.params)
        state = TrainState(optax.apply_updates(state.params, updates), opt_state)
        return (state, jax.lax.stop_gradient(prediction)), loss

    def batch_step(state, inputs):
        rows, batch_key = inputs
        batch = snapshots[:, rows]
        step_keys = jax.random.split(batch_key, snapshots.shape[0] - 1)
        (state, _), losses = jax.lax.scan(time_step, (state, batch[0]), (batch[1:], step_keys, tau_scales))
        return state, jnp.sum(losses)

    state, losses = jax.lax.scan(batch_step, state, (index, jax.random.split(key_inner, n_batches)))
    return state, jnp.sum(losses)


def snapshots_from_population(x, t, particle=None, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Returns the trajectories ``[T+1, n, d]`` of a population time course ``x [n_total, d]``, ``t``.

    Row ``i`` of every snapshot is one trajectory: snapshots are ordered by label, and within a snapshot
    particles keep their order in ``x``, or are sorted by ``particle`` id when given (``-1`` ids, real data
    without trajectories, are rejected).

    Snapshots of different sizes (real data: unbalanced, no trajectories) need ``rng``: each snapshot is
    then subsampled without replacement, in random order, to the smallest size. The baselines only use the
    rows of snapshot ``t + 1`` as a sample of the next population (no teacher forcing), so random rows are
    what they see of unpaired data.

    Raises:
        ValueError: fewer than two snapshots; sizes differ and no ``rng``; bad or mismatched particle ids.
    """
    x, t = np.asarray(x), np.asarray(t)
    labels = np.unique(t)
    rows = [np.flatnonzero(t == label) for label in labels]
    sizes = sorted({len(r) for r in rows})
    if len(labels) < 2:
        raise ValueError(f"need >= 2 snapshots for trajectories, got labels {labels.tolist()}")
    if len(sizes) != 1:
        if rng is None:
            raise ValueError(
                f"need snapshots of equal size for trajectories, got sizes {[len(r) for r in rows]}; pass rng to "
                "subsample every snapshot to the smallest"
            )
        return np.stack([x[rng.choice(r, size=sizes[0], replace=False)] for r in rows])
    if particle is not None:
        particle = np.asarray(particle)
        if np.any(particle < 0):
            raise ValueError("particle ids are -1 (no trajectories): the JKOnet baselines need trajectory data")
        rows = [r[np.argsort(particle[r], kind="stable")] for r in rows]
        if any(not np.array_equal(particle[r], particle[rows[0]]) for r in rows):
            raise ValueError("snapshots hold different particle ids: cannot form trajectories")
    return np.stack([x[r] for r in rows])


def _check_fit_args(snapshots, **settings) -> None:
    if snapshots.ndim != 3 or snapshots.shape[0] < 2:
        raise ValueError(f"snapshots must have shape [T+1 >= 2, n, d], got {snapshots.shape}")
    if not np.all(np.isfinite(snapshots)):
        raise ValueError("snapshots contain non-finite values")
    for name in ("epochs", "batch_size", "eval_every", "inner_steps"):
        value = settings[name]
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name in ("learning_rate", "inner_learning_rate", "epsilon", "tau", "clip_norm"):
        if not settings[name] > 0:
            raise ValueError(f"{name} must be > 0, got {settings[name]!r}")


def fit_jkonet(
    key: jax.Array,
    variant: str,
    snapshots,
    *,
    epochs: int = 1000,
    batch_size: int = 250,
    learning_rate: float = 1e-3,
    clip_norm: float = 10.0,
    inner_steps: int = 100,
    inner_learning_rate: float = 0.01,
    epsilon: float = 1.0,
    tau: float = 1.0,
    hidden: tuple[int, ...] = (64, 64),
    eval_every: int = 100,
    evaluate: Callable[[dict], float] | None = None,
    progress: Callable[[str], None] | None = None,
    tau_scales=None,
) -> FitResult:
    """Trains baseline ``variant`` on train trajectories and returns a :class:`jkonetstar.training.FitResult`.

    Runs ``epochs`` jitted epochs of :func:`train_epoch_jkonet` (compiled once ahead of the first epoch;
    compile time reported apart) through :func:`jkonetstar.training.run_epochs`, calling ``evaluate(params)``
    every ``eval_every`` epochs and after the last. A non-finite loss or parameter stops training: the run
    is ``"diverged"`` and keeps the last finite parameters. History columns: ``epoch, loss, seconds, w1,
    eval_seconds``.

    Args:
        key: PRNG key; split into initialisation and per-epoch shuffling / inner-initialisation keys.
        variant: ``"jkonet"``, ``"jkonet-vanilla"`` or ``"jkonet-monge-gap"``.
        snapshots: train trajectories ``[T+1, n, d]`` (particle ``i`` of every snapshot is one trajectory).
        learning_rate, clip_norm: Adam and global-norm clipping of ``V`` (one update per time step).
        inner_steps, inner_learning_rate, tau: the inner JKO solve (:func:`solve_jko_step`).
        epsilon: entropic regularisation of the outer Sinkhorn loss.
        hidden: widths of the potential MLP.
        evaluate: returns the one-step-ahead W1 of ``params`` (history column ``w1``).
        progress: receives one line per evaluation, for logs.
        tau_scales: ``[T]``, the inner JKO step of transition ``t -> t+1`` in units of ``tau`` (snapshots at
            real times: :func:`jkonetstar.pipeline.time_scales`); None: all ones (evenly spaced snapshots).

    Raises:
        ValueError: for bad settings, and ``tau_scales`` not ``T`` finite numbers > 0.
    """
    spec = get_baseline(variant)
    snapshots = np.asarray(snapshots, dtype=np.float32)
    _check_fit_args(snapshots, epochs=epochs, batch_size=batch_size, eval_every=eval_every,
                    inner_steps=inner_steps, learning_rate=learning_rate, inner_learning_rate=inner_learning_rate,
                    epsilon=epsilon, tau=tau, clip_norm=clip_norm)
    snapshots = jnp.asarray(snapshots)
    if tau_scales is not None:
        tau_scales = np.asarray(tau_scales, np.float32)
        if tau_scales.shape != (snapshots.shape[0] - 1,) or not np.all(np.isfinite(tau_scales) & (tau_scales > 0)):
            raise ValueError(f"tau_scales must be {snapshots.shape[0] - 1} finite numbers > 0 (one per transition), "
                             f"got {tau_scales.tolist()}")
        if np.all(tau_scales == tau_scales[0]):  # evenly spaced: one step tau for all, today's constant-tau program
            tau, tau_scales = tau * float(tau_scales[0]), None
        else:
            tau_scales = jnp.asarray(tau_scales)

    key_init, key_epochs = jax.random.split(key)
    params = {"potential": MLP(tuple(hidden)).init(key_init, jnp.zeros(snapshots.shape[-1]))["params"]}
    optimizer = make_optimizer(learning_rate, clip_norm)
    state = TrainState(params, optimizer.init(params))
    epoch_fn = jax.jit(functools.partial(
        train_epoch_jkonet, spec=spec, optimizer=optimizer, batch_size=min(batch_size, snapshots.shape[1]),
        inner_steps=inner_steps, inner_learning_rate=inner_learning_rate, epsilon=epsilon, tau=tau,
        tau_scales=tau_scales))
    start = time.perf_counter()
    compiled = epoch_fn.lower(state, jax.random.fold_in(key_epochs, 0), snapshots).compile()
    compile_seconds = time.perf_counter() - start

    return run_epochs(lambda state, epoch: compiled(state, jax.random.fold_in(key_epochs, epoch), snapshots), state,
                      epochs=epochs, eval_every=eval_every, evaluate=evaluate, name=variant, progress=progress,
                      compile_seconds=compile_seconds)


@functools.partial(jax.jit, static_argnames=("transport", "monge_gap", "inner_steps"))
def _predict_jko(potential_params, key, x, inner_learning_rate, tau, *, transport, monge_gap, inner_steps):
    prediction, _ = solve_jko_step(functools.partial(_mlp_value_and_gradient, potential_params), key, x,
                                   transport=transport, inner_steps=inner_steps,
                                   inner_learning_rate=inner_learning_rate, tau=tau, monge_gap=monge_gap)
    return prediction


@jax.jit
def _predict_explicit(potential_params, x, tau):
    return x - tau * _mlp_value_and_gradient(potential_params, x)[1]


def predict_jkonet(
    params: dict,
    variant: str,
    key: jax.Array,
    x,
    *,
    inner_steps: int = 100,
    inner_learning_rate: float = 0.01,
    tau: float = 1.0,
    step: str = "jko",
) -> jax.Array:
    """Returns the population ``[n, d]`` one step of the learnt dynamics after ``x`` ``[n, d]``.

    ``step="jko"``: the model's own step, the inner JKO solve of the learnt ``V`` from ``x`` with a fresh
    map drawn from ``key`` (what training fits). ``step="explicit"``: ``x - tau grad V(x)``, the step the
    upstream evaluation applies to every model, JKOnet included (paper.md §1.0); ``key`` is unused.
    ``tau`` is this transition's step (snapshots at real times: the configured tau times the gap's scale,
    :func:`jkonetstar.pipeline.time_scales`).
    """
    spec = get_baseline(variant)
    x = jnp.asarray(x, jnp.float32)
    if step == "jko":
        return _predict_jko(params["potential"], key, x, inner_learning_rate, tau, transport=spec.transport,
                            monge_gap=spec.monge_gap, inner_steps=inner_steps)
    if step == "explicit":
        return _predict_explicit(params["potential"], x, tau)
    raise ValueError(f"unknown step {step!r}: choose one of {STEPS}")


def potential_values(params: dict, x) -> jax.Array:
    """Returns the learnt potential ``V(x)`` at points ``x`` ``[n, d]`` -> ``[n]`` (for level curves)."""
    return _mlp_value_and_gradient(params["potential"], jnp.asarray(x, jnp.float32))[0]


def save_jkonet_params(path, params: dict, variant: str) -> None:
    """Saves the potential of baseline ``variant`` to an .npz (keys ``potential/<layer>/<array>``), no pickle."""
    get_baseline(variant)
    flat = {f"potential/{layer}/{name}": np.asarray(value)
            for layer, arrays in params["potential"].items() for name, value in arrays.items()}
    save_npz(path, solver=np.asarray(variant), **flat)


def load_jkonet_params(path) -> tuple[dict, str]:
    """Returns ``(params, variant)`` saved by :func:`save_jkonet_params`; raises ValueError naming a bad file."""
    arrays = load_npz(path, required=("solver",))
    variant = str(arrays.pop("solver"))
    if variant not in BASELINES:
        raise ValueError(f"{path}: unknown baseline {variant!r}: choose one of {list(BASELINES)}")
    potential: dict = {}
    for name, value in arrays.items():
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != "potential":
            raise ValueError(f"{path}: unexpected array {name!r} (expected potential/<layer>/<array>)")
        potential.setdefault(parts[1], {})[parts[2]] = jnp.asarray(value)
    if not potential:
        raise ValueError(f"{path}: no potential arrays")
    return {"potential": potential}, variant
