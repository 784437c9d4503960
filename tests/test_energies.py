"""Tests of jkonetstar.energies: the 15 potentials against independent NumPy references.

The references below are written from paper.md section 1.0 (the code's definitions, Eq. 31-45),
not from the module. "Half-means" a, b are the means of the first floor(d/2) and of the remaining
coordinates (for d = 2: a = v_0, b = v_1; for odd d the paper does not say where the middle
coordinate goes, we put it in the second half like the module's docstring "first and second half").
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jkonetstar import energies

PAPER_ORDER = [
    "styblinski_tang", "holder_table", "flowers", "oakley_ohagan", "watershed", "ishigami", "friedman",
    "sphere", "bohachevsky", "wavy_plateau", "zigzag_ridge", "double_exp", "relu", "rotational", "flat",
]


def _halves(v):
    half = len(v) // 2
    return v[:half].mean(), v[half:].mean()


def _ref_friedman(v):
    a, b = _halves(2.0 * (v - 7.0))
    b = b / 2.0
    return (10 * np.sin(np.pi * a * b) + 20 * (a * np.sin(b) - 0.5) ** 2 + 10 * (a * np.cos(b) - 1) ** 2
            + 0.1 * b * np.sin(a)) / 100


def _ref_holder_table(v):
    a, b = _halves(v)
    return 10 * abs(np.sin(a) * np.cos(b) * np.exp(abs(1 - np.sqrt(np.sum(v**2)) / np.pi)))


def _ref_ishigami(v):
    a, b = _halves(v)
    return np.sin(a) + 7 * np.sin(b) ** 2 + 0.1 * ((a + b) / 2) ** 4 * np.sin(a)


def _ref_bohachevsky(v):
    a, b = _halves(v)
    return 10 * (a**2 + 2 * b**2 - 0.3 * np.cos(3 * np.pi * a) - 0.4 * np.cos(4 * np.pi * b))


def _ref_rotational(v):
    # The published runs': 10 * relu_energy(theta + pi) with relu_energy(u) = -50 max(u, 0) (paper.md 1.0).
    a, b = _halves(v)
    return 10 * (-50 * max(np.arctan2(b + 5, a + 5) + np.pi, 0.0))


REFERENCES = {
    "styblinski_tang": lambda v: 0.5 * np.sum(v**4 - 16 * v**2 + 5 * v),
    "holder_table": _ref_holder_table,
    "flowers": lambda v: np.sum(v + 2 * np.sin(np.abs(v) ** 1.2)),
    "oakley_ohagan": lambda v: 5 * np.sum(np.sin(v) + np.cos(v) + v**2 + v),
    "watershed": lambda v: sum(v[i] + v[i] ** 2 * (v[i + 1] + 4) for i in range(len(v) - 1)) / 10,
    "ishigami": _ref_ishigami,
    "friedman": _ref_friedman,
    "sphere": lambda v: -10 * np.sum(v**2),
    "bohachevsky": _ref_bohachevsky,
    "wavy_plateau": lambda v: np.sum(np.cos(np.pi * v) + 0.5 * v**4 - 3 * v**2 + 1),
    "zigzag_ridge": lambda v: sum((v[i] - v[i + 1]) ** 2 + np.cos(v[i]) * (v[i] + v[i + 1]) + v[i] ** 2 * v[i + 1]
                                  for i in range(len(v) - 1)),
    "double_exp": lambda v: 200 * (np.exp(-np.sum((v - 3) ** 2) / 20) + np.exp(-np.sum((v + 3) ** 2) / 20)),
    "relu": lambda v: -50 * np.sum(np.maximum(v, 0)),
    "rotational": _ref_rotational,
    "flat": lambda v: 0.0,
}


def _away_from_kinks(name: str, v: np.ndarray, margin: float = 1e-2) -> bool:
    """True if ``v`` is at least ``margin`` from the set where ``name`` is not smooth.

    holder_table: |.| of sin(a) cos(b) (zero set) and |1 - |v|/pi| (the sphere |v| = pi).
    relu: any coordinate 0. flowers: |v_i|^1.2 has an unbounded second derivative at v_i = 0, which
    spoils the finite-difference truncation error there. rotational: the kink and the atan2 branch cut
    are at b + 5 = 0 (a + 5 < 0), outside [-4, 4]^d, so nothing is excluded.
    """
    a, b = _halves(v)
    if name == "holder_table":
        return abs(np.sin(a)) > margin and abs(np.cos(b)) > margin and abs(np.linalg.norm(v) - np.pi) > margin
    if name in ("relu", "flowers"):
        return bool(np.all(np.abs(v) > margin))
    return True


def _points(dim: int, n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + dim).uniform(-4.0, 4.0, size=(n, dim))


def test_registry_lists_the_15_potentials_in_paper_order():
    assert list(energies.POTENTIALS) == PAPER_ORDER
    assert energies.potential_names() == PAPER_ORDER
    assert set(REFERENCES) == set(PAPER_ORDER)


def test_interactions_are_the_potentials_but_holder_table():
    expected = [name for name in PAPER_ORDER if name != "holder_table"]
    assert list(energies.INTERACTIONS) == expected
    assert energies.interaction_names() == ["none", *expected]
    for name in expected:
        assert energies.get_interaction(name) is energies.POTENTIALS[name]


def test_none_means_no_term():
    assert energies.get_potential("none") is None
    assert energies.get_interaction("none") is None


@pytest.mark.parametrize("name", ["wavy", "Sphere", ""])
def test_unknown_potential_raises_naming_it(name):
    with pytest.raises(ValueError, match=re.escape(f"unknown potential {name!r}")):
        energies.get_potential(name)


@pytest.mark.parametrize("name", ["wavy", "holder_table"])
def test_unknown_interaction_raises_naming_it(name):
    with pytest.raises(ValueError, match=re.escape(f"unknown interaction {name!r}")):
        energies.get_interaction(name)


def _values_and_grads(points) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Values ``[n]`` and jax.grad ``[n, d]`` of every potential at ``points``, compiled as one program."""

    @jax.jit
    def evaluate(p):
        return {name: jax.vmap(jax.value_and_grad(fn))(p) for name, fn in energies.POTENTIALS.items()}

    return jax.tree.map(np.asarray, evaluate(points))


@pytest.fixture(scope="module")
def evaluated_x64():
    """{dim: (points [n, d] float64, {name: (values, grads)})} at random points of [-4, 4]^d, in float64."""
    out = {}
    with jax.enable_x64(True):
        for dim in (2, 5):
            points = _points(dim, n=24)
            out[dim] = points, _values_and_grads(jnp.asarray(points))
    return out


GRID_AXIS = np.linspace(-4.0, 4.0, 41)
GRID = np.stack(np.meshgrid(GRID_AXIS, GRID_AXIS), -1).reshape(-1, 2).astype(np.float32)


@pytest.fixture(scope="module")
def evaluated_grid_f32():
    """{name: (values, grads)} on a 41 x 41 grid over [-4, 4]^2 in float32, the library's precision."""
    return _values_and_grads(jnp.asarray(GRID))


@pytest.mark.parametrize("dim", [2, 5])
@pytest.mark.parametrize("name", PAPER_ORDER)
def test_potential_matches_numpy_reference(evaluated_x64, name, dim):
    # float64 on both sides: the only differences are the order of operations, so 1e-12 relative
    # (plus an absolute 1e-12 times the largest value, for values that cancel to about 0).
    points, results = evaluated_x64[dim]
    values = results[name][0]
    expected = np.array([REFERENCES[name](v) for v in points])
    assert values.dtype == np.float64
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-12 * scale)


@pytest.mark.parametrize("dim", [2, 5])
@pytest.mark.parametrize("name", PAPER_ORDER)
def test_gradient_matches_central_differences(evaluated_x64, name, dim):
    # Central differences of the NumPy reference with h = 1e-5 in float64: truncation
    # ~ h^2 |f'''| / 6 <= 1e-10 * 1e3 and rounding ~ 1e-16 |f| / h <= 1e-8 for |f| <= 1e3, so 1e-6
    # relative to max(1, |grad|) is ample. Points closer than 1e-2 to a non-smooth set are skipped
    # (see _away_from_kinks); at least 8 of the 24 remain.
    points, results = evaluated_x64[dim]
    keep = np.array([_away_from_kinks(name, v) for v in points])
    assert keep.sum() >= 8
    h = 1e-5
    for v, grad in zip(points[keep], results[name][1][keep], strict=True):
        fd = np.array([(REFERENCES[name](v + h * e) - REFERENCES[name](v - h * e)) / (2 * h) for e in np.eye(dim)])
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * max(1.0, float(np.max(np.abs(fd)))))


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_potential_finite_and_differentiable_on_grid(evaluated_grid_f32, name):
    # The grid includes 0, the box edges and points on the kinks of relu / flowers (v_i = 0):
    # values and jax.grad must be finite everywhere.
    values, grads = evaluated_grid_f32[name]
    assert values.shape == (len(GRID),) and grads.shape == (len(GRID), 2)
    assert values.dtype == np.float32 and grads.dtype == np.float32
    assert np.all(np.isfinite(values)), GRID[~np.isfinite(values)]
    bad = ~np.all(np.isfinite(grads), axis=1)
    assert not bad.any(), f"non-finite gradient at {GRID[bad].tolist()}: {grads[bad].tolist()}"


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_float32_values_agree_with_reference_on_grid(evaluated_grid_f32, name):
    # float32 against the float64 reference at the same (float32) points: sums of up to 3d terms of
    # size up to 4^4 lose about 3d * 2^-24 of the largest term, hence rtol 1e-5 plus an atol of 1e-5
    # times the largest value (for values that cancel to about 0).
    values, _ = evaluated_grid_f32[name]
    expected = np.array([REFERENCES[name](v) for v in GRID.astype(np.float64)])
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5 * scale)


def test_sphere_gradient_is_minus_20x():
    # The simulator tests rely on this closed form.
    v = jnp.array([0.5, -1.25, 3.0])
    np.testing.assert_array_equal(np.asarray(jax.grad(energies.POTENTIALS["sphere"])(v)), -20.0 * np.asarray(v))


def test_rotational_is_the_published_runs_potential():
    # paper.md 1.0: the published runs used 10 * relu(theta + pi) with the code's relu energy (-50 max(., 0)),
    # V = -500 (theta + pi), theta = atan2(b + 5, a + 5). At the origin theta = pi / 4, and
    # d theta / d(a, b) = (-(b + 5), a + 5) / ((a + 5)^2 + (b + 5)^2) = (-0.1, 0.1), so grad V = (50, -50).
    with jax.enable_x64(True):
        value, grad = jax.value_and_grad(energies.POTENTIALS["rotational"])(jnp.zeros(2))
    np.testing.assert_allclose(float(value), -500 * (np.pi / 4 + np.pi), rtol=1e-14)
    np.testing.assert_allclose(float(value), -1963.495, atol=5e-4)
    np.testing.assert_allclose(np.asarray(grad), [50.0, -50.0], rtol=1e-12)


# V and grad V (central differences of the NumPy references above, float64, h = 1e-6) at three points, recorded
# once: (V, dV/dv_0, dV/dv_1). Hand checks: sphere (-10 |v|^2, grad -20 v), relu (-50 sum max(v, 0)), watershed.
RECORDED_POINTS = np.array([[0.5, -1.25], [-2.0, 3.0], [1.5, 2.5]])
RECORDED = {
    "styblinski_tang": [(-15.12304688, -5.25, 18.59375), (-53, 18.5, 8.5), (-35.9375, -14.75, -6.25)],
    "holder_table": [(2.677064388, 4.5838581, 8.8480003), (10.43459531, 2.9330708, 4.2510163),
                     (8.587752559, -0.79740925, 4.0712287)],
    "flowers": [(2.024159951, 2.8945005, 0.34576502), (1.372863027, 2.8314823, -1.4749543),
                (6.27354774, 0.85455359, -1.8549823)],
    "oakley_ohagan": [(8.929229218, 11.990785, -1.1784651), (59.12841624, -12.534247, 29.344437),
                      (66.82780358, 15.366211, 23.001921)],
    "watershed": [(0.11875, 0.375, 0.025), (2.6, -2.7, 0.4), (1.6125, 2.05, 0.225)],
    "ishigami": [(6.784376276, 0.87426157, -4.1943614), (-0.775576539, -0.44148019, -1.9786409),
                 (5.100669316, 1.7799087, -5.1164779)],
    "friedman": [(27.96629525, -5.4524859, 16.312452), (51.47546855, -13.88362, -42.786929),
                 (25.39465363, -8.9112201, -7.5999507)],
    "sphere": [(-18.125, -10, 25), (-130, 40, -60), (-85, -30, -50)],
    "bohachevsky": [(37.75, -18.274334, -50), (213, -40, 120), (143.5, 58.274334, 100)],
    "wavy_plateau": [(-2.892653656, -5.8915927, 1.3723085), (11.5, -4, 36), (-1.4375, 0.89159265, 13.108407)],
    "zigzag_ridge": [(2.091813079, 3.4871517, -2.3724174), (36.58385316, -21.506849, 13.583853),
                     (6.907948807, 1.5807573, 4.3207372)],
    "double_exp": [(152.3135633, -17.726792, 8.9280818), (88.74839263, 25.505736, -18.86846),
                   (192.5110431, 19.269659, 0.018554616)],
    "relu": [(-25, -50, 0), (-150, 0, -50), (-200, -50, -50)],
    "rotational": [(-1870.005774, 42.313117, -62.059238), (-2176.809155, 54.79452, -20.547945),
                   (-1999.149141, 38.071066, -32.994924)],
    "flat": [(0, 0, 0), (0, 0, 0), (0, 0, 0)],
}


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_potential_and_gradient_at_recorded_points(name):
    assert set(RECORDED) == set(PAPER_ORDER)
    with jax.enable_x64(True):
        values, grads = jax.vmap(jax.value_and_grad(energies.POTENTIALS[name]))(jnp.asarray(RECORDED_POINTS))
    expected = np.array(RECORDED[name])
    np.testing.assert_allclose(np.asarray(values), expected[:, 0], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(np.asarray(grads), expected[:, 1:], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind, name", [("potential", "wavy_plateau"), ("potential", "styblinski_tang"),
                                        ("interaction", "zigzag_ridge")])
def test_compiled_values_and_gradients_equal_the_functions(kind, name):
    energy = (energies.get_potential if kind == "potential" else energies.get_interaction)(name)
    points = np.random.default_rng(0).uniform(-3, 3, (50, 2)).astype(np.float32)
    np.testing.assert_allclose(energies.values(kind, name, points), [float(energy(p)) for p in points],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(energies.gradients(kind, name, points),
                               np.stack([np.asarray(jax.grad(energy)(p)) for p in points]), rtol=1e-5, atol=1e-4)
    assert not energies.values(kind, "none", points).any() and not energies.gradients(kind, "none", points).any()
