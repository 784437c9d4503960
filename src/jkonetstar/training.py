"""Training of the JKOnet* solvers: coupling data, one jitted epoch, periodic evaluation and history."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jkonetstar.io import load_npz, save_npz
from jkonetstar.models import SolverSpec, fit_linear, init_params, jkonet_star_loss

__all__ = ["TrainingData", "TrainState", "FitResult", "make_optimizer", "minibatch_index", "train_epoch", "fit"]


class TrainingData(NamedTuple):
    """Coupled pairs between consecutive snapshots with the density at the targets; ``m`` rows.

    Attributes:
        source: ``x_t`` ``[m, d]``. target: ``x_{t+1}`` ``[m, d]``. time: label of the target snapshot ``[m]``.
        weight: coupling weight ``[m]`` (each snapshot pair sums to 1). rho: density of the target snapshot at
        the target ``[m]`` (floored, > 0). grad_rho: its gradient ``[m, d]``.
    """

    source: jax.Array
    target: jax.Array
    time: jax.Array
    weight: jax.Array
    rho: jax.Array
    grad_rho: jax.Array

    @classmethod
    def load(cls, path) -> "TrainingData":
        """Reads the arrays written by :meth:`save`; raises ValueError naming the file if one is missing."""
        arrays = load_npz(path, required=cls._fields)
        data = cls(**{k: jnp.asarray(arrays[k]) for k in cls._fields})
        m = len(data.source)
        if m == 0 or any(len(a) != m for a in data) or not np.all(np.isfinite(arrays["source"])):
            raise ValueError(f"{path}: coupling arrays are empty, of unequal lengths or not finite")
        return data

    def save(self, path) -> None:
        save_npz(path, **{k: np.asarray(v) for k, v in self._asdict().items()})


class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState


class FitResult(NamedTuple):
    """Learnt parameters, the per-epoch history, ``"ok"`` or ``"diverged"``, and compilation seconds."""

    params: dict
    history: list[dict]
    status: str
    compile_seconds: float


def make_optimizer(learning_rate: float = 1e-3, clip_norm: float = 10.0) -> optax.GradientTransformation:
    """Adam (b1 0.9, b2 0.999, eps 1e-8) after global-norm clipping, the paper's optimiser."""
    return optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8))


def minibatch_index(key: jax.Array, m: int, batch_size: int, groups: tuple[int, ...] | None = None):
    """Returns row indices ``[n_batches, batch_size]`` of a shuffled epoch and the mask of real rows.

    Rows are shuffled with ``key`` and cut into minibatches; a group's last minibatch is filled with
    repeated rows marked invalid (they get zero weight), so shapes are static and every row counts once.
    With ``groups`` (sizes of consecutive row blocks, e.g. one per target snapshot, summing to ``m``)
    every minibatch holds rows of one group only, and the minibatch order is shuffled.
    """
    sizes = (m,) if groups is None else groups
    key_order, *group_keys = jax.random.split(key, len(sizes) + 1)
    index, valid, offset = [], [], 0
    for size, group_key in zip(sizes, group_keys):
        n_batches = -(-size // batch_size)
        slots = jnp.arange(n_batches * batch_size)
        order = jax.random.permutation(group_key, size) + offset
        index.append(order[slots % size].reshape(n_batches, batch_size))
        valid.append((slots < size).reshape(n_batches, batch_size))
        offset += size
    index, valid = jnp.concatenate(index), jnp.concatenate(valid)
    if groups is not None:
        shuffle = jax.random.permutation(key_order, len(index))
        index, valid = index[shuffle], valid[shuffle]
    return index, valid


def train_epoch(state: TrainState, key: jax.Array, data: TrainingData, *, spec: SolverSpec,
                optimizer: optax.GradientTransformation, batch_size: int, tau: float = 1.0,
                interaction_average: str = "snapshot",
                groups: tuple[int, ...] | None = None) -> tuple[TrainState, jax.Array]:
    """Returns the state after one epoch and the epoch's summed minibatch loss.

    Minibatches come from :func:`minibatch_index`; one ``lax.scan`` runs their updates. Jit this with
    ``spec``, ``optimizer``, ``batch_size``, ``interaction_average`` and ``groups`` static.
    """
    index, valid = minibatch_index(key, data.source.shape[0], batch_size, groups)

    def step(state, inputs):
        rows, keep = inputs
        batch = jax.tree.map(lambda a: a[rows], data)
        batch = batch._replace(weight=batch.weight * keep)
        loss, grads = jax.value_and_grad(jkonet_star_loss)(
            state.params, batch, spec=spec, tau=tau, interaction_average=interaction_average
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state), loss

    state, losses = jax.lax.scan(step, state, (index, valid))
    return state, jnp.sum(losses)


@jax.jit
def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def fit(
    key: jax.Array,
    spec: SolverSpec,
    data: TrainingData,
    *,
    epochs: int = 1000,
    batch_size: int = 250,
    learning_rate: float = 1e-3,
    clip_norm: float = 10.0,
    eval_every: int = 100,
    evaluate: Callable[[dict], float] | None = None,
    tau: float = 1.0,
    hidden: tuple[int, ...] = (64, 64),
    interaction_average: str = "snapshot",
    ridge: float = 0.01,
    gradient_at: str = "source",
    feature_options: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> FitResult:
    """Trains solver ``spec`` on coupling ``data`` and returns a :class:`FitResult`.

    MLP solvers run ``epochs`` jitted epochs (compiled once, ahead of the first; compile time reported
    apart) and call ``evaluate(params)`` every ``eval_every`` epochs and after the last. A non-finite
    epoch loss stops training: the run is ``"diverged"`` and keeps the last finite parameters. Linear
    solvers are solved in closed form, reported as one epoch.

    Args:
        key: PRNG key for initialisation and shuffling.
        evaluate: returns the one-step-ahead W1 of a parameter set (history column ``w1``).
        progress: receives one line per evaluation, for logs.
        Others: see :func:`train_epoch` and :func:`jkonetstar.models.fit_linear`.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("eval_every", eval_every)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name, value in (("learning_rate", learning_rate), ("tau", tau), ("clip_norm", clip_norm)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    evaluate = evaluate or (lambda params: math.nan)
    say = progress or (lambda line: None)
    history: list[dict] = []

    if spec.parametrisation == "linear":
        start = time.perf_counter()
        params, loss = fit_linear(spec, data, tau=tau, ridge=ridge, gradient_at=gradient_at,
                                  feature_options=feature_options)
        jax.block_until_ready(params["features"] if params["potential"] is None else params["potential"])
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        w1 = float(evaluate(params))
        history.append(dict(epoch=1, loss=loss, seconds=seconds, w1=w1, eval_seconds=time.perf_counter() - start))
        status = "ok" if np.isfinite(loss) else "diverged"
        say(f"{spec.name}: closed-form solve in {seconds:.2f} s, loss {loss:.4g}, W1 {w1:.4g}")
        return FitResult(params, history, status, 0.0)

    groups = None
    if spec.interaction and interaction_average == "snapshot":
        # One target snapshot per minibatch: the interaction mean then runs over B particles of mu_{t+1}.
        order = np.argsort(np.asarray(data.time), kind="stable")
        data = jax.tree.map(lambda a: a[order], data)
        groups = tuple(int(c) for c in np.unique(np.asarray(data.time), return_counts=True)[1])
    key_init, key_shuffle = jax.random.split(key)
    params = init_params(key_init, spec, data.source.shape[1], tuple(hidden))
    optimizer = make_optimizer(learning_rate, clip_norm)
    state = TrainState(params, optimizer.init(params))
    epoch_fn = jax.jit(functools.partial(train_epoch, spec=spec, optimizer=optimizer, batch_size=batch_size,
                                         tau=tau, interaction_average=interaction_average, groups=groups))
    start = time.perf_counter()
    compiled = epoch_fn.lower(state, jax.random.fold_in(key_shuffle, 0), data).compile()
    compile_seconds = time.perf_counter() - start

    status = "ok"
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        new_state, loss = compiled(state, jax.random.fold_in(key_shuffle, epoch), data)
        loss = float(loss)
        seconds = time.perf_counter() - start
        row = dict(epoch=epoch, loss=loss, seconds=seconds, w1=math.nan, eval_seconds=math.nan)
        if not (np.isfinite(loss) and bool(_all_finite(new_state.params))):
            status = "diverged"
            history.append(row)
            say(f"{spec.name}: epoch {epoch}: loss {loss} or parameters not finite; stopping, run recorded as diverged")
            break
        state = new_state
        if epoch % eval_every == 0 or epoch == epochs:
            start = time.perf_counter()
            row["w1"] = float(evaluate(state.params))
            row["eval_seconds"] = time.perf_counter() - start
            say(f"{spec.name}: epoch {epoch}/{epochs} loss {loss:.4g} W1 {row['w1']:.4g} ({seconds * 1e3:.1f} ms/epoch)")
        history.append(row)
    return FitResult(state.params, history, status, compile_seconds)
