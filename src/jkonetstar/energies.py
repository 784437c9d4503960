"""The paper's 15 test energies (App. F, Eq. 31-45) as JAX functions of a single point.

Each function maps ``v`` of shape ``[d]`` to a scalar. The definitions follow the code that produced the
paper's figures where it differs from the docstrings there (paper.md section 1.0): holder_table has a
positive sign and a factor 10, wavy_plateau uses cos(pi v), zigzag_ridge uses cos(v_i), sphere is the
concave -10|v|^2, rotational is -500 (atan2(b + 5, a + 5) + pi) (the printed 10 ReLU(.) composed with the
code's own relu energy). "Half-means" ``a, b`` are the means of the first and the second half of the
coordinates (for d = 2 simply v_0 and v_1).

Interaction energies are the same functions applied to the difference ``z = x - y`` of two particles.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "POTENTIALS",
    "INTERACTIONS",
    "potential_names",
    "interaction_names",
    "get_potential",
    "get_interaction",
    "values",
    "gradients",
]

Energy = Callable[[jnp.ndarray], jnp.ndarray]


def _half_means(v: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    half = v.shape[-1] // 2
    if half == 0:
        return v[0], v[0]
    return jnp.mean(v[:half]), jnp.mean(v[half:])


def styblinski_tang(v):
    return 0.5 * jnp.sum(v**4 - 16.0 * v**2 + 5.0 * v)


def holder_table(v):
    a, b = _half_means(v)
    norm = jnp.sqrt(jnp.sum(v**2) + jnp.finfo(v.dtype).tiny)  # differentiable at the origin
    return 10.0 * jnp.abs(jnp.sin(a) * jnp.cos(b) * jnp.exp(jnp.abs(1.0 - norm / jnp.pi)))


def flowers(v):
    return jnp.sum(v + 2.0 * jnp.sin(jnp.abs(v) ** 1.2))


def oakley_ohagan(v):
    return 5.0 * jnp.sum(jnp.sin(v) + jnp.cos(v) + v**2 + v)


def watershed(v):
    return jnp.sum(v[:-1] + v[:-1] ** 2 * (v[1:] + 4.0)) / 10.0


def ishigami(v):
    a, b = _half_means(v)
    return jnp.sin(a) + 7.0 * jnp.sin(b) ** 2 + 0.1 * ((a + b) / 2.0) ** 4 * jnp.sin(a)


def friedman(v):
    a, b = _half_means(2.0 * (v - 7.0))
    b = b / 2.0
    value = (
        10.0 * jnp.sin(jnp.pi * a * b)
        + 20.0 * (a * jnp.sin(b) - 0.5) ** 2
        + 10.0 * (a * jnp.cos(b) - 1.0) ** 2
        + 0.1 * b * jnp.sin(a)
    )
    return value / 100.0


def sphere(v):
    return -10.0 * jnp.sum(v**2)


def bohachevsky(v):
    a, b = _half_means(v)
    return 10.0 * (a**2 + 2.0 * b**2 - 0.3 * jnp.cos(3.0 * jnp.pi * a) - 0.4 * jnp.cos(4.0 * jnp.pi * b))


def wavy_plateau(v):
    return jnp.sum(jnp.cos(jnp.pi * v) + 0.5 * v**4 - 3.0 * v**2 + 1.0)


def zigzag_ridge(v):
    vi, vn = v[:-1], v[1:]
    return jnp.sum((vi - vn) ** 2 + jnp.cos(vi) * (vi + vn) + vi**2 * vn)


def double_exp(v):
    shift = 3.0 * jnp.ones_like(v)
    return 200.0 * (jnp.exp(-jnp.sum((v - shift) ** 2) / 20.0) + jnp.exp(-jnp.sum((v + shift) ** 2) / 20.0))


def relu(v):
    return -50.0 * jnp.sum(jnp.maximum(v, 0.0))


def rotational(v):
    # The published runs' version: 10 * relu(theta + pi) with the registry's own ``relu`` energy
    # (-50 max(0, .)), i.e. -500 (theta + pi) since theta + pi >= 0; the paper prints 10 max(0, theta + pi),
    # whose drift is 50x weaker and of opposite sign (README, list of differences).
    a, b = _half_means(v)
    return 10.0 * relu(jnp.reshape(jnp.arctan2(b + 5.0, a + 5.0) + jnp.pi, (1,)))


def flat(v):
    return jnp.zeros((), dtype=v.dtype)


POTENTIALS: dict[str, Energy] = {
    "styblinski_tang": styblinski_tang,
    "holder_table": holder_table,
    "flowers": flowers,
    "oakley_ohagan": oakley_ohagan,
    "watershed": watershed,
    "ishigami": ishigami,
    "friedman": friedman,
    "sphere": sphere,
    "bohachevsky": bohachevsky,
    "wavy_plateau": wavy_plateau,
    "zigzag_ridge": zigzag_ridge,
    "double_exp": double_exp,
    "relu": relu,
    "rotational": rotational,
    "flat": flat,
}
"""Potentials in the paper's order, Eq. (31) to (45)."""

INTERACTIONS: dict[str, Energy] = {name: fn for name, fn in POTENTIALS.items() if name != "holder_table"}
"""Interaction energies W(z), z = x - y: the potentials of Exp. 4.3 (all but holder_table)."""


def potential_names() -> list[str]:
    """Returns the potential names in the paper's order."""
    return list(POTENTIALS)


def interaction_names() -> list[str]:
    """Returns the interaction names, ``"none"`` first (no interaction term)."""
    return ["none", *INTERACTIONS]


def get_potential(name: str) -> Energy | None:
    """Returns the potential called ``name`` (``None`` for ``"none"``).

    Raises:
        ValueError: for an unknown name, listing the accepted ones.
    """
    if name == "none":
        return None
    if name not in POTENTIALS:
        raise ValueError(f"unknown potential {name!r}: choose one of {['none', *POTENTIALS]}")
    return POTENTIALS[name]


def get_interaction(name: str) -> Energy | None:
    """Returns the interaction energy W called ``name`` (``None`` for ``"none"``).

    Raises:
        ValueError: for an unknown name, listing the accepted ones.
    """
    if name == "none":
        return None
    if name not in INTERACTIONS:
        raise ValueError(f"unknown interaction {name!r}: choose one of {interaction_names()}")
    return INTERACTIONS[name]


@functools.lru_cache(maxsize=None)
def _vectorised(kind: str, name: str, gradient: bool):
    energy = get_potential(name) if kind == "potential" else get_interaction(name)
    return None if energy is None else jax.jit(jax.vmap(jax.grad(energy) if gradient else energy))


def values(kind: str, name: str, points) -> np.ndarray:
    """The energy ``name`` of ``kind`` ``"potential"`` or ``"interaction"`` at ``points`` ``[n, d]`` -> ``[n]``
    (0 for ``"none"``), one compiled program per energy and shape."""
    function = _vectorised(kind, name, False)
    return np.zeros(len(points), np.float32) if function is None else np.asarray(function(jnp.asarray(points)))


def gradients(kind: str, name: str, points) -> np.ndarray:
    """The gradient of :func:`values` at ``points`` ``[n, d]`` -> ``[n, d]`` (0 for ``"none"``)."""
    function = _vectorised(kind, name, True)
    return np.zeros_like(np.asarray(points)) if function is None else np.asarray(function(jnp.asarray(points)))
