"""Training: coupling data, one jitted epoch of the JKOnet* solvers, and the epoch loop of every trained model.

:func:`run_epochs` is the one training loop: the JKOnet* solvers (:func:`fit`) and the JKOnet baselines
(:func:`jkonetstar.baselines.fit_jkonet`) hand it their compiled epoch; it owns the evaluation schedule, the
divergence rule, model selection, timing, progress lines and the history rows.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jkonetstar.io import load_npz, save_npz
from jkonetstar.models import SolverSpec, fit_linear, init_params, jkonet_star_loss

if TYPE_CHECKING:
    import optax

__all__ = [
    "TrainingData", "TrainState", "FitResult", "make_optimizer", "minibatch_index", "train_epoch", "at_source",
    "run_epochs", "fit",
]


class _TrainingDataFields(NamedTuple):
    source: jax.Array
    target: jax.Array
    time: jax.Array
    weight: jax.Array
    rho: jax.Array
    grad_rho: jax.Array
    tau_scale: jax.Array | None = None
    time_input: jax.Array | None = None


class TrainingData(_TrainingDataFields):
    """Coupled pairs between consecutive snapshots with the density at the targets; ``m`` rows.

    Attributes:
        source: ``x_t`` ``[m, d]``. target: ``x_{t+1}`` ``[m, d]``. time: label of the target snapshot ``[m]``.
        weight: coupling weight ``[m]`` (each snapshot pair sums to 1). rho: density of the target snapshot at
        the target ``[m]`` (floored, > 0). grad_rho: its gradient ``[m, d]``.
        tau_scale: the row's JKO step in units of ``tau`` ``[m]``: the loss uses ``tau * tau_scale``. Snapshots
        at real times ``time_values`` give ``(time_values[k'] - time_values[k]) / unit`` for the transition
        ``k -> k'`` (:func:`jkonetstar.pipeline.time_scales`); omitted (or absent from an older file): ones,
        every transition one step of ``tau``.
        time_input: the time a time-dependent potential ``V(x, t)`` receives at the row's target ``[m]``:
            ``(time_values[k'] - time_values[0]) / unit``; omitted: the target label ``time`` as a float.
    """

    __slots__ = ()

    def __new__(cls, source, target, time, weight, rho, grad_rho, tau_scale=None, time_input=None):
        if hasattr(weight, "shape") and hasattr(time, "shape"):  # not for pytree placeholders (specs, sentinels)
            xp = jnp if isinstance(weight, jax.Array) else np
            dtype = weight.dtype if jnp.issubdtype(weight.dtype, jnp.floating) else np.float32
            if tau_scale is None:
                tau_scale = xp.ones(weight.shape, dtype)
            if time_input is None:
                time_input = (jnp if isinstance(time, jax.Array) else np).asarray(time).astype(dtype)
        return super().__new__(cls, source, target, time, weight, rho, grad_rho, tau_scale, time_input)

    @classmethod
    def load(cls, path) -> "TrainingData":
        """Reads the arrays written by :meth:`save`; raises ValueError naming the file if one is missing.

        Files without ``tau_scale`` or ``time_input`` (written before they existed) read as the defaults.
        """
        required = cls._fields[:6]
        arrays = load_npz(path, required=required)
        data = cls(**{k: jnp.asarray(arrays[k]) for k in cls._fields if k in arrays})
        m = len(data.source)
        if m == 0 or any(len(a) != m for a in data) or not np.all(np.isfinite(arrays["source"])):
            raise ValueError(f"{path}: coupling arrays are empty, of unequal lengths or not finite")
        return data

    def save(self, path) -> None:
        save_npz(path, **{k: np.asarray(v) for k, v in self._asdict().items()})


class TrainState(NamedTuple):
    params: dict
    opt_state: "optax.OptState"


class FitResult(NamedTuple):
    """Learnt parameters, the per-epoch history, ``"ok"`` or ``"diverged"``, and compilation seconds."""

    params: dict
    history: list[dict]
    status: str
    compile_seconds: float


LR_SCHEDULES = ("constant", "cosine")
"""Learning-rate schedules of :func:`make_optimizer` (the paper: constant)."""


def make_optimizer(learning_rate: float = 1e-3, clip_norm: float = 10.0, *, schedule: str = "constant",
                   total_steps: int | None = None) -> "optax.GradientTransformation":
    """Adam (b1 0.9, b2 0.999, eps 1e-8) after global-norm clipping, the paper's optimiser.

    ``schedule="cosine"`` decays the learning rate from ``learning_rate`` to 1 % of it over ``total_steps``
    updates (cosine); ``"constant"`` (the paper) keeps it.
    """
    import optax  # here: evaluation jobs import this module and never train (0.3 s of imports)

    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {schedule!r}: choose one of {list(LR_SCHEDULES)}")
    rate = learning_rate
    if schedule == "cosine":
        if not total_steps:
            raise ValueError("lr_schedule 'cosine' needs the number of updates (total_steps)")
        rate = optax.cosine_decay_schedule(learning_rate, decay_steps=total_steps, alpha=0.01)
    return optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(rate, b1=0.9, b2=0.999, eps=1e-8))


def _stable_argsort(keys: jax.Array) -> jax.Array:
    """``lax.sort_key_val(keys, arange(n))[1]`` (the stable argsort of ``keys`` ``[n]``, uint32), faster on CPU.

    XLA's CPU sort of one array is about 6x faster than its sort of a key-value pair. The keys alone are
    sorted, each key's rank is found by an unrolled binary search (the count of smaller keys), and the
    indices are scattered to their ranks; the ranks are distinct unless two keys are equal, in which case
    (rare for random 32-bit keys) the key-value sort runs instead.
    """
    n = keys.shape[0]
    iota = jnp.arange(n, dtype=jnp.int32)
    ordered = jax.lax.sort(keys)
    rank = jnp.zeros((n,), jnp.int32)
    step = 1 << (n.bit_length() - 1)
    while step:  # invariant: ordered[:rank] < keys
        candidate = rank + step
        below = jnp.take(ordered, jnp.minimum(candidate, n) - 1, mode="clip") < keys
        rank = jnp.where((candidate <= n) & below, candidate, rank)
        step //= 2
    ties = jnp.any(ordered[1:] == ordered[:-1])
    return jax.lax.cond(ties, lambda: jax.lax.sort_key_val(keys, iota)[1],
                        lambda: jnp.zeros((n,), jnp.int32).at[rank].set(iota, unique_indices=True))


def _permutation(key: jax.Array, n: int) -> jax.Array:
    """``jax.random.permutation(key, n)``, the same integers (tests check it), through :func:`_stable_argsort`.

    JAX shuffles by ``ceil(3 log n / log(2^32 - 1))`` rounds of a stable sort of ``arange(n)`` by fresh 32-bit
    keys (``key, subkey = split(key)`` per round); composing the rounds' argsorts gives the same result.
    """
    if n < 2:
        return jax.random.permutation(key, n)
    rounds = int(np.ceil(3 * np.log(n) / np.log(np.iinfo(np.uint32).max)))
    order = None
    for _ in range(rounds):
        key, subkey = jax.random.split(key)
        step = _stable_argsort(jax.random.bits(subkey, (n,), jnp.uint32))
        order = step if order is None else order[step]
    return order


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
        order = _permutation(group_key, size) + offset
        index.append(order[slots % size].reshape(n_batches, batch_size))
        valid.append((slots < size).reshape(n_batches, batch_size))
        offset += size
    index, valid = jnp.concatenate(index), jnp.concatenate(valid)
    if groups is not None:
        shuffle = _permutation(key_order, len(index))
        index, valid = index[shuffle], valid[shuffle]
    return index, valid


def train_epoch(state: TrainState, key: jax.Array, data: TrainingData, *, spec: SolverSpec,
                optimizer: "optax.GradientTransformation", batch_size: int, tau: float = 1.0,
                interaction_average: str = "snapshot",
                groups: tuple[int, ...] | None = None) -> tuple[TrainState, jax.Array]:
    """Returns the state after one epoch and the epoch's summed minibatch loss.

    Minibatches come from :func:`minibatch_index`; one ``lax.scan`` runs their updates. Jit this with
    ``spec``, ``optimizer``, ``batch_size``, ``interaction_average`` and ``groups`` static.

    Inside the epoch the parameters, and every part of the optimiser state shaped like them, are one flat
    vector (a few operations per step instead of a few per layer): the same updates for transformations
    that act entrywise or through global norms (Adam, global-norm clipping: :func:`make_optimizer`), not
    for ones that treat layers apart (e.g. ``optax.lamb``'s per-layer trust ratio).
    """
    import optax

    index, valid = minibatch_index(key, data.source.shape[0], batch_size, groups)
    batches = jax.tree.map(lambda a: a[index], data)  # [n_batches, batch_size, ...]: one gather per array
    batches = batches._replace(weight=batches.weight * valid)
    flat_params, unravel = ravel_pytree(state.params)
    params_def = jax.tree.structure(state.params)

    def like_params(node):
        return not isinstance(node, jax.Array) and jax.tree.structure(node) == params_def

    flat_opt_state = jax.tree.map(lambda node: ravel_pytree(node)[0] if like_params(node) else node,
                                  state.opt_state, is_leaf=like_params)

    def step(carry, batch):
        flat, opt_state = carry
        loss, grads = jax.value_and_grad(lambda p: jkonet_star_loss(
            unravel(p), batch, spec=spec, tau=tau, interaction_average=interaction_average))(flat)
        updates, opt_state = optimizer.update(grads, opt_state, flat)
        return (optax.apply_updates(flat, updates), opt_state), loss

    (flat_params, flat_opt_state), losses = jax.lax.scan(step, (flat_params, flat_opt_state), batches)
    opt_state = jax.tree.map(lambda node, flat: unravel(flat) if like_params(node) else flat,
                             state.opt_state, flat_opt_state, is_leaf=like_params)
    return TrainState(unravel(flat_params), opt_state), jnp.sum(losses)


def at_source(data: TrainingData) -> TrainingData:
    """Returns coupling rows on which the (target-gradient) JKOnet* loss is the loss with gradients at the source.

    :func:`jkonetstar.models.jkonet_star_loss` scores ``tau G(y) + (y - x)`` with ``G`` at the target ``y``
    (and the interaction mean over the rows' targets). The rows ``(x', y') = (2x - y, x)`` give
    ``tau G(x) + (x - (2x - y)) = tau G(x) + (y - x)``: the residual with ``G`` at the source, the interaction
    mean over the sources of the same snapshot pair (the source snapshot, as in the linear solvers), and the
    density term still at the target (``rho``, ``grad_rho`` unchanged, as in the linear solvers).
    """
    source, target = jnp.asarray(data.source), jnp.asarray(data.target)
    return data._replace(source=2.0 * source - target, target=source)


def _scores(value) -> dict:
    """History columns of one evaluation: ``{"w1": value}``, or the callback's mapping (``w1`` and others)."""
    if isinstance(value, dict):
        return {name: float(v) for name, v in value.items()}
    return {"w1": float(value)}


@jax.jit
def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def run_epochs(
    epoch_step: Callable[[TrainState, int], tuple[TrainState, jax.Array]],
    state: TrainState,
    *,
    epochs: int,
    eval_every: int,
    evaluate: Callable[[dict], float | dict] | None = None,
    validate: Callable[[dict], float] | None = None,
    name: str = "model",
    progress: Callable[[str], None] | None = None,
    compile_seconds: float = 0.0,
) -> FitResult:
    """Runs ``epochs`` epochs of ``epoch_step`` from ``state`` and returns a :class:`FitResult`.

    ``epoch_step(state, epoch)`` returns the state after epoch ``epoch`` (1, 2, ...) and that epoch's loss;
    it is called once per epoch, in order. Every ``eval_every`` epochs and after the last, the loop calls
    ``evaluate(params)`` (and ``validate(params)`` when given) and writes one progress line.

    Divergence: an epoch whose loss or any parameter is not finite stops training. Its history row is kept
    with loss, ``w1`` and ``eval_seconds`` NaN (and is not evaluated), the run is ``"diverged"``, and the
    parameters returned are those before that epoch, the last finite ones (no model selection).

    History: one row per epoch run, columns ``epoch, loss, seconds`` (the epoch's wall time, its loss read
    back), ``w1, eval_seconds`` (NaN where not evaluated), then the other columns of ``evaluate``'s mapping
    and ``validation_w1`` where evaluated; with ``validate``, ``selected`` (1.0 on the kept epoch) on every row.

    Args:
        evaluate: returns the W1 of a parameter set (column ``w1``) or a mapping of columns (``w1`` and others);
            by default NaN.
        validate: model selection: a score of a parameter set on held-out data (column ``validation_w1``); the
            run keeps the parameters of the lowest finite score instead of the last ones.
        name: the model's name in progress lines.
        progress: receives one line per evaluation, and one on divergence or selection, for logs.
        compile_seconds: reported in the result (the caller compiles ``epoch_step`` ahead of epoch 1).
    """
    for setting, value in (("epochs", epochs), ("eval_every", eval_every)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{setting} must be a positive integer, got {value!r}")
    evaluate = evaluate or (lambda params: math.nan)
    say = progress or (lambda line: None)
    history: list[dict] = []
    status = "ok"
    best = (math.inf, 0, None)  # (validation score, epoch, parameters) of the best evaluation so far
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        new_state, loss = epoch_step(state, epoch)
        loss = float(loss)
        seconds = time.perf_counter() - start
        row = dict(epoch=epoch, loss=loss, seconds=seconds, w1=math.nan, eval_seconds=math.nan)
        history.append(row)
        if not (math.isfinite(loss) and bool(_all_finite(new_state.params))):
            status = "diverged"
            row["loss"] = math.nan  # a diverged epoch has no loss, even where the sum stayed a number
            say(f"{name}: epoch {epoch}: loss {loss} or parameters not finite; stopping, run recorded as diverged")
            break
        state = new_state
        if epoch % eval_every == 0 or epoch == epochs:
            start = time.perf_counter()
            row.update(_scores(evaluate(state.params)))
            if validate is not None:
                row["validation_w1"] = float(validate(state.params))
                if np.isfinite(row["validation_w1"]) and row["validation_w1"] < best[0]:
                    best = (row["validation_w1"], epoch, state.params)
            row["eval_seconds"] = time.perf_counter() - start
            say(f"{name}: epoch {epoch}/{epochs} loss {loss:.4g} W1 {row['w1']:.4g} ({seconds * 1e3:.1f} ms/epoch)")
    if validate is not None and best[2] is not None and status == "ok":
        say(f"{name}: keeping the parameters of epoch {best[1]} (validation W1 {best[0]:.4g})")
        for row in history:
            row["selected"] = float(row["epoch"] == best[1])
        return FitResult(best[2], history, status, compile_seconds)
    return FitResult(state.params, history, status, compile_seconds)


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
    gradient_at: str | None = None,
    lr_schedule: str = "constant",
    validate: Callable[[dict], float] | None = None,
    feature_options: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> FitResult:
    """Trains solver ``spec`` on coupling ``data`` and returns a :class:`FitResult`.

    MLP solvers run ``epochs`` jitted epochs (compiled once, ahead of the first; compile time reported
    apart) through :func:`run_epochs`, which calls ``evaluate(params)`` every ``eval_every`` epochs and after
    the last. A non-finite epoch loss or parameter stops training: the run is ``"diverged"`` and keeps the
    last finite parameters. Linear solvers are solved in closed form, reported as one epoch.

    Args:
        key: PRNG key for initialisation and shuffling.
        evaluate: returns the one-step-ahead W1 of a parameter set (history column ``w1``), or a mapping of
            history columns (``w1`` and e.g. ``w1_explicit``); other columns of unevaluated epochs are absent.
        progress: receives one line per evaluation, for logs.
        gradient_at: where the loss evaluates the energy gradients: ``"target"`` (the MLP solvers' default, the
            first-order condition of the JKO step, consistent with the implicit prediction step) or ``"source"``
            (the linear solvers' default, consistent with the explicit step); see :func:`at_source`.
        lr_schedule: ``"constant"`` (the paper) or ``"cosine"`` (:func:`make_optimizer`).
        validate: model selection: returns a score of a parameter set on data *held out of* ``data`` (never the
            test split; e.g. :func:`jkonetstar.pipeline.train` with ``select="validation"``), computed at every
            evaluation (history column ``validation_w1``); the run keeps the parameters of the lowest score
            (history column ``selected``) instead of the last ones.
        Others: see :func:`train_epoch` and :func:`jkonetstar.models.fit_linear`.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("eval_every", eval_every)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name, value in (("learning_rate", learning_rate), ("tau", tau), ("clip_norm", clip_norm)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if gradient_at not in (None, "source", "target"):
        raise ValueError(f"unknown gradient_at {gradient_at!r}: choose 'source' or 'target'")
    if spec.parametrisation == "linear":
        evaluate = evaluate or (lambda params: math.nan)
        say = progress or (lambda line: None)
        start = time.perf_counter()
        params, loss = fit_linear(spec, data, tau=tau, ridge=ridge, gradient_at=gradient_at or "source",
                                  feature_options=feature_options)
        jax.block_until_ready(params["features"] if params["potential"] is None else params["potential"])
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        scores = _scores(evaluate(params))
        history = [dict(epoch=1, loss=loss, seconds=seconds, **scores, eval_seconds=time.perf_counter() - start)]
        status = "ok" if np.isfinite(loss) else "diverged"
        say(f"{spec.name}: closed-form solve in {seconds:.2f} s, loss {loss:.4g}, W1 {scores['w1']:.4g}")
        return FitResult(params, history, status, 0.0)

    if gradient_at == "source":
        data = at_source(data)
    groups = None
    if spec.interaction and interaction_average == "snapshot":
        # One target snapshot per minibatch: the interaction mean then runs over B particles of mu_{t+1}.
        order = np.argsort(np.asarray(data.time), kind="stable")
        data = jax.tree.map(lambda a: a[order], data)
        groups = tuple(int(c) for c in np.unique(np.asarray(data.time), return_counts=True)[1])
    key_init, key_shuffle = jax.random.split(key)
    params = init_params(key_init, spec, data.source.shape[1], tuple(hidden))
    n_batches = sum(-(-size // batch_size) for size in (groups or (len(data.source),)))
    optimizer = make_optimizer(learning_rate, clip_norm, schedule=lr_schedule, total_steps=epochs * n_batches)
    state = TrainState(params, optimizer.init(params))
    epoch_fn = jax.jit(functools.partial(train_epoch, spec=spec, optimizer=optimizer, batch_size=batch_size,
                                         tau=tau, interaction_average=interaction_average, groups=groups))
    start = time.perf_counter()
    compiled = epoch_fn.lower(state, jax.random.fold_in(key_shuffle, 0), data).compile()
    compile_seconds = time.perf_counter() - start

    return run_epochs(lambda state, epoch: compiled(state, jax.random.fold_in(key_shuffle, epoch), data), state,
                      epochs=epochs, eval_every=eval_every, evaluate=evaluate, validate=validate, name=spec.name,
                      progress=progress, compile_seconds=compile_seconds)
