"""Figures built from small synthetic inputs: panel counts, drawn artists and the normalisations."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from jkonetstar import figures, plots

POTENTIALS = ["styblinski_tang", "flowers", "flat"]
SOLVERS = ["jkonet-star-potential", "jkonet-star-linear-potential"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def synthetic_results(diverged=(("flowers", "jkonet-star-potential", 1),), seeds=(0, 1)):
    """Tidy table + history: MLP runs evaluated at epochs 10, 20, 30 with decreasing W1; linear runs once."""
    rows, history = [], []
    for i, potential in enumerate(POTENTIALS):
        for solver in SOLVERS:
            for seed in seeds:
                failed = (potential, solver, seed) in diverged
                w1 = np.nan if failed else 0.1 * (i + 1) + 0.01 * seed
                linear = "linear" in solver
                metrics = {"w1_mean": w1, "diverged": float(failed), "seconds_per_epoch": 2.0 if linear else 0.01}
                rows += [dict(potential=potential, solver=solver, seed=seed, metric=k, value=v)
                         for k, v in metrics.items()]
                epochs = [1] if linear else [10, 20, 30]
                for j, epoch in enumerate(epochs):
                    history.append(dict(potential=potential, solver=solver, seed=seed, epoch=epoch,
                                        loss=1.0 / epoch, seconds=0.01, w1=(3 - j) * 0.1))
    return pd.DataFrame(rows), pd.DataFrame(history)


def test_solver_labels_use_paper_names():
    assert plots.solver_label("jkonet-star") == r"JKOnet$^*$"
    assert plots.solver_label("jkonet-star-linear-potential") == r"JKOnet$^*_{l,V}$"
    assert plots.solver_label("something-new") == "something-new"


def test_level_curves_share_levels_between_panels():
    axis = np.linspace(-4, 4, 25)
    grid_x, grid_y = np.meshgrid(axis, axis)
    v_true = grid_x**2 + grid_y**2
    fig = plots.level_curves(grid_x, grid_y, v_true, 0.9 * v_true, n_levels=9, title="t")
    true_ax, learned_ax, colorbar_ax = fig.axes
    assert len(fig.axes) == 3
    filled_true = true_ax.collections[0]
    filled_learned = learned_ax.collections[0]
    np.testing.assert_allclose(filled_true.levels, filled_learned.levels)
    assert len(filled_true.levels) == 9
    # Learned panel: filled contours, its lines and the dotted true lines.
    assert len(learned_ax.collections) == 3


def test_level_curves_without_learned_potential_shows_message():
    axis = np.linspace(-4, 4, 10)
    grid_x, grid_y = np.meshgrid(axis, axis)
    fig = plots.level_curves(grid_x, grid_y, np.zeros_like(grid_x), None, message="learns no potential")
    learned_ax = fig.axes[1]
    assert [t.get_text() for t in learned_ax.texts] == ["learns no potential"]
    assert not learned_ax.collections


def test_predictions_vs_observed_has_one_panel_per_step():
    rng = np.random.default_rng(0)
    observed = [rng.normal(size=(30, 2)) for _ in range(4)]
    predicted = [x + 0.1 for x in observed]
    predicted[2][0] = np.nan
    fig = plots.predictions_vs_observed(observed, predicted, w1=[0.1, 0.2, 0.3, 0.4], max_points=10)
    assert len(fig.axes) == 4
    for ax in fig.axes:
        clouds = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert [len(c.get_offsets()) for c in clouds] == [10, 10]
    assert "0.3" in fig.axes[2].get_title()
    assert fig.axes[0].get_title().startswith("t = 0")


@pytest.mark.parametrize("stretch", [1.0, 1.6, 0.3])
def test_predictions_vs_observed_titles_and_labels_stay_inside_and_apart(stretch):
    """Seven equal-aspect panels of a cloud taller than wide (bifurcation's 8 snapshots drew the title over the
    panel titles and cut the x labels before the figure height followed the data's aspect)."""
    rng = np.random.default_rng(1)
    observed = [rng.normal(size=(40, 2)) * [1.0, stretch] for _ in range(7)]
    fig = plots.predictions_vs_observed(observed, [x + 0.1 for x in observed], w1=[0.1] * 7, title="a title")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    figure_box = fig.bbox
    suptitle = fig._suptitle.get_window_extent(renderer)
    for ax in fig.axes:
        title = ax.title.get_window_extent(renderer)
        assert suptitle.y0 >= title.y1 - 1, "figure title overlaps a panel title"
        label = ax.xaxis.label.get_window_extent(renderer)
        assert label.y0 >= figure_box.y0 - 1 and title.y1 <= figure_box.y1 + 1, "text outside the figure"
    plt.close(fig)


def test_predictions_vs_observed_names_its_steps_by_the_snapshot_names():
    observed = [np.zeros((3, 2)), np.ones((3, 2))]
    fig = plots.predictions_vs_observed(observed, observed, target_labels=[1, 2], w1=[0.5, 0.25],
                                        names=["day0-3", "day6-9", "day12-15"])
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == ["day0-3 $\\to$ day6-9", "day6-9 $\\to$ day12-15"]
    plt.close(fig)


def test_predictions_vs_observed_rejects_mismatched_steps():
    with pytest.raises(ValueError, match="observed has 2 steps but predicted has 1"):
        plots.predictions_vs_observed([np.zeros((3, 2))] * 2, [np.zeros((3, 2))])


def test_convergence_ratio_is_min_max_normalised_within_each_run():
    history = pd.DataFrame(dict(potential="p", solver=["a", "a", "a", "b"], seed=0, epoch=[10, 20, 30, 1],
                                w1=[0.5, 0.3, 0.1, 0.7]))
    ratio = figures.convergence_ratio(history, ["potential", "solver", "seed"])
    np.testing.assert_allclose(ratio[ratio.solver == "a"]["ratio"], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(ratio[ratio.solver == "b"]["ratio"], [0.0])


def test_figure3_panels_normalisation_and_nan_row():
    table, history = synthetic_results()
    fig = figures.figure3(table, history, potential_order=POTENTIALS, caption="settings")
    ax_nan, ax_emd, ax_conv, ax_time = fig.axes
    assert len(fig.axes) == 4
    assert [t.get_text() for t in ax_nan.get_yticklabels()] == ["NaN"]
    # The diverged run (flowers, MLP, seed 1) is on the NaN row at the flowers column.
    nan_points = np.concatenate([c.get_offsets() for c in ax_nan.collections if len(c.get_offsets())])
    assert len(nan_points) == 1 and abs(nan_points[0][0] - 1) < 0.5
    # Largest finite mean (flat, linear: 0.3 and 0.31 over seeds) is divided to 1.
    markers = np.concatenate([line.get_ydata() for line in ax_emd.lines if line.get_marker() not in ("", "None", "_")])
    assert np.isclose(markers.max(), 1.0)
    assert ax_emd.get_yscale() == "log" and ax_time.get_yscale() == "log"
    assert [t.get_text() for t in ax_emd.get_xticklabels()] == ["styblinski tang", "flowers", "flat"]
    # Convergence curves start at (0, 1); the MLP curve falls to 0 at its last evaluation.
    curves = [line for line in ax_conv.lines if len(line.get_xdata()) > 1]
    assert len(curves) == 2
    for line in curves:
        assert line.get_xdata()[0] == 0 and line.get_ydata()[0] == 1
        assert np.isclose(line.get_ydata()[-1], 0.0)
    # One box per solver, labelled with the paper's names.
    assert [t.get_text() for t in ax_time.get_xticklabels()] == [plots.solver_label(s) for s in SOLVERS]
    assert any(t.get_text() == "settings" for t in fig.texts)


def test_figure3_draws_exact_zero_hollow_at_floor():
    table, history = synthetic_results(diverged=(), seeds=(0,))
    table.loc[(table.potential == "flat") & (table.solver == SOLVERS[1]) & (table.metric == "w1_mean"), "value"] = 0.0
    fig = figures.figure3(table, history)
    ax_emd = fig.axes[1]
    hollow = [c for c in ax_emd.collections if isinstance(c, PathCollection) and len(c.get_offsets())]
    assert len(hollow) == 1
    assert 0 < hollow[0].get_offsets()[0][1] < 0.1
    assert any("exactly 0" in t.get_text() for t in ax_emd.texts)
