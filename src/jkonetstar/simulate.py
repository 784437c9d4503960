"""Euler-Maruyama forward simulation of a diffusion with potential, interaction and noise.

One step of the discretised SDE dX = -grad V(X) dt - (grad W * mu)(X) dt + sqrt(2 beta) dB reads

.. math::
    x_i \\leftarrow x_i - dt\\,\\nabla V(x_i) - dt\\,\\frac{1}{N}\\sum_j \\nabla W(x_i - x_j)
    + \\sqrt{2\\beta\\,dt}\\,\\xi_i, \\qquad \\xi_i \\sim N(0, I),

with the interaction mean over all particles, j = i included (paper.md section 1.0). ``beta`` is the
diffusion coefficient (temperature), not a standard deviation.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jkonetstar.energies import get_interaction, get_potential

__all__ = ["simulate", "simulate_independent", "to_population"]


def _check(name: str, value, *, positive: bool, integer: bool = False) -> None:
    if integer and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


@functools.partial(jax.jit, static_argnames=("potential", "interaction", "n_particles", "dim", "n_steps"))
def _simulate(key, beta, dt, low, high, *, potential, interaction, n_particles, dim, n_steps):
    grad_v = jax.vmap(jax.grad(get_potential(potential))) if potential != "none" else None
    grad_w = jax.grad(get_interaction(interaction)) if interaction != "none" else None

    def drift(x):
        total = jnp.zeros_like(x)
        if grad_v is not None:
            total = total + grad_v(x)
        if grad_w is not None:
            pairwise = jax.vmap(lambda xi: jnp.mean(jax.vmap(grad_w)(xi - x), axis=0))
            total = total + pairwise(x)
        return total

    key_init, key_noise = jax.random.split(key)
    x0 = jax.random.uniform(key_init, (n_particles, dim), minval=low, maxval=high)
    noise_scale = jnp.sqrt(2.0 * beta * dt)

    def step(x, step_key):
        x_next = x - dt * drift(x) + noise_scale * jax.random.normal(step_key, x.shape)
        return x_next, x_next

    _, path = jax.lax.scan(step, x0, jax.random.split(key_noise, n_steps))
    return jnp.concatenate([x0[None], path], axis=0)


def simulate(
    key: jax.Array,
    *,
    potential: str,
    interaction: str = "none",
    beta: float = 0.0,
    n_particles: int,
    dim: int,
    n_steps: int = 5,
    dt: float = 0.01,
    low: float = -4.0,
    high: float = 4.0,
) -> jax.Array:
    """Returns particle positions at times 0, dt, ..., n_steps * dt, shape ``[n_steps + 1, n_particles, dim]``.

    Args:
        key: PRNG key; it draws the uniform initial positions on ``[low, high]^dim`` and the noise.
        potential: name of V in :data:`jkonetstar.energies.POTENTIALS`, or ``"none"``.
        interaction: name of W (applied to ``x_i - x_j``), or ``"none"``.
        beta: diffusion coefficient, >= 0.
        n_particles: number of particles N.
        dim: dimension d.
        n_steps: number of Euler-Maruyama steps T (T + 1 snapshots).
        dt: time step, > 0.

    Raises:
        ValueError: naming the setting, for an unknown energy name or a non-positive size or step.
    """
    get_potential(potential)
    get_interaction(interaction)
    _check("n_particles", n_particles, positive=True, integer=True)
    _check("dim", dim, positive=True, integer=True)
    _check("n_steps", n_steps, positive=True, integer=True)
    _check("dt", dt, positive=True)
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    if not high > low:
        raise ValueError(f"initial box must have high > low, got [{low}, {high}]")
    return _simulate(
        key, beta, dt, low, high,
        potential=potential, interaction=interaction, n_particles=n_particles, dim=dim, n_steps=n_steps,
    )


def simulate_independent(key: jax.Array, *, n_steps: int = 5, **settings) -> jax.Array:
    """Returns T + 1 snapshots of *independent* particles, shape ``[n_steps + 1, n_particles, dim]``.

    Snapshot t is snapshot t of its own population, simulated by :func:`simulate` from the same initial
    law with the t-th key of ``jax.random.split(key, n_steps + 1)``: every snapshot has the law of the
    paired snapshot t, and no particle is observed twice (as in single-cell data).

    Args:
        key: PRNG key of the T + 1 populations.
        n_steps: number of Euler-Maruyama steps T.
        settings: the other keyword arguments of :func:`simulate`.
    """
    keys = jax.random.split(key, n_steps + 1)
    return jnp.stack([simulate(k, n_steps=n_steps, **settings)[t] for t, k in enumerate(keys)])


def to_population(snapshots, *, independent: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattens ``[T + 1, n, d]`` snapshots into the population format ``(x [n_total, d], t, particle)``.

    ``particle`` is the row within its snapshot (row i of every snapshot is one trajectory), or with
    ``independent`` a distinct id per row (``t * n + i``: no particle in two snapshots).
    """
    snapshots = np.asarray(snapshots)
    n_times, n_particles, _ = snapshots.shape
    x = snapshots.reshape(n_times * n_particles, -1)
    t = np.repeat(np.arange(n_times, dtype=np.int32), n_particles)
    if independent:
        particle = np.arange(n_times * n_particles, dtype=np.int32)
    else:
        particle = np.tile(np.arange(n_particles, dtype=np.int32), n_times)
    return x, t, particle
