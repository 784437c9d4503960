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

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jkonetstar import features as feats
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
    "predict",
    "potential_values",
    "energy_gradients",
    "save_params",
    "load_params",
]


@dataclasses.dataclass(frozen=True)
class SolverSpec:
    """What a solver learns and how.

    Attributes:
        name: the solver's name in configs and on the command line.
        potential, interaction, internal: which energy terms (V, W, beta * int rho log rho) are learnt.
        parametrisation: ``"mlp"`` (trained by Adam) or ``"linear"`` (closed-form least squares, Prop. 3.4).
        time_dependent: V takes ``(x, t)``; prediction then uses the implicit step (paper App. B).
    """

    name: str
    potential: bool = True
    interaction: bool = False
    internal: bool = False
    parametrisation: str = "mlp"
    time_dependent: bool = False


SOLVERS: dict[str, SolverSpec] = {
    spec.name: spec
    for spec in (
        SolverSpec("jkonet-star", interaction=True, internal=True),
        SolverSpec("jkonet-star-potential"),
        SolverSpec("jkonet-star-potential-internal", internal=True),
        SolverSpec("jkonet-star-time-potential", time_dependent=True),
        SolverSpec("jkonet-star-linear", interaction=True, internal=True, parametrisation="linear"),
        SolverSpec("jkonet-star-linear-potential", parametrisation="linear"),
        SolverSpec("jkonet-star-linear-potential-internal", internal=True, parametrisation="linear"),
        SolverSpec("jkonet-star-linear-interaction", potential=False, interaction=True, parametrisation="linear"),
    )
}
"""The JKOnet* solvers by name (paper names: JKOnet*, JKOnet*_V, ..., JKOnet*_l, JKOnet*_{l,V})."""

INTERACTION_AVERAGES = ("snapshot", "minibatch")


def get_solver(name: str) -> SolverSpec:
    """Returns the spec of solver ``name``; raises ValueError listing the known ones."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}: choose one of {list(SOLVERS)}")
    return SOLVERS[name]


class MLP(nn.Module):
    """Scalar energy ``R^d -> R``: Dense layers of width ``hidden`` with softplus, then a linear output."""

    hidden: tuple[int, ...] = (64, 64)

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.softplus(nn.Dense(width)(x))
        return nn.Dense(1)(x)[..., 0]


def _mlp_apply(params, x):
    n_layers = len(params)
    hidden = tuple(params[f"Dense_{i}"]["kernel"].shape[1] for i in range(n_layers - 1))
    return MLP(hidden).apply({"params": params}, x)


def init_params(key: jax.Array, spec: SolverSpec, dim: int, hidden: tuple[int, ...] = (64, 64)) -> dict:
    """Returns initial parameters of an MLP solver; each term gets its own key (never shared weights)."""
    if spec.parametrisation != "mlp":
        raise ValueError(f"solver {spec.name!r} is fitted in closed form; it has no initial parameters")
    key_v, key_w = jax.random.split(key)
    module = MLP(tuple(hidden))
    dim_v = dim + 1 if spec.time_dependent else dim
    return {
        "potential": module.init(key_v, jnp.zeros(dim_v))["params"] if spec.potential else None,
        "interaction": module.init(key_w, jnp.zeros(dim))["params"] if spec.interaction else None,
        "beta": jnp.zeros(()) if spec.internal else None,
    }


def mlp_input_gradient(params: dict, x: jax.Array) -> jax.Array:
    """Returns ``grad_x MLP(x)`` for a batch ``x`` ``[n, d_in]`` as ``[n, d_in]``, by an explicit backward pass.

    Equal to ``vmap(grad(MLP.apply))`` but written as batched matrix products (softplus' = sigmoid), which
    XLA runs about 1.5x faster for the O(B^2) interaction pairs and which differentiates cleanly again in
    the parameters.
    """
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


def _interaction_mean(term_params, fmap, points, population, coef=None, chunk=None):
    """``sum_j c_ij grad W(points_i - population_j) / sum_j c_ij`` -> ``[n, d]``; ``c`` defaults to uniform.

    With ``chunk``, rows of ``points`` are processed ``chunk`` at a time to bound memory (n * k pairs).
    """

    if fmap is not None:
        return jnp.einsum("ndk,k->nd", feats.mean_feature_gradients(fmap, points, population), term_params)

    def rows(p, c):
        grads = _energy_gradients(term_params, fmap, p[:, None, :] - population[None])
        if c is None:
            return jnp.mean(grads, axis=1)
        return jnp.einsum("nk,nkd->nd", c, grads) / jnp.maximum(jnp.sum(c, axis=1, keepdims=True), 1e-30)

    if chunk is None:
        return rows(points, coef)
    return jax.lax.map(lambda p: rows(p[None], None)[0], points, batch_size=chunk)


def jkonet_star_loss(params: dict, batch, *, spec: SolverSpec, tau: float = 1.0, interaction_average: str = "snapshot"):
    """Returns the JKOnet* loss of a minibatch: ``sum_i w_i |tau G(y_i) + (y_i - x_i)|^2`` (paper Eq. 11).

    Args:
        params: MLP parameters from :func:`init_params`.
        batch: a :class:`jkonetstar.training.TrainingData` of ``B`` coupling rows (source ``x``, target ``y``,
            target snapshot label, weight ``w``, density ``rho`` and ``grad_rho`` at ``y``). Rows of zero
            weight are padding and change nothing.
        spec: the solver.
        tau: JKO step; the paper trains with ``tau = 1`` on data simulated with ``dt = 0.01``, so the learnt
            energies approximate ``dt * V``.
        interaction_average: how ``int grad W(y - y') dmu_{t+1}(y')`` is estimated: ``"snapshot"`` averages
            over the minibatch rows of the same target snapshot (weighted by their coupling weights), as the
            integral says; ``"minibatch"`` over the whole minibatch, mixing snapshots (the upstream code).
    """
    g = jnp.zeros_like(batch.target)
    if spec.potential:
        times = batch.time if spec.time_dependent else None
        g = g + _energy_gradients(params["potential"], None, batch.target, times)
    if spec.interaction:
        if interaction_average == "snapshot":
            same = batch.time[:, None] == batch.time[None, :]
            coef = same * batch.weight[None, :]
        elif interaction_average == "minibatch":
            coef = jnp.broadcast_to((batch.weight > 0).astype(batch.target.dtype), (len(batch.weight),) * 2)
        else:
            raise ValueError(f"unknown interaction_average {interaction_average!r}: choose one of {INTERACTION_AVERAGES}")
        g = g + _interaction_mean(params["interaction"], None, batch.target, batch.target, coef)
    if spec.internal:
        g = g + params["beta"] * batch.grad_rho / batch.rho[:, None]
    residual = tau * g + (batch.target - batch.source)
    return jnp.sum(batch.weight * jnp.sum(residual**2, axis=-1))


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

    With ``theta = -s / tau`` and per-row design ``Y [d, K]`` (feature gradients of V, interaction
    feature gradients averaged over the rows of the same snapshot pair, and ``grad rho / rho`` for beta),
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
    step = data.target - data.source
    normal = jnp.einsum("m,mdk,mdl->kl", data.weight, design, design) + ridge * jnp.eye(design.shape[-1])
    rhs = jnp.einsum("m,mdk,md->k", data.weight, design, step)
    theta = -jnp.linalg.solve(normal, rhs) / tau
    residual = tau * jnp.einsum("mdk,k->md", design, theta) + step
    return theta, jnp.sum(data.weight * jnp.sum(residual**2, axis=-1))


def predict(params: dict, spec: SolverSpec, key: jax.Array, x, t_target: int | None = None, *, tau: float = 1.0):
    """Returns the population ``[n, d]`` after one step of the learnt dynamics from ``x`` ``[n, d]``.

    Explicit (Euler-Maruyama) step, as in the paper's evaluation:
    ``x - tau grad V(x) - tau mean_j grad W(x - x_j) + sqrt(2 tau |beta|) xi``. A time-dependent potential
    uses the implicit step ``y = x - tau grad_x V(y, t_target)``, solved by 50 fixed-point iterations
    started at ``x`` (paper App. B).
    """
    x = jnp.asarray(x)
    fmap = _feature_map(params)
    if spec.time_dependent:
        if t_target is None:
            raise ValueError(f"solver {spec.name!r} needs the target time t_target")
        times = jnp.full((len(x),), t_target)

        def fixed_point(_, y):
            return x - tau * _energy_gradients(params["potential"], None, y, times)

        return jax.lax.fori_loop(0, 50, fixed_point, x)
    drift = jnp.zeros_like(x)
    if spec.potential:
        drift = drift + _energy_gradients(params["potential"], fmap, x)
    if spec.interaction:
        drift = drift + _interaction_mean(params["interaction"], fmap, x, x, chunk=64)
    y = x - tau * drift
    if spec.internal:
        y = y + jnp.sqrt(2.0 * tau * jnp.abs(params["beta"])) * jax.random.normal(key, x.shape, x.dtype)
    return y


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
