"""The paper's figures from tidy tables of many runs: Figure 3, scaling laws, general energies, ablations, RNA.

Every function is pure: it takes pandas DataFrames (or arrays) and returns a new matplotlib ``Figure``
(Agg backend) that the caller saves and closes. Nothing is read from disk here but the published results the
tables and captions quote (``published.csv`` beside this module, :func:`published`). The captions of the
figures are built here too, from the config slices the figures were made with. Pictures of a single run
are in :mod:`jkonetstar.plots`.
"""

from __future__ import annotations

import csv
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from jkonetstar import methods  # noqa: E402
from jkonetstar.plots import (  # noqa: E402
    DATA_COLOR,
    PREDICTION_COLOR,
    SOLVER_LABELS,
    shared_levels,
    solver_label,
    subsample,
    xy,
)

__all__ = [
    "convergence_ratio",
    "figure3",
    "RUN_KEYS",
    "failed_runs",
    "seed_summary",
    "exp2_heatmaps",
    "exp3_figure",
    "ot_order",
    "ot_display",
    "ablation_figure",
    "pairing_figure",
    "configured_step_rows",
    "history_with_steps",
    "prediction_table",
    "prediction_figure",
    "rna_figure",
    "protocols_figure",
    "EXPERIMENTS",
    "exp1_solver_order",
    "experiment_caption",
    "prediction_caption",
    "RNA_ALGORITHMS",
    "rna_caption",
    "published",
]


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h")


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
    (0, 1); a closed-form run (one evaluation) is held at its value to the last epoch; the epoch axis is
    symmetric-log when the solvers' epoch budgets differ more than 4x. An EMD of exactly
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
    final_epochs = conv.groupby("solver")["epoch"].max() if len(conv) else pd.Series(dtype=float)
    mixed_budgets = len(final_epochs) > 1 and final_epochs.max() > 4 * max(final_epochs.min(), 1)
    if mixed_budgets:
        ax_conv.set_xscale("symlog", linthresh=1)
    ax_conv.set_xlabel("epoch (symmetric log: the solvers' epoch budgets differ)" if mixed_budgets else "epoch")
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
    ax_time.set_xticklabels([solver_label(s) for s in solvers], rotation=20 if len(solvers) > 4 else 0,
                            ha="right" if len(solvers) > 4 else "center")
    ax_time.set_ylabel("seconds per epoch (log; compile excluded)")
    ax_time.set_title("Time per epoch (per-run means)", fontsize="medium")
    ax_time.grid(axis="y", which="major", alpha=0.3)

    if caption:
        fig.text(0.5, -0.01, caption, ha="center", va="top", fontsize="small", wrap=True)
    return fig


RUN_KEYS = ("potential", "interaction", "beta", "dim", "n_particles", "pairing", "ot", "solver", "seed")
"""Columns identifying one run in the tidy tables (:func:`jkonetstar.jobs.table`)."""


def failed_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Returns one row per run (columns of ``RUN_KEYS`` present) with ``w1_mean`` and ``failed``.

    A run failed when training diverged or its final one-step EMD is not finite; its ``w1_mean`` is then NaN.
    """
    keys = [k for k in RUN_KEYS if k in table.columns]
    wide = table[table["metric"].isin(["w1_mean", "diverged"])].pivot_table(
        index=keys, columns="metric", values="value", aggfunc="first", dropna=False).reset_index()
    wide = wide.dropna(subset=[c for c in ("w1_mean", "diverged") if c in wide.columns], how="all")
    w1 = wide["w1_mean"].astype(float) if "w1_mean" in wide else pd.Series(np.nan, index=wide.index)
    diverged = wide["diverged"].fillna(0.0).astype(float) > 0 if "diverged" in wide else False
    wide["failed"] = diverged | ~np.isfinite(w1)
    wide["w1_mean"] = w1.where(~wide["failed"])
    return wide[[*keys, "w1_mean", "failed"]]


def configured_step_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Returns the rows of ``table`` computed with each run's configured prediction step.

    The tidy tables hold the W1 of the JKOnet* MLP solvers with every prediction step (column
    ``predict_step``); the run's own step is the one of its ``diverged`` row (every run has one). Tables without
    a ``predict_step`` column are returned unchanged.
    """
    if "predict_step" not in table.columns:
        return table
    keys = [k for k in RUN_KEYS if k in table.columns]
    chosen = table.loc[table["metric"] == "diverged", [*keys, "predict_step"]].drop_duplicates(keys)
    merged = table.merge(chosen.rename(columns={"predict_step": "_chosen"}), on=keys, how="left")
    keep = merged["_chosen"].isna() | (merged["predict_step"] == merged["_chosen"])
    return merged.loc[keep, table.columns].reset_index(drop=True)


def history_with_steps(history: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Returns ``history`` whose ``w1`` column is the W1 of each run's configured prediction step.

    The training histories of the JKOnet* MLP solvers hold the W1 of the default (implicit) step in ``w1`` and
    of the others in ``w1_<step>`` (:func:`jkonetstar.pipeline.train`); runs configured with another step get
    that column as ``w1``.
    """
    if "predict_step" not in table.columns:
        return history
    keys = [k for k in RUN_KEYS if k in table.columns and k in history.columns]
    chosen = table.loc[table["metric"] == "diverged", [*keys, "predict_step"]].drop_duplicates(keys)
    merged = history.merge(chosen, on=keys, how="left")
    for column in [c for c in history.columns if c.startswith("w1_")]:
        use = merged["predict_step"] == column.removeprefix("w1_")
        merged.loc[use, "w1"] = merged.loc[use, column]
    return merged[history.columns]


def seed_summary(table: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Returns mean, std (ddof 0), min, max and count over seeds of every metric of every setting.

    Args:
        table: tidy results with the run columns, ``metric`` and ``value``.
        by: the columns of one setting (default: every run column except ``seed``).

    Returns:
        Columns ``by``, ``metric``, ``mean``, ``std``, ``min``, ``max``, ``n_seeds`` (finite values only;
        ``n_seeds`` counts them, so a setting whose seeds all failed has count 0 and NaN statistics).
    """
    by = list(by) if by is not None else [k for k in (*RUN_KEYS, "predict_step") if k in table.columns and k != "seed"]
    values = table.assign(value=table["value"].astype(float).where(np.isfinite(table["value"].astype(float))))
    grouped = values.groupby([*by, "metric"], sort=False, dropna=False)["value"]
    summary = grouped.agg(mean="mean", std=lambda v: float(np.std(v.dropna())) if v.notna().any() else np.nan,
                          min="min", max="max", n_seeds="count")
    return summary.reset_index()


def _spread_note(n_seeds: int) -> str:
    return f"mean over {n_seeds} seeds" if n_seeds > 1 else "one seed"


def exp2_heatmaps(
    table: pd.DataFrame,
    *,
    potential_order: Sequence[str] | None = None,
    train_share: float = 0.5,
    n_columns: int = 5,
    caption: str | None = None,
) -> Figure:
    """Returns the scaling-law heat maps of Exp. 4.2: one panel per potential, rows N_train, columns d.

    Each cell is the final one-step EMD (raw, mean over the T steps) of one (potential, d, N) setting, mean
    over seeds (with "+-std" written under it when there are several seeds). Each panel has its own colour
    bar, as in the paper. Failed runs are left out of the mean; a setting with no finished run is grey, "x".

    Args:
        table: tidy results (``potential``, ``dim``, ``n_particles``, ``seed``, ``metric``, ``value``).
        potential_order: panel order (default: order of appearance).
        train_share: share of the particles used for training; rows are labelled ``N_train = share * n``.
        n_columns: panels per row.
        caption: settings, under the figure.
    """
    runs = failed_runs(table)
    potentials = _ordered(runs["potential"], potential_order)
    dims = sorted(runs["dim"].unique())
    sizes = sorted(runs["n_particles"].unique(), reverse=True)
    n_seeds = int(runs["seed"].nunique())
    n_columns = max(1, min(n_columns, len(potentials)))
    n_rows = -(-len(potentials) // n_columns)
    fig, axes = plt.subplots(n_rows, n_columns, figsize=(3.3 * n_columns, 2.9 * n_rows + 0.6),
                             layout="constrained", squeeze=False)
    for ax in axes.ravel()[len(potentials):]:
        ax.set_visible(False)
    for ax, potential in zip(axes.ravel(), potentials):
        rows = runs[runs["potential"] == potential]
        stats = rows.groupby(["n_particles", "dim"])["w1_mean"].agg(["mean", lambda v: np.std(v.dropna())])
        stats.columns = ["mean", "std"]
        mean = np.full((len(sizes), len(dims)), np.nan)
        std = np.full_like(mean, np.nan)
        for (n, d), row in stats.iterrows():
            mean[sizes.index(n), dims.index(d)], std[sizes.index(n), dims.index(d)] = row["mean"], row["std"]
        finite = mean[np.isfinite(mean)]
        cmap = plt.get_cmap("viridis").with_extremes(bad="0.8")
        image = ax.imshow(np.ma.masked_invalid(mean), cmap=cmap, aspect="auto",
                          vmin=finite.min() if finite.size else 0, vmax=finite.max() if finite.size else 1)
        fig.colorbar(image, ax=ax, fraction=0.08, pad=0.02, format="%.2g")
        low, high = (finite.min(), finite.max()) if finite.size else (0, 1)
        for i in range(len(sizes)):
            for j in range(len(dims)):
                if not np.isfinite(mean[i, j]):
                    ax.text(j, i, "x", ha="center", va="center", fontsize="small")
                    continue
                text = f"{mean[i, j]:.2g}" + (f"\n±{std[i, j]:.1g}" if n_seeds > 1 else "")
                light = high > low and (mean[i, j] - low) / (high - low) < 0.55
                ax.text(j, i, text, ha="center", va="center", fontsize="x-small",
                        color="white" if light else "black")
        ax.set_xticks(range(len(dims)), [str(d) for d in dims])
        ax.set_yticks(range(len(sizes)), [f"{round(train_share * n)}" for n in sizes])
        ax.set_title(potential.replace("_", " "), fontsize="medium")
    for ax in axes[-1]:
        ax.set_xlabel("dimension d")
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$N_{train}$")
    fig.suptitle(f"Scaling laws (paper Figure 4 / 7): final one-step EMD of JKOnet$^*_V$ per d and N "
                 f"({_spread_note(n_seeds)}; each panel has its own colour bar; grey x: no finished run)",
                 fontsize="medium")
    if caption:
        fig.text(0.5, -0.01, caption, ha="center", va="top", fontsize="small", wrap=True)
    return fig


def _box(ax, data, labels, colors):
    data = [np.asarray(d, float)[np.isfinite(np.asarray(d, float))] for d in data]
    positions = np.arange(len(data))
    boxes = ax.boxplot([d if len(d) else [np.nan] for d in data], positions=positions, widths=0.55,
                       patch_artist=True, showfliers=False, whis=1.5, medianprops={"color": "black"})
    for patch, color in zip(boxes["boxes"], colors):
        patch.set_facecolor(color)
        patch.set_alpha(0.45)
    rng = np.random.default_rng(0)
    for i, (d, color) in enumerate(zip(data, colors)):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(d)), d, s=8, color=color, edgecolors="black",
                   linewidths=0.3, zorder=3, alpha=0.7)
    ax.set_xticks(positions, labels)


def exp3_figure(
    table: pd.DataFrame,
    *,
    solver_order: Sequence[str] | None = None,
    caption: str | None = None,
) -> Figure:
    """Returns Exp. 4.3: the EMD box plot per solver and the recovery of beta, grad V and grad W.

    Panels: (a) final one-step EMD (raw, log axis) per solver over all datasets (mean over seeds per dataset),
    boxes with Tukey whiskers (1.5 IQR) as in the paper, the share of failed runs (diverged or non-finite
    EMD) written on it; (b) learnt beta rescaled by tau/dt against the true beta; (c) and (d) histograms
    of the correlation between learnt and true gradients of the potential and of the interaction on the grid.

    Args:
        table: tidy results with the metrics of :func:`jkonetstar.jobs.table`, recovery included
            (``beta_recovered``, ``potential_grad_corr``, ``interaction_grad_corr``: :func:`jkonetstar.pipeline.recovery`).
        solver_order: order of the solvers (default: the paper's).
        caption: settings, under the figure.
    """
    runs = failed_runs(table)
    solvers = _ordered(runs["solver"], solver_order or list(SOLVER_LABELS))
    styles = _solver_styles(solvers)
    colors = [styles[s]["color"] for s in solvers]
    n_seeds = int(runs["seed"].nunique())
    dataset = ["potential", "interaction", "beta", "dim", "n_particles", "pairing", "ot"]
    per_dataset = runs.groupby([*dataset, "solver"])["w1_mean"].mean().reset_index()

    fig, axes = plt.subplot_mosaic([["emd", "beta"], ["grad_v", "grad_w"]], figsize=(12, 8.5),
                                   layout="constrained")
    ax = axes["emd"]
    labels = []
    for solver in solvers:
        mine = runs[runs["solver"] == solver]
        share = 100.0 * mine["failed"].mean() if len(mine) else float("nan")
        labels.append(f"{solver_label(solver)}\nfailed runs: {int(mine['failed'].sum())}/{len(mine)} ({share:.1f}%)")
    _box(ax, [per_dataset.loc[per_dataset["solver"] == s, "w1_mean"] for s in solvers], labels, colors)
    ax.set_yscale("log")
    ax.set_ylabel("final one-step EMD (raw, log)")
    ax.set_title(f"(a) EMD over all (V, W, beta) datasets ({_spread_note(n_seeds)} per dataset)", fontsize="medium")
    ax.grid(axis="y", which="major", alpha=0.3)

    def metric(name):
        rows = table[table["metric"] == name]
        return rows.assign(value=rows["value"].astype(float))

    ax = axes["beta"]
    beta = metric("beta_recovered")
    betas = sorted(beta["beta"].unique()) if len(beta) else []
    rng = np.random.default_rng(0)
    span = (max(betas) - min(betas)) if len(betas) > 1 else 0.1
    for i, solver in enumerate(solvers):
        rows = beta[beta["solver"] == solver]
        if rows.empty:
            continue
        offset = (i - (len(solvers) - 1) / 2) * 0.12 * span
        x = rows["beta"].to_numpy(float) + offset + rng.uniform(-0.03, 0.03, len(rows)) * span
        ax.scatter(x, rows["value"], s=12, color=styles[solver]["color"], marker=styles[solver]["marker"],
                   edgecolors="black", linewidths=0.3, alpha=0.7, label=solver_label(solver))
        medians = rows.groupby("beta")["value"].median()
        ax.scatter(medians.index.to_numpy(float) + offset, medians.to_numpy(), marker="_", s=400,
                   color=styles[solver]["color"], linewidths=2.5)
    if betas:
        ax.plot([min(betas) - 0.1 * span, max(betas) + 0.1 * span], [min(betas) - 0.1 * span,
                max(betas) + 0.1 * span], color="0.3", ls="--", lw=1, label="learnt = true")
        ax.set_xticks(betas)
        ax.legend(fontsize="small", loc="upper left")
        negative = int(np.sum(beta["value"].to_numpy(float) < 0))
        ax.text(0.98, 0.02, f"{negative} of {len(beta)} runs learn beta < 0: beta is not identifiable when the\n"
                "potential can absorb grad log rho (paper App. G.1), so V may take over the diffusion's\n"
                "drift; the prediction uses |beta| (table: beta_abs_recovered)", ha="right", va="bottom",
                fontsize="x-small", transform=ax.transAxes, bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    else:
        ax.text(0.5, 0.5, "no solver here learns beta", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(r"true $\beta$")
    ax.set_ylabel(r"learnt $\hat\beta\,\tau/dt$")
    ax.set_title(r"(b) diffusion: learnt vs true $\beta$ (bars: medians)", fontsize="medium")
    ax.grid(alpha=0.3)

    bins = np.linspace(-1, 1, 21)
    for key, term, letter in (("grad_v", "potential", "c"), ("grad_w", "interaction", "d")):
        ax = axes[key]
        corr = metric(f"{term}_grad_corr")
        shown = False
        for solver in solvers:
            values = corr.loc[corr["solver"] == solver, "value"].to_numpy(float)
            finite = values[np.isfinite(values)]
            if not len(values):
                continue
            shown = True
            ax.hist(finite, bins=bins, color=styles[solver]["color"], alpha=0.5, edgecolor="black", linewidth=0.4,
                    label=f"{solver_label(solver)}: median {np.median(finite):.2f}" if len(finite)
                    else f"{solver_label(solver)}: none defined")
        if shown:
            ax.legend(fontsize="small", loc="upper left")
        ax.set_xlabel(f"correlation of learnt and true grad {'V' if term == 'potential' else 'W'} on the grid")
        ax.set_ylabel("runs")
        ax.set_title(f"({letter}) {term} gradient recovery (undefined for constant true fields: "
                     f"{'flat V' if term == 'potential' else 'flat W'})", fontsize="medium")
        ax.grid(alpha=0.3)
    fig.suptitle("General energy functionals (paper Sec. 4.3): potential + interaction + diffusion", fontsize="medium")
    if caption:
        fig.text(0.5, -0.01, caption, ha="center", va="top", fontsize="small", wrap=True)
    return fig


def ot_order(labels: Sequence[str]) -> list[str]:
    """Coupling labels in display order: "exact" first, then Sinkhorn by increasing epsilon."""
    def key(label):
        return (0, 0.0) if label == "exact" else (1, float(label.partition("-")[2]))
    return sorted(dict.fromkeys(labels), key=key)


def ot_display(label: str) -> str:
    """Axis label of a coupling: "exact (LP)" or "Sinkhorn eps=<epsilon>"."""
    return "exact (LP)" if label == "exact" else rf"Sinkhorn $\varepsilon$={label.partition('-')[2]}"


def ablation_figure(table: pd.DataFrame, *, caption: str | None = None) -> Figure:
    """Returns the coupling ablation: normalised EMD, coupling time and kept pairs per coupling method.

    The EMD is min-max normalised globally over all runs of the table (as the paper's script):
    ``(e - min) / (max - min)``; markers are the mean and bars the std over potentials (and seeds), with each
    potential as a faint line. Coupling time is the wall-clock of the OT plans of a dataset without the jit
    compilation of Sinkhorn (``coupling_seconds_warm``); kept pairs count the coupling rows after sparsification.
    """
    runs = failed_runs(table)
    labels = ot_order(runs["ot"])
    finite = runs["w1_mean"].dropna()
    low, high = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    runs["normalised"] = (runs["w1_mean"] - low) / (high - low) if high > low else 0.0
    x = np.arange(len(labels))

    def per_label(frame, column):
        stats = frame.groupby("ot")[column].agg(["mean", "std", "count"]).reindex(labels)
        return stats["mean"].to_numpy(float), stats["std"].fillna(0).to_numpy(float)

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6), layout="constrained")
    ax = axes[0]
    for potential, rows in runs.groupby("potential"):
        means = rows.groupby("ot")["normalised"].mean().reindex(labels)
        ax.plot(x, means.to_numpy(float), color="0.6", lw=0.7, alpha=0.6)
    mean, std = per_label(runs, "normalised")
    ax.errorbar(x, mean, yerr=std, fmt="o", color="C0", ms=8, capsize=4, lw=1.5, zorder=3,
                label="mean $\\pm$ std over potentials")
    failed = runs.groupby("ot")["failed"].sum().reindex(labels).fillna(0).astype(int)
    for i, count in enumerate(failed):
        if count:
            ax.text(i, 1.02, f"{count} failed", ha="center", fontsize="small", color="C3",
                    transform=ax.get_xaxis_transform())
    ax.set_ylabel("final one-step EMD, min-max normalised")
    ax.set_title("(a) accuracy (grey: one potential each)", fontsize="medium")
    ax.legend(fontsize="small")

    def metric(name):
        rows = table[table["metric"] == name]
        return rows.assign(value=rows["value"].astype(float))

    for ax, name, ylabel, title in (
        (axes[1], "coupling_seconds_warm", "seconds per dataset (log)", "(b) time of the couplings, compile excluded"),
        (axes[2], "n_couplings", "coupled pairs kept (log)", "(c) pairs kept after sparsification"),
    ):
        rows = metric(name)
        mean, std = per_label(rows.rename(columns={"value": name}), name)
        ax.bar(x, mean, yerr=std, color="C1", alpha=0.6, edgecolor="black", capsize=4)
        for i, value in enumerate(mean):
            if np.isfinite(value):
                ax.text(i, value, f"{value:.3g}", ha="center", va="bottom", fontsize="small")
        ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.set_title(title + " (mean $\\pm$ std)", fontsize="medium")
    for ax in axes:
        ax.set_xticks(x, [ot_display(label) for label in labels], rotation=15)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(r"Coupling ablation: JKOnet$^*_V$ trained on exact vs entropic (Sinkhorn) couplings",
                 fontsize="medium")
    if caption:
        fig.text(0.5, -0.01, caption, ha="center", va="top", fontsize="small", wrap=True)
    return fig


_PAIRING_STYLES = {"paired": {"color": "C0", "marker": "o"}, "shuffled": {"color": "C1", "marker": "s"},
                   "independent": {"color": "C3", "marker": "^"}}


def _solver_panels(table: pd.DataFrame, solvers: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) per panel: one per solver, one per prediction step where a solver was scored with several."""
    panels = []
    for solver in solvers:
        rows = table[table["solver"] == solver]
        steps = (rows.loc[rows["metric"] == "w1_mean", "predict_step"].dropna().unique()
                 if "predict_step" in rows.columns else [])
        if len(steps) <= 1:
            panels.append((solver_label(solver), rows))
            continue
        for step in sorted(steps):
            keep = (rows["metric"] != "w1_mean") | (rows["predict_step"] == step)
            panels.append((f"{solver_label(solver)}, {step} prediction", rows[keep]))
    return panels


def pairing_figure(
    table: pd.DataFrame,
    *,
    potential_order: Sequence[str] | None = None,
    solver_order: Sequence[str] | None = None,
    caption: str | None = None,
) -> Figure:
    """Returns Exp. 4.1 with paired, shuffled and independent snapshots side by side.

    One panel per solver (and prediction step, where a solver was scored with several: column
    ``predict_step``) and particle count N; in each, per potential, one marker per pairing: final one-step
    EMD (raw; log axis when the values span more than a decade), mean over seeds, bars min-max over seeds;
    failed runs are marked on the top edge. Exact couplings are invariant to the order of the particles, so
    shuffling only matters when a snapshot is coupled in several blocks (training particles per snapshot >
    the couplings' block size); independent snapshots share no particle at all, so their EMD has a floor: the W1
    between two independent samples of one snapshot (metric ``two_sample_w1``, drawn as a grey bar), which even
    the true dynamics would score.
    """
    solvers = _ordered(table["solver"], solver_order or list(SOLVER_LABELS))
    potentials = _ordered(table["potential"], potential_order)
    pairings = _ordered(table["pairing"], list(_PAIRING_STYLES))
    sizes = sorted(table["n_particles"].unique())
    n_seeds = int(table["seed"].nunique())
    panels = _solver_panels(table, solvers)
    width = max(6, 0.6 * len(potentials) + 2)
    fig, axes = plt.subplots(len(panels), len(sizes), figsize=(width * len(sizes), 3.6 * len(panels)),
                             layout="constrained", sharey="row", squeeze=False)
    for (title, rows), panel_axes in zip(panels, axes):
        runs = failed_runs(rows)
        for ax, n in zip(panel_axes, sizes):
            for i, pairing in enumerate(pairings):
                cell = runs[(runs["n_particles"] == n) & (runs["pairing"] == pairing)]
                stats = cell.groupby("potential")["w1_mean"].agg(["mean", "min", "max"]).reindex(potentials)
                x = np.arange(len(potentials)) + (i - (len(pairings) - 1) / 2) * 0.22
                mean = stats["mean"].to_numpy(float)
                spread = np.vstack([mean - stats["min"].to_numpy(float), stats["max"].to_numpy(float) - mean])
                style = _PAIRING_STYLES.get(pairing, {"color": f"C{i + 4}", "marker": "D"})
                ax.errorbar(x, mean, yerr=np.nan_to_num(spread) if n_seeds > 1 else None, fmt=style["marker"],
                            color=style["color"], ms=6, mec="black", mew=0.5, capsize=2, lw=1, label=pairing)
                floor = rows[(rows["metric"] == "two_sample_w1") & (rows["n_particles"] == n)
                             & (rows["pairing"] == pairing)].groupby("potential")["value"].mean().reindex(potentials)
                if floor.notna().any():  # independent snapshots: even the true dynamics scores about this
                    ax.hlines(floor.to_numpy(float), x - 0.13, x + 0.13, color="0.45", lw=2.5, zorder=0,
                              label="two-sample floor" if i == len(pairings) - 1 else None)
                failed = cell[cell["failed"]].drop_duplicates("potential")
                ax.scatter([x[potentials.index(p)] for p in failed["potential"]], np.ones(len(failed)),
                           transform=ax.get_xaxis_transform(), marker="v", color=style["color"], clip_on=False)
            ax.set_xticks(range(len(potentials)), [p.replace("_", " ") for p in potentials], rotation=30,
                          ha="right")
            ax.set_title(f"{title}, N = {n}", fontsize="medium")
            ax.grid(axis="y", alpha=0.3)
        finite = runs["w1_mean"].dropna()
        if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 10:
            panel_axes[0].set_yscale("log")
        panel_axes[0].set_ylabel("final one-step EMD")
    axes[0, 0].legend(fontsize="small", title="snapshots")
    spread_note = "mean, bars min-max over seeds" if n_seeds > 1 else "one seed"
    fig.suptitle("Paired (the same particles, order kept, as in the paper's code), shuffled (order lost) and "
                 f"independent snapshots (no particle in two snapshots) ({spread_note}; raw EMD, log axis when it "
                 "spans > 10x; triangles on top: failed runs)", fontsize="medium")
    if caption:
        fig.text(0.5, -0.01, caption, ha="center", va="top", fontsize="small", wrap=True)
    return fig


STEP_STYLES = {"explicit": {"color": "C3", "marker": "s"}, "implicit": {"color": "C0", "marker": "o"}}


def prediction_table(table: pd.DataFrame) -> pd.DataFrame:
    """Returns the tidy prediction-step comparison of Exp. 4.1: potential, solver, predict_step, seed, metric,
    value, for the runs scored with more than one step (the JKOnet* MLP solvers), metrics ``w1_mean`` and
    the per-transition ``w1_step_<t>``."""
    w1 = table[(table["metric"] == "w1_mean") | table["metric"].str.startswith("w1_step_")]
    keys = [k for k in RUN_KEYS if k in table.columns]
    n_steps = w1[w1["metric"] == "w1_mean"].groupby(keys)["predict_step"].nunique()
    several = n_steps[n_steps > 1].reset_index()[keys]
    rows = w1.merge(several, on=keys)
    return rows[["potential", "solver", "predict_step", "seed", "metric", "value"]].reset_index(drop=True)


def prediction_figure(
    table: pd.DataFrame,
    *,
    potential_order: Sequence[str] | None = None,
    solver_order: Sequence[str] | None = None,
    caption: str | None = None,
) -> Figure:
    """Returns the explicit vs implicit prediction step of the same trained models: one panel per solver.

    Each panel shows per potential the final one-step EMD (W1, mean over the time steps; marker: mean over
    seeds, bar: min-max) of both steps, joined by a grey line, on a log axis; its title gives the number of
    potentials where the implicit step is lower and the geometric mean of the ratios implicit / explicit.

    Args:
        table: :func:`prediction_table` output.
    """
    mean = table[table["metric"] == "w1_mean"]
    solvers = _ordered(mean["solver"], solver_order or list(SOLVER_LABELS))
    potentials = _ordered(mean["potential"], potential_order)
    steps = _ordered(mean["predict_step"], list(STEP_STYLES))
    fig, axes = plt.subplots(len(solvers), 1, figsize=(max(7.0, 0.55 * len(potentials) + 2.5), 3.3 * len(solvers)),
                             layout="constrained", squeeze=False)
    x = np.arange(len(potentials))
    for ax, solver in zip(axes[:, 0], solvers):
        rows = mean[mean["solver"] == solver]
        stats = rows.groupby(["potential", "predict_step"])["value"].agg(["mean", "min", "max"])
        for i, potential in enumerate(potentials):
            values = [stats["mean"].get((potential, step), np.nan) for step in steps]
            ax.plot([i - 0.12, i + 0.12][: len(values)], values, color="0.7", lw=0.8, zorder=1)
        for j, step in enumerate(steps):
            s = stats.xs(step, level="predict_step").reindex(potentials)
            offset = (j - (len(steps) - 1) / 2) * 0.24
            ax.errorbar(x + offset, s["mean"], yerr=[s["mean"] - s["min"], s["max"] - s["mean"]], ls="none",
                        ms=6, mec="black", mew=0.5, capsize=2, lw=1, label=f"{step} step", zorder=2,
                        **STEP_STYLES.get(step, {"marker": "D", "color": f"C{j + 2}"}))
        wide = stats["mean"].unstack("predict_step").reindex(potentials)
        note = ""
        if {"explicit", "implicit"} <= set(wide.columns):
            ratio = (wide["implicit"] / wide["explicit"]).to_numpy(dtype=float)
            finite = np.isfinite(ratio) & (ratio > 0)
            if finite.any():
                note = (f": implicit lower on {int(np.sum(ratio[finite] < 1))} of {int(finite.sum())} potentials, "
                        f"geometric mean of implicit / explicit {np.exp(np.mean(np.log(ratio[finite]))):.3g}")
        ax.set_title(f"{solver_label(solver)}{note}", fontsize="medium")
        ax.set_yscale("log")
        ax.set_ylabel("one-step EMD (W1, log)")
        ax.set_xticks(x, potentials, rotation=35, ha="right")
        ax.grid(axis="y", which="major", alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    fig.suptitle("The same trained models predicted with the explicit and the implicit step", fontsize="medium")
    if caption:
        fig.text(0.5, -0.01, caption, ha="center", va="top", fontsize="small", wrap=True)
    return fig


_PROVENANCE_STYLES = {
    "rerun": dict(color="C0", marker="o", markerfacecolor="C0", label="rerun here (mean +- std over seeds)"),
    "published": dict(color="0.45", marker="s", markerfacecolor="white", label="published (mean +- std)"),
}


def protocols_figure(table: pd.DataFrame) -> Figure:
    """Returns one panel per protocol (``table["protocol"]``: one-step, leave-one-out) of the EB benchmark: every
    method's W1 as a point with its std, our reruns (filled) above the published rows (open), best at the top
    of each group, and the no-motion reference of the reruns (``no_motion_mean``) as a dashed line.
    ``table``: the rows of ``rna_protocols.csv``."""
    protocols = [p for p in ("one-step", "leave-one-out") if p in set(table["protocol"])]
    heights = [max(2, len(table[table["protocol"] == p])) for p in protocols]
    fig, axes = plt.subplots(len(protocols), 1, figsize=(7.5, 1.2 + 0.32 * sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights}, sharex=True, constrained_layout=True)
    for ax, protocol in zip(axes[:, 0], protocols):
        rows = table[table["protocol"] == protocol]
        rows = pd.concat([rows[rows["provenance"] == "rerun"].sort_values("mean"),
                          rows[rows["provenance"] == "published"].sort_values("mean")])
        rows = rows.iloc[::-1]  # y = 0 is drawn lowest: the first (best rerun) row at the top
        reference = rows["no_motion_mean"].dropna() if "no_motion_mean" in rows else pd.Series(dtype=float)
        if len(reference):
            ax.axvline(float(reference.iloc[0]), color="C3", linestyle="--", linewidth=1,
                       label="no motion x_{t+1} = x_t (same transitions)")
        for y, (_, row) in enumerate(rows.iterrows()):
            style = dict(_PROVENANCE_STYLES[row["provenance"]])
            label = style.pop("label")
            std = row["std"] if np.isfinite(row["std"]) else None
            ax.errorbar(row["mean"], y, xerr=std, capsize=3, linestyle="none", markersize=6,
                        label=label if label not in ax.get_legend_handles_labels()[1] else None, **style)
            ax.annotate(f"{row['mean']:.3f}", (row["mean"], y), xytext=(0, 6), textcoords="offset points",
                        ha="center", fontsize=7, color=style["color"])
        ax.set_yticks(range(len(rows)), rows["method"].tolist(), fontsize=8)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_title(f"{protocol} protocol", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("W1 (EMD, Euclidean) to the held-out cells, 5 PCs (lower is better)")
    legend = {}
    for ax in axes[:, 0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle("Embryoid body: one-step and leave-one-timepoint-out protocols", fontsize=10)
    return fig


def rna_figure(
    observed: Sequence[np.ndarray],
    interpolated: Sequence[np.ndarray],
    grid_x: np.ndarray,
    grid_y: np.ndarray,
    potentials: Mapping[int, np.ndarray],
    *,
    time_names: Sequence[str],
    n_levels: int = 12,
    max_points: int = 1000,
    title: str | None = None,
    caption: str | None = None,
) -> Figure:
    """Returns the single-cell figure of the paper (Fig. 5): data and predictions on top, learned V(., t) below.

    Top row, left to right: the observed cells of snapshot 0 (green), the interpolated predictions between
    snapshots 0 and 1 (blue), snapshot 1, ... Bottom row: one panel of level curves of the learned
    potential per time in ``potentials``, preceded by a panel overlaying three of them (first, middle and
    last time; solid, dashed and long-dashed lines), all on the first two coordinates.

    Args:
        observed: per snapshot the cells ``[n_k, >= 2]``.
        interpolated: per transition k -> k + 1 the interpolated predictions ``[m_k, >= 2]``.
        grid_x, grid_y: grid of the first two coordinates ``[g, g]``; also the axis limits of every panel.
        potentials: time label -> learned potential on the grid ``[g, g]`` (centred as the caller wants).
        time_names: name of each snapshot (e.g. "day 0-3").
        n_levels: contour levels shared by the bottom panels.
        max_points: at most this many points drawn per cloud.
    """
    if len(interpolated) != len(observed) - 1:
        raise ValueError(f"{len(observed)} snapshots need {len(observed) - 1} interpolations, got {len(interpolated)}")
    if len(time_names) != len(observed):
        raise ValueError(f"got {len(time_names)} time names for {len(observed)} snapshots")
    n_top = 2 * len(observed) - 1
    labels = sorted(potentials)
    n_bottom = len(labels) + 1
    fig = plt.figure(figsize=(max(1.9 * n_top, 2.6 * n_bottom), 6.4), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 1.25])
    limits = (grid_x.min(), grid_x.max()), (grid_y.min(), grid_y.max())

    top_axes = top.subplots(1, n_top, sharex=True, sharey=True, squeeze=False)[0]
    for i, ax in enumerate(top_axes):
        k = i // 2
        if i % 2 == 0:
            x, y = xy(subsample(observed[k], max_points))
            ax.scatter(x, y, s=2, c=DATA_COLOR, lw=0, alpha=0.6)
            ax.set_title(time_names[k], fontsize="small", color=DATA_COLOR)
        else:
            x, y = xy(subsample(interpolated[k], max_points))
            ax.scatter(x, y, s=2, c=PREDICTION_COLOR, lw=0, alpha=0.6)
            ax.set_title(f"{time_names[k]} $\\to$ {time_names[k + 1]}", fontsize="small", color=PREDICTION_COLOR)
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
        ax.set_xlabel("PC1", fontsize="small")
        ax.tick_params(labelsize="x-small")
    top_axes[0].set_ylabel("PC2", fontsize="small")
    top.suptitle("data (green) and interpolated one-step predictions (blue)", fontsize="medium")

    bottom_axes = bottom.subplots(1, n_bottom, sharex=True, sharey=True, squeeze=False)[0]
    values = [potentials[label] for label in labels]
    levels = shared_levels(values, n_levels)
    overlay = [labels[0], labels[len(labels) // 2], labels[-1]] if labels else []
    styles = ["solid", "dashed", (0, (8, 4))]
    for label, style, shade in zip(dict.fromkeys(overlay), styles, ("#08306b", "#4292c6", "#9ecae1")):
        bottom_axes[0].contour(grid_x, grid_y, potentials[label], levels=levels[:: max(1, n_levels // 4)],
                               colors=shade, linestyles=[style], linewidths=1.1)
        bottom_axes[0].plot([], [], color=shade, linestyle=style, label=time_names[label])
    if labels:
        bottom_axes[0].legend(fontsize="x-small", loc="lower left")
    bottom_axes[0].set_title("level curves overlaid", fontsize="small")
    filled = None
    for ax, label, v in zip(bottom_axes[1:], labels, values):
        if np.all(np.isfinite(v)):
            filled = ax.contourf(grid_x, grid_y, v, levels=levels, cmap="viridis", extend="both")
            ax.contour(grid_x, grid_y, v, levels=levels, colors="k", linewidths=0.4)
        else:
            ax.text(0.5, 0.5, "not finite", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(rf"$V_\theta(\cdot, t)$, {time_names[label]}", fontsize="small")
    for ax in bottom_axes:
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
        ax.set_xlabel("PC1", fontsize="small")
        ax.tick_params(labelsize="x-small")
    bottom_axes[0].set_ylabel("PC2 (other PCs 0)", fontsize="small")
    if filled is not None:
        bottom.colorbar(filled, ax=bottom_axes, shrink=0.85, label="learned V (centred)")
    bottom.suptitle("learned time-dependent potential", fontsize="medium")
    if title:
        fig.suptitle(title, fontsize="medium")
    if caption:
        fig.text(0.5, -0.01, caption, ha="center", va="top", fontsize="small", wrap=True)
    return fig


# ---- captions: the settings each figure was made with (config slices), and the published results ----

def _figure3(full_table, rows, history, grid, data, caption):
    return figure3(rows, history_with_steps(history, full_table), potential_order=grid["potentials"],
                   solver_order=exp1_solver_order(grid), caption=caption)


def _exp2(full_table, rows, history, grid, data, caption):
    return exp2_heatmaps(rows, potential_order=grid["potentials"], train_share=1 - data["test_ratio"], caption=caption)


def _exp3(full_table, rows, history, grid, data, caption):
    return exp3_figure(rows, solver_order=grid["solvers"], caption=caption)


def _ablation(full_table, rows, history, grid, data, caption):
    return ablation_figure(rows, caption=caption)


def _pairing(full_table, rows, history, grid, data, caption):
    # every prediction step of the JKOnet* MLP runs (one panel each): the full table, not the configured rows
    return pairing_figure(full_table, potential_order=grid["potentials"], solver_order=grid["solvers"],
                          caption=caption)


FIGURES = {"exp1": _figure3, "exp2": _exp2, "exp3": _exp3, "ablation": _ablation, "pairing": _pairing}
"""The figure of each synthetic experiment, by its name in the config's ``experiments:``: ``draw(full_table,
rows, history, grid, data, caption) -> Figure`` with the experiment's tidy table, its rows at the configured
prediction step (:func:`configured_step_rows`), its training histories, its grid and data settings, and its
caption (:func:`experiment_caption`). A new experiment is a config entry, a function here and its caption."""

EXPERIMENTS = tuple(FIGURES)
"""The synthetic experiments with a figure."""

PUBLISHED = Path(__file__).with_name("published.csv")
"""Published results quoted by the tables and captions: ``experiment, algorithm, emd_mean, emd_std, source``."""


def published(experiment: str) -> list[dict]:
    """Returns the published rows of ``experiment`` (e.g. ``"rna"``) in file order; a missing std is NaN."""
    with open(PUBLISHED, newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["experiment"] == experiment]
    if not rows:
        raise ValueError(f"{PUBLISHED}: no published results of experiment {experiment!r}")
    return [{"algorithm": row["algorithm"], "emd_mean": float(row["emd_mean"]),
             "emd_std": float(row["emd_std"]) if row["emd_std"] else math.nan, "source": row["source"]}
            for row in rows]


def _listing(values) -> str:
    return ", ".join(str(v) for v in values)


def _closed_form(name: str) -> bool:
    spec = methods.METHODS.get(name)
    return spec is not None and spec.closed_form


def _solver_phrase(name: str, hp: Mapping, steps: Mapping[str, str], with_eval: bool = False) -> str:
    """How a solver was trained: its epochs and minibatch (and evaluation interval), or its closed-form solve."""
    step = f", {steps[name]} prediction" if name in steps else ""
    if _closed_form(name):
        return f"{solver_label(name)}: closed form, ridge {hp['ridge']:g}{step}"
    text = f"{solver_label(name)}: {hp['epochs']} epochs, batch {hp['batch_size']}, lr {hp['learning_rate']:g}"
    if hp.get("lr_schedule", "constant") != "constant":
        text += f" ({hp['lr_schedule']} decay)"
    if hp.get("select", "last") != "last":
        text += f", best of the evaluations on {hp['validation_ratio']:g} of the training rows held out"
    if hp.get("interaction_average") and name in methods.METHODS and methods.METHODS[name].pairwise:
        text += f", interaction mean over the {hp['interaction_average']}"
    return text + (f", W1 every {hp['eval_every']}" if with_eval else "") + step


def exp1_solver_order(grid: Mapping) -> list[str]:
    """Exp. 4.1's solvers in legend order: the grid's, then those only its subsets run."""
    return list(dict.fromkeys(grid["solvers"] + [s for subset in grid.get("subsets", []) for s in subset["solvers"]]))


def experiment_caption(experiment: str, *, grid: Mapping, solvers: Mapping, data: Mapping, extra: Mapping,
                       protocol: str, steps: Mapping[str, str]) -> str:
    """Returns the caption of an experiment's figure: its grid, data and training settings.

    Args:
        experiment: one of :data:`EXPERIMENTS`.
        grid: the experiment's config section; solvers: the hyper-parameters of its solvers; data: the data
            section; extra: the couplings section (ablation, pairing); protocol: the config's protocol line.
        steps: per solver, the prediction step its runs were scored with.
    """
    def training():
        return "; ".join(_solver_phrase(name, hp, steps) for name, hp in solvers.items())

    settings = f"Settings: {protocol}."
    setting = (f"T = {data['n_steps']} steps of dt = {data['dt']:g}, {data['test_ratio']:g} of the particles "
               f"held out by {data['split_by']}; seeds {_listing(grid['seeds'])}; {training()}. {settings}")
    if experiment == "exp1":
        subset_note = "".join(
            f"; {', '.join(solver_label(s) for s in subset['solvers'])} on {_listing(subset['potentials'])} only"
            for subset in grid.get("subsets", [])
        )
        epochs = "; ".join(_solver_phrase(name, solvers[name], steps, with_eval=True)
                           for name in exp1_solver_order(grid) if not _closed_form(name))
        return "\n".join(textwrap.wrap(
            f"N = {_listing(grid['n_particles'])} particles per snapshot, {data['test_ratio']:g} held out by "
            f"{data['split_by']}; d = {_listing(grid['dims'])}; T = {data['n_steps']} steps of dt = {data['dt']:g}; "
            f"interaction {_listing(grid['interactions'])}, beta {_listing(grid['betas'])}; "
            f"seeds {_listing(grid['seeds'])}{subset_note}. {epochs}; linear solvers: one closed-form solve. "
            "EMD = one-step-ahead W1 on the test split, mean over the time steps; markers: mean over seeds, "
            f"bars: min-max over seeds. {settings}",
            width=170,
        ))
    if experiment == "exp2":
        return (f"N_train = {_listing(round((1 - data['test_ratio']) * n) for n in grid['n_particles'])}, "
                f"d = {_listing(grid['dims'])}; EMD = one-step-ahead W1 on the test split, mean over the time steps. "
                f"{setting}")
    if experiment == "exp3":
        return (f"{len(grid['potentials'])} potentials x {len(grid['interactions'])} interactions x beta in "
                f"{{{_listing(grid['betas'])}}}; d = {_listing(grid['dims'])}, N = {_listing(grid['n_particles'])} "
                f"per snapshot. {setting} Gradients compared on a grid over the test data's "
                "bounding box (jkonetstar.pipeline.recovery_points); beta_hat is rescaled by tau/dt.")
    if experiment == "ablation":
        relaxed = " (halved until an entry passes where none does)" if extra.get("sparsify_relax") else ""
        return (f"{len(grid['potentials'])} potentials, d = {_listing(grid['dims'])}, "
                f"N = {_listing(grid['n_particles'])} per snapshot; blocks of {extra['block_size']} particles, "
                f"Sinkhorn threshold {extra['sinkhorn_threshold']:g}, at most {extra['sinkhorn_max_iterations']} "
                f"iterations, plans sparsified at 1/(10 n){relaxed}. {setting}")
    if experiment == "pairing":
        return (f"N = {_listing(grid['n_particles'])} per snapshot, d = {_listing(grid['dims'])}, couplings in blocks "
                f"of {extra['block_size']} particles; paired: snapshot t of one simulated population; shuffled: the "
                "same, every snapshot shuffled before the block-wise couplings; independent: snapshot t of the t-th "
                f"of T + 1 independent populations (same initial law), split within every snapshot. {setting}"
                " Grey bars: two-sample floor of the independent snapshots.")
    raise ValueError(f"unknown experiment {experiment!r}: choose one of {list(EXPERIMENTS)}")


def prediction_caption(grid: Mapping, protocol: str) -> str:
    """Returns the caption of :func:`prediction_figure` for Exp. 4.1's grid ``grid``."""
    return (f"Exp. 4.1 runs (N = {', '.join(map(str, grid.get('n_particles', [])))} per snapshot, seeds "
            f"{', '.join(map(str, grid.get('seeds', [])))}); explicit: x - tau grad V(x) (published evaluation); "
            "implicit: fixed point y = x - tau grad V(y) (the step the loss was trained on). "
            f"Settings: {protocol}.")


RNA_ALGORITHMS = {"jkonet-star-time-potential": "JKOnet* (time-varying V)", "jkonet-star-potential": "JKOnet* (V)",
                  "jkonet": "JKOnet", "jkonet-vanilla": "JKOnet-vanilla"}
"""Names of the RNA methods in the published tables (the ``algorithm`` column of the RNA table)."""


def rna_caption(table: pd.DataFrame, *, solver: str, seed: int, last_label: int, step: str, protocol: str) -> str:
    """Returns the caption of :func:`rna_figure` for the run (``solver``, ``seed``) of the RNA table ``table``."""
    ours = table[(table.solver == solver) & (table.statistic == "over seed means")].iloc[0]
    first = table[(table.solver == solver) & (table.statistic == f"over time steps, seed {seed}")].iloc[0]
    paper = next(row for row in published("rna") if row["algorithm"] == RNA_ALGORITHMS["jkonet-star-time-potential"])
    return (
        f"{solver_label(solver)} on the embryoid-body data (first 5 standardised PCs; PC1-PC2 shown, other PCs 0 "
        f"in the level curves; V trained at the target times 1..{last_label}). One-step EMD on the 40% test split: "
        f"seed {seed} {first.emd_mean:.3f} $\\pm$ {first.emd_std:.3f} over time steps; "
        f"{ours.emd_mean:.3f} $\\pm$ {ours.emd_std:.3f} over {int(ours.n)} seed means "
        f"(paper: {paper['emd_mean']:g} $\\pm$ {paper['emd_std']:g}). "
        f"Blue: midpoint between each test cell and its predicted position one snapshot later ({step} step). "
        f"Settings: {protocol}."
    )
