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
    "init_params",
    "jkonet_star_loss",
    "fit_linear",
    "predict",
    "potential_values",
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


def _energy_gradients(term_params, fmap, points, times=None):
    """Gradient of one energy term at ``points`` ``[n, d]`` -> ``[n, d]`` (MLP or linear)."""
    if fmap is not None:
        return jnp.einsum("ndp,p->nd", feats.feature_gradients(fmap, points), term_params)
    if times is None:
        return jax.vmap(jax.grad(lambda p: _mlp_apply(term_params, p)))(points)

    def grad_x(p, t):
        return jax.grad(lambda q: _mlp_apply(term_params, jnp.append(q, t)))(p)

    return jax.vmap(grad_x)(points, times.astype(points.dtype))


def _feature_map(params):
    f = params.get("features")
    if f is None:
        return None
    return feats.FeatureMap(np.asarray(f["exponents"]), np.asarray(f["centres"]), float(f["width"]))


def _interaction_mean(term_params, fmap, points, population, weights, same_group=None):
    """``sum_j c_ij grad W(points_i - population_j) / sum_j c_ij`` with ``c_ij = weights_j [same_group_ij]``."""

    def one(p, group_row):
        grads = _energy_gradients(term_params, fmap, p - population)
        coef = weights if group_row is None else weights * group_row
        return jnp.sum(coef[:, None] * grads, axis=0) / jnp.maximum(jnp.sum(coef), 1e-30)

    if same_group is None:
        return jax.lax.map(lambda p: one(p, None), points, batch_size=64)
    return jax.vmap(one)(points, same_group)


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
            same = (batch.time[:, None] == batch.time[None, :]).astype(batch.target.dtype)
        elif interaction_average == "minibatch":
            same = jnp.broadcast_to((batch.weight > 0).astype(batch.target.dtype), (len(batch.weight),) * 2)
        else:
            raise ValueError(f"unknown interaction_average {interaction_average!r}: choose one of {INTERACTION_AVERAGES}")
        weights = batch.weight if interaction_average == "snapshot" else jnp.ones_like(batch.weight)
        g = g + _interaction_mean(params["interaction"], None, batch.target, batch.target, weights, same)
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
    feature gradients averaged over the rows of the same snapshot, and ``grad rho / rho`` for beta),
    ``s`` solves the weighted ridge normal equations ``(sum_i w_i Y_i^T Y_i + ridge I) s = sum_i w_i Y_i^T (y_i - x_i)``.

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
    dim = data.source.shape[1]
    fmap = feats.feature_map(dim, **(feature_options or {}))
    points = jnp.asarray(data.source if gradient_at == "source" else data.target)
    weight = jnp.asarray(data.weight)
    blocks = []
    if spec.potential:
        blocks.append(feats.feature_gradients(fmap, points))
    if spec.interaction:
        time = np.asarray(data.time)
        block = jnp.zeros((len(points), dim, fmap.size), points.dtype)
        for label in np.unique(time):
            rows = np.flatnonzero(time == label)
            mean = _interaction_design(fmap, points[rows], weight[rows])
            block = block.at[rows].set(mean)
        blocks.append(block)
    if spec.internal:
        blocks.append((jnp.asarray(data.grad_rho) / jnp.asarray(data.rho)[:, None])[..., None])
    design = jnp.concatenate(blocks, axis=-1)
    step = jnp.asarray(data.target) - jnp.asarray(data.source)
    normal = jnp.einsum("m,mdk,mdl->kl", weight, design, design) + ridge * jnp.eye(design.shape[-1])
    rhs = jnp.einsum("m,mdk,md->k", weight, design, step)
    theta = -jnp.linalg.solve(normal, rhs) / tau
    residual = tau * jnp.einsum("mdk,k->md", design, theta) + step
    loss = float(jnp.sum(weight * jnp.sum(residual**2, axis=-1)))
    sizes = [fmap.size if spec.potential else 0, fmap.size if spec.interaction else 0]
    params = {
        "potential": theta[: sizes[0]] if spec.potential else None,
        "interaction": theta[sizes[0] : sizes[0] + sizes[1]] if spec.interaction else None,
        "beta": theta[-1] if spec.internal else None,
        "features": {"exponents": fmap.exponents, "centres": fmap.centres, "width": np.asarray(fmap.width)},
    }
    return params, loss


@functools.partial(jax.jit, static_argnums=0)
def _interaction_design_jit(fmap_key, points, weight):
    fmap = feats.FeatureMap(np.array(fmap_key[0]), np.array(fmap_key[1]), fmap_key[2])

    def one(p):
        grads = feats.feature_gradients(fmap, p - points)
        return jnp.einsum("j,jdp->dp", weight, grads) / jnp.sum(weight)

    return jax.lax.map(one, points, batch_size=16)


def _interaction_design(fmap, points, weight):
    key = (tuple(map(tuple, fmap.exponents.tolist())), tuple(map(tuple, fmap.centres.tolist())), fmap.width)
    return _interaction_design_jit(key, points, weight)


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
        drift = drift + _interaction_mean(params["interaction"], fmap, x, x, jnp.ones(len(x), x.dtype))
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
    spec = get_solver(str(arrays.pop("solver")))
    params: dict = {"potential": None, "interaction": None, "beta": None}
    for name, value in arrays.items():
        *parents, leaf = name.split("/")
        node = params
        for parent in parents:
            if node.get(parent) is None:
                node[parent] = {}
            node = node[parent]
        node[leaf] = jnp.asarray(value) if leaf not in ("exponents", "centres", "width") else value
    return params, spec
