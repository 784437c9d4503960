"""Shared fixtures for the library's unit tests."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture
def key() -> jax.Array:
    """The one root PRNG key of a test; split it by purpose (style.md section 4)."""
    return jax.random.key(0)


@pytest.fixture
def x64():
    """Runs the test with 64-bit floats (for finite differences and exact-arithmetic references)."""
    with jax.enable_x64(True):
        yield
