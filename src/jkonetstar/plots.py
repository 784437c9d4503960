"""Figures of the paper from arrays and tidy tables: level curves, one-step predictions, Figure 3.

Every function is pure: it takes arrays or pandas DataFrames and returns a new matplotlib
``Figure`` (Agg backend) that the caller saves and closes. Nothing is read from disk here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = [
    "SOLVER_LABELS",
    "solver_label",
    "level_curves",
    "predictions_vs_observed",
    "convergence_ratio",
    "figure3",
]

SOLVER_LABELS: dict[str, str] = {
    "jkonet-star": r"JKOnet$^*$",
    "jkonet-star-potential": r"JKOnet$^*_{V}$",
    "jkonet-star-linear": r"JKOnet$^*_{l}$",
    "jkonet-star-linear-potential": r"JKOnet$^*_{l,V}$",
    "jkonet-star-potential-internal": r"JKOnet$^*_{V,\beta}$",
    "jkonet-star-linear-potential-internal": r"JKOnet$^*_{l,V,\beta}$",
    "jkonet-star-linear-interaction": r"JKOnet$^*_{l,W}$",
    "jkonet-star-time-potential": r"JKOnet$^*_{V(t)}$",
    "jkonet": "JKOnet",
    "jkonet-vanilla": "JKOnet-vanilla",
    "jkonet-monge-gap": "JKOnet-Monge-gap",
}
"""Legend names: the paper's for the solvers of Figure 3, the same notation for the others."""

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h")
_TRUE_COLOR = "#1b7837"
_LEARNED_COLOR = "#2166ac"


def solver_label(name: str) -> str:
    """Returns the legend label of solver ``name`` (the name itself when it has no paper label)."""
    return SOLVER_LABELS.get(name, name)


def _solver_styles(solvers: Sequence[str]) -> dict[str, dict]:
    colors = plt.get_cmap("tab10").colors
    order = list(SOLVER_LABELS)
    styles = {}
    for solver in solvers:
        i = order.index(solver) if solver in order else len(order) + list(solvers).index(solver)
        styles[solver] = {"color": colors[i % len(colors)], "marker": _MARKERS[i % len(_MARKERS)]}
    return styles


def _ordered(values: Sequence[str], order: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(values))
    if order is None:
        return present
    known = [v for v in order if v in present]
    return known + [v for v in present if v not in known]


def _contour_levels(v_true: np.ndarray, v_learned: np.ndarray | None, n_levels: int) -> np.ndarray:
    values = v_true[np.isfinite(v_true)]
    if values.size == 0 or np.ptp(values) < 1e-12 * max(1.0, np.abs(values).max()):
        if v_learned is not None:
            values = np.concatenate([values, v_learned[np.isfinite(v_learned)]])
    if values.size == 0:
        return np.linspace(-1.0, 1.0, n_levels)
    low, high = np.percentile(values, [0.5, 99.5])
    if high - low < 1e-12:
        low, high = low - 1.0, high + 1.0
    return np.linspace(low, high, n_levels)


def level_curves(
    grid_x: np.ndarray,
    grid_y: np.ndarray,
    v_true: np.ndarray,
    v_learned: np.ndarray | None,
    *,
    n_levels: int = 15,
    title: str | None = None,
    learned_title: str = "learned",
    true_title: str = "true",
    message: str | None = None,
) -> Figure:
    """Returns level curves of the true potential beside the learned one, on the same levels.

    Args:
        grid_x: x coordinates of the grid, shape ``[g, g]`` (``np.meshgrid`` output).
        grid_y: y coordinates of the grid, shape ``[g, g]``.
        v_true: true potential on the grid, ``[g, g]``, already shifted/scaled as the caller wants it compared.
        v_learned: learned potential on the grid, ``[g, g]``, on the same scale; ``None`` when there is none
            (the right panel then shows ``message``).
        n_levels: number of contour levels, shared by both panels (spanning the true values' range, or the
            learned one's when the true potential is constant).
        title: figure title (say there how the two were made comparable).
        learned_title: title of the right panel.
        true_title: title of the left panel.
        message: text shown in the right panel when ``v_learned`` is ``None`` or not finite.

    Returns:
        A figure with two contour panels and one shared colour bar (three axes).
    """
    finite_learned = v_learned is not None and bool(np.all(np.isfinite(v_learned)))
    levels = _contour_levels(np.asarray(v_true), np.asarray(v_learned) if finite_learned else None, n_levels)
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.2), sharex=True, sharey=True, layout="constrained")
    filled = axes[0].contourf(grid_x, grid_y, v_true, levels=levels, cmap="viridis", extend="both")
    axes[0].contour(grid_x, grid_y, v_true, levels=levels, colors=_TRUE_COLOR, linewidths=0.8)
    axes[0].set_title(true_title)
    if finite_learned:
        axes[1].contourf(grid_x, grid_y, v_learned, levels=levels, cmap="viridis", extend="both")
        axes[1].contour(grid_x, grid_y, v_learned, levels=levels, colors=_LEARNED_COLOR, linewidths=0.8)
        axes[1].contour(
            grid_x, grid_y, v_true, levels=levels, colors=_TRUE_COLOR, linewidths=0.6, linestyles="dotted"
        )
    else:
        axes[1].text(0.5, 0.5, message or "no learned potential", ha="center", va="center",
                     transform=axes[1].transAxes, wrap=True)
    axes[1].set_title(learned_title)
    for ax in axes:
        ax.set_xlabel(r"$x_1$")
        ax.set_aspect("equal")
    axes[0].set_ylabel(r"$x_2$")
    fig.colorbar(filled, ax=axes, shrink=0.9, label="potential (shared levels)")
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


def predictions_vs_observed(
    observed: Sequence[np.ndarray],
    predicted: Sequence[np.ndarray],
    *,
    target_labels: Sequence[int] | None = None,
    w1: Sequence[float] | None = None,
    title: str | None = None,
    max_points: int = 1000,
) -> Figure:
    """Returns one scatter panel per time step: observed test particles against one-step predictions.

    Args:
        observed: per step k, the observed test population at the target snapshot, ``[n_k, d]``
            (the first two coordinates are drawn).
        predicted: per step k, the prediction from the observed population at the source snapshot, ``[n_k, d]``.
        target_labels: snapshot label of each target (default ``1..K``).
        w1: per-step Wasserstein-1 distance shown in the panel titles.
        title: figure title.
        max_points: at most this many points per cloud are drawn (evenly strided), for readable files.

    Returns:
        A figure with ``K`` axes sharing their limits.
    """
    if len(observed) != len(predicted):
        raise ValueError(f"observed has {len(observed)} steps but predicted has {len(predicted)}")
    n_steps = len(observed)
    labels = list(target_labels) if target_labels is not None else list(range(1, n_steps + 1))
    fig, axes = plt.subplots(
        1, max(n_steps, 1), figsize=(2.9 * max(n_steps, 1) + 0.6, 3.4), sharex=True, sharey=True,
        layout="constrained", squeeze=False,
    )
    axes = axes[0]
    for k, (ax, obs, pred) in enumerate(zip(axes, observed, predicted)):
        obs, pred = np.asarray(obs), np.asarray(pred)
        stride_obs = max(1, len(obs) // max_points)
        stride_pred = max(1, len(pred) // max_points)
        finite = np.all(np.isfinite(pred), axis=-1)
        ax.scatter(pred[finite][::stride_pred, 0], pred[finite][::stride_pred, 1], s=4, c=_LEARNED_COLOR,
                   alpha=0.7, lw=0, label="predicted")
        ax.scatter(obs[::stride_obs, 0], obs[::stride_obs, 1], s=12, facecolors="none", edgecolors="0.35",
                   alpha=0.6, linewidths=0.5, label="observed")
        step = f"t = {labels[k] - 1} $\\to$ {labels[k]}"
        ax.set_title(step if w1 is None else f"{step}\n$W_1$ = {w1[k]:.3g}", fontsize="medium")
        ax.set_xlabel(r"$x_1$")
        ax.set_aspect("equal", adjustable="box")
    axes[0].set_ylabel(r"$x_2$")
    axes[0].legend(loc="upper left", fontsize="small", markerscale=2.5, frameon=True)
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


def convergence_ratio(histories: pd.DataFrame, run_keys: Sequence[str]) -> pd.DataFrame:
    """Returns each run's evaluated errors min-max normalised within the run.

    The ratio is ``(e - min e) / (max e - min e)`` over the run's evaluations (0 when they are all
    equal, e.g. a closed-form solve evaluated once). Diverged evaluations (non-finite) are dropped.

    Args:
        histories: tidy history, one row per (run, epoch), with columns ``run_keys``, ``epoch`` and ``w1``.
        run_keys: the columns identifying one run.

    Returns:
        Columns ``run_keys``, ``epoch``, ``ratio``: one row per finite evaluation.
    """
    evaluated = histories[np.isfinite(histories["w1"].to_numpy(dtype=float))]
    rows = []
    for key, run in evaluated.groupby(list(run_keys), sort=False):
        errors = run["w1"].to_numpy(dtype=float)
        spread = errors.max() - errors.min()
        ratio = (errors - errors.min()) / spread if spread > 0 else np.zeros_like(errors)
        frame = pd.DataFrame({"epoch": run["epoch"].to_numpy(), "ratio": ratio})
        for name, value in zip(run_keys, key if isinstance(key, tuple) else (key,)):
            frame[name] = value
        rows.append(frame)
    if not rows:
        return pd.DataFrame(columns=[*run_keys, "epoch", "ratio"])
    return pd.concat(rows, ignore_index=True)[[*run_keys, "epoch", "ratio"]]


def _metric(table: pd.DataFrame, metric: str, run_keys: Sequence[str]) -> pd.DataFrame:
    rows = table[table["metric"] == metric]
    return rows[[*run_keys, "value"]].rename(columns={"value": metric})


def figure3(
    table: pd.DataFrame,
    histories: pd.DataFrame,
    *,
    potential_order: Sequence[str] | None = None,
    solver_order: Sequence[str] | None = None,
    caption: str | None = None,
    title: str | None = "Training at lightspeed (paper Figure 3)",
) -> Figure:
    """Returns the three panels of the paper's Figure 3 built from per-run results.

    Top: final one-step-ahead EMD (W1, mean over the time steps) per potential and solver, divided by
    the largest finite value of the figure; the mean over seeds is the marker and the min-max over
    seeds the error bar. Diverged runs sit on a separate "NaN" row. Bottom left: convergence ratio
    (see ``convergence_ratio``) against epochs, mean and +-1 std over potentials and seeds, starting at
    (0, 1); a closed-form run (one evaluation) is held at its value to the last epoch. An EMD of exactly
    0 (e.g. the flat potential learnt in closed form) is drawn hollow, a decade below the smallest
    positive value. Bottom right:
    per-run mean time per epoch (compilation excluded), box plot over runs, log axis.

    Args:
        table: tidy results with columns ``potential``, ``solver``, ``seed``, ``metric``, ``value`` (plus
            any other run columns); uses metrics ``w1_mean``, ``diverged`` and ``seconds_per_epoch``.
        histories: tidy training histories with columns ``potential``, ``solver``, ``seed``, ``epoch``, ``w1``.
        potential_order: x-axis order of the potentials (default: order of appearance).
        solver_order: legend order of the solvers (default: the paper's, then order of appearance).
        caption: one line under the figure stating the settings.
        title: figure title, prefixed to the title of the top panel.

    Returns:
        The figure; its axes are the NaN row, the EMD panel, the convergence panel and the timing panel.
    """
    run_keys = ["potential", "solver", "seed"]
    solvers = _ordered(table["solver"], solver_order or list(SOLVER_LABELS))
    potentials = _ordered(table["potential"], potential_order)
    styles = _solver_styles(solvers)

    runs = _metric(table, "w1_mean", run_keys).merge(_metric(table, "diverged", run_keys), on=run_keys, how="outer")
    runs["diverged"] = runs["diverged"].fillna(0.0).astype(float) > 0
    runs.loc[~np.isfinite(runs["w1_mean"].astype(float)), "diverged"] = True
    finite = runs[~runs["diverged"]]
    summary = finite.groupby(["potential", "solver"])["w1_mean"].agg(["mean", "min", "max"]).reset_index()
    scale = float(summary["mean"].max()) if len(summary) else 1.0
    scale = scale if np.isfinite(scale) and scale > 0 else 1.0

    fig = plt.figure(figsize=(12, 9.0), layout="constrained")
    grid = fig.add_gridspec(3, 2, height_ratios=[0.35, 2.2, 2.4], width_ratios=[1.35, 1.0])
    ax_nan = fig.add_subplot(grid[0, :])
    ax_emd = fig.add_subplot(grid[1, :], sharex=ax_nan)
    ax_conv = fig.add_subplot(grid[2, 0])
    ax_time = fig.add_subplot(grid[2, 1])

    positive = summary["mean"][summary["mean"] > 0] / scale
    zero_level = float(positive.min()) / 10 if len(positive) else 1e-6

    x_of = {p: i for i, p in enumerate(potentials)}
    width = 0.7
    offsets = {s: (i - (len(solvers) - 1) / 2) * width / max(len(solvers), 1) for i, s in enumerate(solvers)}
    for solver in solvers:
        style = styles[solver]
        rows = summary[summary["solver"] == solver]
        x = np.array([x_of[p] for p in rows["potential"]]) + offsets[solver]
        mean = rows["mean"].to_numpy() / scale
        spread = np.vstack([mean - rows["min"].to_numpy() / scale, rows["max"].to_numpy() / scale - mean])
        zero = mean <= 0
        ax_emd.errorbar(x[~zero], mean[~zero], yerr=spread[:, ~zero] if np.any(spread > 0) else None,
                        fmt=style["marker"], color=style["color"], ms=7, mec="black", mew=0.5, capsize=2, lw=1,
                        label=solver_label(solver))
        ax_emd.scatter(x[zero], np.full(zero.sum(), zero_level), marker=style["marker"], s=45,
                       facecolors="none", edgecolors=style["color"], linewidths=1.2)
        failed = runs[runs["diverged"] & (runs["solver"] == solver)].drop_duplicates(["potential"])
        ax_nan.scatter(np.array([x_of[p] for p in failed["potential"]]) + offsets[solver],
                       np.zeros(len(failed)), marker=style["marker"], color=style["color"], s=45,
                       edgecolors="black", linewidths=0.5)
    ax_emd.set_yscale("log")
    ax_emd.set_ylabel("final one-step EMD / largest")
    if np.any(summary["mean"] <= 0):
        ax_emd.text(0.005, 0.01, f"hollow: EMD exactly 0, drawn at {zero_level:.0e}", transform=ax_emd.transAxes,
                    fontsize="small", color="0.3")
    ax_emd.set_xticks(range(len(potentials)))
    ax_emd.set_xticklabels([p.replace("_", " ") for p in potentials], rotation=30, ha="right")
    ax_emd.set_xlim(-0.6, len(potentials) - 0.4)
    ax_emd.grid(axis="y", which="major", alpha=0.3)
    for boundary in np.arange(len(potentials) - 1) + 0.5:
        ax_emd.axvline(boundary, color="0.9", lw=0.8, zorder=0)
    handles, labels = ax_emd.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=max(len(solvers), 1), frameon=False)
    ax_nan.set_yticks([0])
    ax_nan.set_yticklabels(["NaN"])
    ax_nan.set_ylim(-1, 1)
    ax_nan.tick_params(axis="x", labelbottom=False)
    emd_title = "final one-step-ahead EMD per potential, divided by the largest (diverged runs on the NaN row)"
    ax_nan.set_title(f"{title}: {emd_title}" if title else emd_title.capitalize(), fontsize="medium")

    conv = convergence_ratio(histories, run_keys)
    last_epoch = int(histories["epoch"].max()) if len(histories) else 1
    for solver in solvers:
        runs_ratio = conv[conv["solver"] == solver]
        if runs_ratio.empty:
            continue
        wide = runs_ratio.pivot_table(index="epoch", columns=["potential", "seed"], values="ratio")
        if len(wide.index) == 1:
            wide = pd.concat([wide, wide.set_axis([max(last_epoch, int(wide.index[0]))])])
            wide = wide[~wide.index.duplicated()]
        wide = wide.sort_index().ffill()
        epochs = np.concatenate([[0], wide.index.to_numpy(dtype=float)])
        mean = np.concatenate([[1.0], np.nanmean(wide.to_numpy(), axis=1)])
        std = np.concatenate([[0.0], np.nanstd(wide.to_numpy(), axis=1)])
        style = styles[solver]
        ax_conv.plot(epochs, mean, color=style["color"], marker=style["marker"], ms=4, label=solver_label(solver))
        ax_conv.fill_between(epochs, mean - std, mean + std, color=style["color"], alpha=0.15, lw=0)
    ax_conv.set_xlabel("epoch")
    ax_conv.set_ylabel("convergence ratio (e - min) / (max - min)")
    ax_conv.set_title("Convergence: mean $\\pm$ 1 std over potentials", fontsize="medium")
    ax_conv.set_xlim(left=0)
    ax_conv.grid(alpha=0.3)

    times = _metric(table, "seconds_per_epoch", run_keys)
    data = [times.loc[times["solver"] == s, "seconds_per_epoch"].astype(float).dropna().to_numpy() for s in solvers]
    data = [d[d > 0] for d in data]
    positions = np.arange(len(solvers))
    if any(len(d) for d in data):
        boxes = ax_time.boxplot([d if len(d) else [np.nan] for d in data], positions=positions, widths=0.55,
                                patch_artist=True, showfliers=False, medianprops={"color": "black"})
        for patch, solver in zip(boxes["boxes"], solvers):
            patch.set_facecolor(styles[solver]["color"])
            patch.set_alpha(0.45)
        rng = np.random.default_rng(0)
        for i, (d, solver) in enumerate(zip(data, solvers)):
            ax_time.scatter(i + rng.uniform(-0.12, 0.12, len(d)), d, s=10, color=styles[solver]["color"],
                            edgecolors="black", linewidths=0.3, zorder=3)
    ax_time.set_yscale("log")
    ax_time.set_xticks(positions)
    ax_time.set_xticklabels([solver_label(s) for s in solvers])
    ax_time.set_ylabel("seconds per epoch (log; compile excluded)")
    ax_time.set_title("Time per epoch (per-run means)", fontsize="medium")
    ax_time.grid(axis="y", which="major", alpha=0.3)

    if caption:
        fig.text(0.5, -0.01, caption, ha="center", va="top", fontsize="small", wrap=True)
    return fig
