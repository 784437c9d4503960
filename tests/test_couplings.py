"""Tests for jkonetstar.couplings: exact plans against brute-force assignment and an LP, blocking,
sparsification, pairing and the Sinkhorn variant."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment, linprog

from jkonetstar import couplings
from jkonetstar.couplings import Couplings, SparsifyWarning, couple, exact_plan, sinkhorn_plan, sparsify
from jkonetstar.io import load_npz, save_npz


def _uniform(rng, n, dim=2):
    return rng.uniform(-4, 4, (n, dim)).astype(np.float32)


def _time_course(rng, sizes, dim=2, step=1e-3):
    """Particles drifting by a tiny random step per snapshot; returns (x, t) flat as in the contract."""
    x0 = _uniform(rng, max(sizes), dim)
    snapshots, current = [], x0
    for size in sizes:
        snapshots.append(current[:size])
        current = current + step * rng.normal(size=current.shape).astype(np.float32)
    x = np.concatenate(snapshots)
    t = np.concatenate([np.full(size, label, np.int32) for label, size in enumerate(sizes)])
    return x, t


def _row_index(points, rows):
    """Index in ``points`` of each row of ``rows`` (exact float match)."""
    lookup = {p.tobytes(): i for i, p in enumerate(points)}
    return np.array([lookup[r.tobytes()] for r in rows])


@pytest.mark.parametrize("seed", range(5))
def test_exact_plan_is_the_brute_force_optimal_permutation(seed):
    rng = np.random.default_rng(seed)
    x0, x1 = _uniform(rng, 8), _uniform(rng, 8)
    cost = ((x0[:, None, :].astype(np.float64) - x1[None].astype(np.float64)) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    expected = np.zeros((8, 8))
    expected[rows, cols] = 1 / 8
    # The simplex returns a vertex; for random points the optimum is unique, and 1/8 is exact in float64.
    np.testing.assert_allclose(exact_plan(x0, x1), expected, rtol=0, atol=1e-15)


def test_exact_plan_unequal_sizes_matches_linear_program():
    rng = np.random.default_rng(0)
    x0, x1 = _uniform(rng, 7), _uniform(rng, 5)
    plan = exact_plan(x0, x1)
    np.testing.assert_allclose(plan.sum(1), np.full(7, 1 / 7), rtol=1e-12)
    np.testing.assert_allclose(plan.sum(0), np.full(5, 1 / 5), rtol=1e-12)
    assert (plan >= 0).all()
    cost = ((x0[:, None, :].astype(np.float64) - x1[None].astype(np.float64)) ** 2).sum(-1)
    equalities = np.concatenate([np.kron(np.eye(7), np.ones((1, 5))), np.kron(np.ones((1, 7)), np.eye(5))])
    marginals = np.concatenate([np.full(7, 1 / 7), np.full(5, 1 / 5)])
    reference = linprog(cost.ravel(), A_eq=equalities, b_eq=marginals, bounds=(0, None), method="highs")
    # Two independent LP solvers agree on the optimal value to roughly their feasibility tolerance.
    np.testing.assert_allclose((plan * cost).sum(), reference.fun, rtol=1e-9)


def test_couple_blocks_balanced_snapshots_with_uniform_marginals():
    rng = np.random.default_rng(1)
    n, block_size = 25, 10  # blocks of 10, 10 and 5 particles
    x, t = _time_course(rng, [n, n, n])
    result, seconds = couple(x, t, block_size=block_size)
    assert len(seconds) == 2 and all(s >= 0 for s in seconds)
    assert set(np.unique(result.time)) == {1, 2}
    for label in (1, 2):
        rows = result.time == label
        np.testing.assert_allclose(result.weight[rows].sum(dtype=np.float64), 1.0, rtol=1e-6)
        source_index = _row_index(x[t == label - 1], result.source[rows])
        target_index = _row_index(x[t == label], result.target[rows])
        # Every source particle ships exactly its mass 1/n (exact plans of equal blocks are permutations).
        mass = np.bincount(source_index, weights=result.weight[rows].astype(np.float64), minlength=n)
        np.testing.assert_allclose(mass, np.full(n, 1 / n), rtol=1e-6)
        # Block k at t is only coupled with block k at t + 1.
        np.testing.assert_array_equal(source_index // block_size, target_index // block_size)


def test_paired_tiny_displacement_gives_the_identity_and_shuffled_does_not():
    rng = np.random.default_rng(2)
    n = 40
    x, t = _time_course(rng, [n, n], step=1e-4)
    paired, _ = couple(x, t, block_size=10)
    np.testing.assert_array_equal(_row_index(x[t == 0], paired.source), _row_index(x[t == 1], paired.target))

    for pairing in ("shuffled", "independent"):  # both shuffle every snapshot before blocking
        shuffled, _ = couple(x, t, block_size=10, pairing=pairing, rng=np.random.default_rng(0))
        same = _row_index(x[t == 0], shuffled.source) == _row_index(x[t == 1], shuffled.target)
        assert same.mean() < 0.5  # shuffled blocks rarely hold the same particle at t and t + 1
        np.testing.assert_allclose(shuffled.weight.sum(dtype=np.float64), 1.0, rtol=1e-6)


@pytest.mark.parametrize("block_size", [None, 30, 1000])
def test_shuffled_with_one_block_equals_paired(block_size):
    # With one block (whole snapshots) the plan couples whole snapshots, so row order is irrelevant.
    rng = np.random.default_rng(3)
    x, t = _time_course(rng, [30, 30, 30], step=0.3)
    paired, _ = couple(x, t, block_size=block_size)
    as_set = lambda c: {(a.tobytes(), b.tobytes(), int(s), round(float(w), 6))
                        for a, b, s, w in zip(c.source, c.target, c.time, c.weight)}
    for pairing in ("shuffled", "independent"):
        shuffled, _ = couple(x, t, block_size=block_size, pairing=pairing, rng=np.random.default_rng(5))
        assert len(shuffled.source) == len(paired.source) and as_set(paired) == as_set(shuffled)


def test_shuffled_is_reproducible_from_the_generator_seed():
    rng = np.random.default_rng(4)
    x, t = _time_course(rng, [20, 20])
    first, _ = couple(x, t, block_size=5, pairing="shuffled", rng=np.random.default_rng(7))
    again, _ = couple(x, t, block_size=5, pairing="shuffled", rng=np.random.default_rng(7))
    other, _ = couple(x, t, block_size=5, pairing="shuffled", rng=np.random.default_rng(8))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.source, other.source)


def test_unbalanced_snapshots_get_one_plan_per_pair():
    rng = np.random.default_rng(5)
    sizes = [10, 7, 12]
    x, t = _time_course(rng, sizes, step=0.2)
    result, seconds = couple(x, t, block_size=3)
    assert len(seconds) == 2
    for label in (1, 2):
        rows = result.time == label
        np.testing.assert_allclose(result.weight[rows].sum(dtype=np.float64), 1.0, rtol=1e-6)
        assert set(_row_index(x[t == label], result.target[rows])) <= set(range(sizes[label]))
    assert result.source.dtype == np.float32 and result.time.dtype == np.int32


def test_sparsify_keeps_entries_above_threshold_and_raises_when_none_survive():
    x0 = np.arange(8, dtype=np.float32).reshape(4, 2)
    x1 = x0 + 1
    plan = np.full((4, 4), 1 / 40)  # threshold 1/(10*4) = 1/40: no entry is strictly above it
    plan[0, 0] = plan[0, 1] = 0.1
    kept = sparsify(plan, x0, x1, label=3)
    np.testing.assert_array_equal(kept.source, x0[[0, 0]])
    np.testing.assert_array_equal(kept.target, x1[[0, 1]])
    np.testing.assert_array_equal(kept.time, [3, 3])
    with pytest.raises(ValueError, match=r"no plan entry into snapshot 2 exceeds the sparsification threshold"):
        sparsify(np.full((4, 4), 1 / 16 / 4), x0, x1, label=2)


def test_relaxed_sparsify_halves_the_threshold_until_an_entry_passes():
    # Threshold 1/40 = 0.025. Largest entries 0.01 (two of them), 0.005 elsewhere: 0.025 / 2 / 2 = 0.00625 is the
    # first halving (2 of them) below 0.01 and above 0.005, so exactly the two largest entries survive.
    x0 = np.arange(8, dtype=np.float32).reshape(4, 2)
    x1 = x0 + 1
    plan = np.full((4, 4), 0.005)
    plan[1, 2] = plan[3, 0] = 0.01
    with pytest.warns(SparsifyWarning, match=r"halved 2 times, 0.025 -> 0.00625, keeping 2 of 16 entries"):
        kept = sparsify(plan, x0, x1, label=4, relax=True)
    np.testing.assert_array_equal(kept.source, x0[[1, 3]])
    np.testing.assert_array_equal(kept.target, x1[[2, 0]])
    np.testing.assert_array_equal(kept.weight, [0.01, 0.01])
    with pytest.raises(ValueError, match=r"couplings.sparsify_relax"):
        sparsify(plan, x0, x1, label=4)
    with pytest.raises(ValueError, match="too diffuse"):
        sparsify(np.zeros((4, 4)), x0, x1, label=4, relax=True)


def test_diffuse_sinkhorn_couplings_relax_with_a_warning_and_keep_unit_mass():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2)) * 0.1  # a tight cloud: at epsilon = 10 the plan is nearly uniform, 1/900 < 1/300
    t = np.repeat([0, 1], 30)
    with pytest.raises(ValueError, match="too diffuse"):
        couple(x, t, method="sinkhorn", epsilon=10.0)
    with pytest.warns(SparsifyWarning):
        pairs, _ = couple(x, t, method="sinkhorn", epsilon=10.0, sparsify_relax=True)
    assert len(pairs.source) > 0
    np.testing.assert_allclose(pairs.weight.sum(), 1.0, rtol=1e-5)


def test_sinkhorn_plan_has_uniform_marginals():
    rng = np.random.default_rng(6)
    x0, x1 = _uniform(rng, 30), _uniform(rng, 20)
    plan, converged = sinkhorn_plan(x0, x1, epsilon=0.1)
    assert converged
    # ott stops when the L1 error of the column marginal is below threshold=1e-3; rows are exact
    # after the last row update up to float32 rounding.
    assert np.abs(plan.sum(0) - 1 / 20).sum() < 1e-3
    assert np.abs(plan.sum(1) - 1 / 30).sum() < 1e-3


def test_sinkhorn_at_small_epsilon_approaches_the_exact_coupling():
    rng = np.random.default_rng(7)
    x, t = _time_course(rng, [20, 20], step=0.5)
    exact, _ = couple(x, t, block_size=None)
    entropic, seconds = couple(
        x, t, method="sinkhorn", epsilon=1e-3, block_size=None, sinkhorn_max_iterations=20_000
    )
    assert len(seconds) == 1
    np.testing.assert_array_equal(entropic.source, exact.source)
    np.testing.assert_array_equal(entropic.target, exact.target)
    # Sinkhorn stops once the column marginals' L1 error is below threshold = 1e-3, and the mass off the
    # permutation is negligible at epsilon = 1e-3; renormalising the kept mass at most doubles the error.
    assert np.abs(entropic.weight - exact.weight).sum() < 2e-3


def test_sinkhorn_non_convergence_is_an_error():
    rng = np.random.default_rng(8)
    x, t = _time_course(rng, [20, 20], step=0.5)
    with pytest.raises(RuntimeError, match=r"Sinkhorn did not converge into snapshot 1 \(epsilon=0.001"):
        couple(x, t, method="sinkhorn", epsilon=1e-3, block_size=None, sinkhorn_max_iterations=10)


def test_couplings_round_trip_through_npz(tmp_path):
    rng = np.random.default_rng(9)
    x, t = _time_course(rng, [12, 12, 12])
    result, _ = couple(x, t, block_size=5)
    save_npz(tmp_path / "couplings.npz", **result._asdict())
    loaded = Couplings(**load_npz(tmp_path / "couplings.npz", required=Couplings._fields))
    for a, b in zip(result, loaded):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "lp"}, r"unknown coupling method 'lp': choose one of \['exact', 'sinkhorn'\]"),
        ({"pairing": "random"}, r"unknown pairing 'random': choose one of \['paired', 'shuffled', 'independent'\]"),
        ({"pairing": "unpaired"}, r"^pairing 'unpaired' is now called 'shuffled' .*: use 'shuffled'"),
        ({"method": "sinkhorn"}, r"method='sinkhorn' needs epsilon > 0, got epsilon=None"),
        ({"method": "sinkhorn", "epsilon": 0.0}, r"needs epsilon > 0, got epsilon=0.0"),
        ({"epsilon": 0.1}, r"method='exact' takes no epsilon"),
        ({"block_size": 0}, r"block_size must be a positive integer or None, got 0"),
        ({"pairing": "shuffled"}, r"pairing='shuffled' needs rng"),
        ({"pairing": "independent"}, r"pairing='independent' needs rng"),
    ],
)
def test_couple_rejects_bad_settings(kwargs, message):
    x, t = _time_course(np.random.default_rng(0), [4, 4])
    with pytest.raises(ValueError, match=message):
        couple(x, t, **kwargs)


def test_couple_needs_two_snapshots_and_matching_shapes():
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match=r"need at least two snapshot labels in t to couple, got \[0\]"):
        couple(x, np.zeros(4, np.int32))
    with pytest.raises(ValueError, match=r"expected x of shape \[n, d\] and t of shape \[n\]"):
        couple(x, np.zeros(3, np.int32))
    with pytest.raises(ValueError, match=r"expected point clouds \[n0, d\] and \[n1, d\]"):
        exact_plan(x, np.zeros((4, 3)))


def test_module_declares_its_public_names():
    assert set(couplings.__all__) >= {"Couplings", "exact_plan", "sinkhorn_plan", "sparsify", "couple"}
