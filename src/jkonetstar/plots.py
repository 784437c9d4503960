"""Pictures of one run from arrays: level curves of true and learned potentials, one-step predictions.

Every function is pure: it takes arrays and returns a new matplotlib ``Figure`` (Agg backend) that the
caller saves and closes. Nothing is read from disk here. The figures that aggregate many runs (the
paper's figures) are in :mod:`jkonetstar.figures`, so that editing them reruns no per-run job.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from matplotlib.figure import Figure  # noqa: E402

from jkonetstar import methods  # noqa: E402

__all__ = [
    "SOLVER_LABELS",
    "solver_label",
    "level_curves",
    "predictions_vs_observed",
    "potential_profile",
    "save_figure",
    "data_window",
    "shared_levels",
    "subsample",
    "xy",
    "potential_panels",
    "DATA_COLOR",
    "PREDICTION_COLOR",
]


SOLVER_LABELS: dict[str, str] = {name: methods.label(name) for name in methods.METHODS}
"""Legend names: the paper's for the solvers of Figure 3, the same notation for the others."""


_TRUE_COLOR = "#1b7837"


_LEARNED_COLOR = "#2166ac"


DATA_COLOR = "#1a9850"


PREDICTION_COLOR = "#2166ac"


def solver_label(name: str) -> str:
    """Returns the legend label of solver ``name`` (the name itself when it has no paper label)."""
    return methods.label(name)


def _contour_levels(v_true: np.ndarray, v_learned: np.ndarray | None, n_levels: int) -> np.ndarray:
    """Levels of the true potential; the learned one joins in only where the true one is flat (or undefined)."""
    values = v_true[np.isfinite(v_true)]
    flat = values.size == 0 or np.ptp(values) < 1e-12 * max(1.0, np.abs(values).max())
    return shared_levels([values, v_learned] if flat else [values], n_levels)


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


def potential_profile(
    axis: np.ndarray,
    v_true: np.ndarray,
    v_learned: np.ndarray | None,
    *,
    title: str | None = None,
    learned_label: str = "learned",
    true_label: str = "true",
    message: str | None = None,
) -> Figure:
    """Returns the true and learned potentials of a 1-D run as two curves over ``axis`` ``[g]`` (the d = 1
    counterpart of :func:`level_curves`; both already shifted/scaled as the caller wants them compared)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    ax.plot(axis, v_true, color=_TRUE_COLOR, lw=1.5, label=true_label)
    if v_learned is not None and np.all(np.isfinite(v_learned)):
        ax.plot(axis, v_learned, color=_LEARNED_COLOR, lw=1.5, ls="--", label=learned_label)
    else:
        ax.text(0.5, 0.9, message or "no learned potential", ha="center", va="top", transform=ax.transAxes)
    ax.set_xlabel(r"$x$")
    ax.set_ylabel("potential")
    ax.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


def save_figure(draw, path, *, log=None, dpi: int = 120) -> bool:
    """Saves the figure ``draw()`` returns to ``path`` (PNG, atomically) and closes it; returns True.

    A picture must never cost a computed metric: if ``draw`` raises, a placeholder PNG that names the error is
    written instead (so the job's outputs exist), the error goes to ``log.warning`` and False is returned.
    """
    from jkonetstar.io import atomic_path

    try:
        fig = draw()
        ok = True
    except Exception as error:  # noqa: BLE001 - any plotting failure becomes a placeholder, never a lost metric
        if log is not None:
            log.warning("picture %s could not be drawn (%s: %s); wrote a placeholder", path, type(error).__name__,
                        error)
        fig, ax = plt.subplots(figsize=(6.4, 2.0))
        ax.axis("off")
        ax.text(0.5, 0.5, f"picture not drawn: {type(error).__name__}: {error}"[:300], ha="center", va="center",
                wrap=True, fontsize="small")
        ok = False
    # A constrained layout fits the figure already; cropping to the tight box would lay it out and draw it twice.
    tight = "tight" if fig.get_layout_engine() is None else None
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches=tight)
    plt.close(fig)
    return ok


def predictions_vs_observed(
    observed: Sequence[np.ndarray],
    predicted: Sequence[np.ndarray],
    *,
    target_labels: Sequence[int] | None = None,
    w1: Sequence[float] | None = None,
    title: str | None = None,
    max_points: int = 1000,
    names: Sequence[str] | None = None,
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
        names: each snapshot label's name (e.g. ``day0-3``, ``t = 0.3333``) for the panel titles; default
            ``t = <label>``.

    Returns:
        A figure with ``K`` axes sharing their limits.
    """
    if len(observed) != len(predicted):
        raise ValueError(f"observed has {len(observed)} steps but predicted has {len(predicted)}")
    n_steps = len(observed)
    labels = list(target_labels) if target_labels is not None else list(range(1, n_steps + 1))
    one_dim = all(np.asarray(o).shape[-1] == 1 for o in observed)
    panel, height = 2.9, 4.0  # inches: panel width, figure height
    if not one_dim:  # equal-aspect panels: the figure as tall as the drawn window needs (titles never overlap)
        points = np.concatenate([np.asarray(a, float).reshape(-1, np.shape(a)[-1])[:, :2]
                                 for a in [*observed, *predicted]])
        points = points[np.all(np.isfinite(points), axis=1)]
        spans = np.ptp(points, axis=0) if len(points) else np.zeros(2)
        ratio = spans[1] / spans[0] if spans[0] > 0 and spans[1] > 0 else 1.0
        height = float(np.clip(panel * ratio, 1.5, 6.0)) + 1.6  # + the titles and the x labels
    fig, axes = plt.subplots(
        1, max(n_steps, 1), figsize=(panel * max(n_steps, 1) + 0.6, height), sharex=True, sharey=True,
        layout="constrained", squeeze=False,
    )
    axes = axes[0]
    for k, (ax, obs, pred) in enumerate(zip(axes, observed, predicted)):
        obs, pred = np.asarray(obs), np.asarray(pred)
        stride_obs = max(1, len(obs) // max_points)
        stride_pred = max(1, len(pred) // max_points)
        finite = np.all(np.isfinite(pred), axis=-1)
        step = (f"t = {labels[k] - 1} $\\to$ {labels[k]}" if names is None
                else f"{names[labels[k] - 1]} $\\to$ {names[labels[k]]}")
        ax.set_title(step if w1 is None else f"{step}\n$W_1$ = {w1[k]:.3g}", fontsize="medium")
        if one_dim:  # d = 1: densities of the two populations (all points, no subsampling needed)
            values = np.concatenate([obs[:, 0], pred[finite][:, 0]])
            bins = np.histogram_bin_edges(values, bins=30)
            ax.hist(pred[finite][:, 0], bins=bins, density=True, color=_LEARNED_COLOR, alpha=0.6, label="predicted")
            ax.hist(obs[:, 0], bins=bins, density=True, histtype="step", color="0.25", lw=1.2, label="observed")
            ax.set_xlabel(r"$x$")
            continue
        ax.scatter(pred[finite][::stride_pred, 0], pred[finite][::stride_pred, 1], s=4, c=_LEARNED_COLOR,
                   alpha=0.7, lw=0, label="predicted")
        ax.scatter(obs[::stride_obs, 0], obs[::stride_obs, 1], s=12, facecolors="none", edgecolors="0.35",
                   alpha=0.6, linewidths=0.5, label="observed")
        ax.set_xlabel(r"$x_1$")
        ax.set_aspect("equal", adjustable="box")
    axes[0].set_ylabel("density" if one_dim else r"$x_2$")
    axes[0].legend(loc="upper left", fontsize="small", markerscale=2.5, frameon=True)
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


def data_window(points: np.ndarray, *, margin: float = 0.1, percentiles: tuple[float, float] = (0.5, 99.5)):
    """Returns ``(low, high)`` per coordinate of the first two columns of ``points`` ``[n, >= 1]``.

    The window spans the given percentiles of the data widened by ``margin`` of its width on each side
    (a single coordinate gets the second axis ``[-1, 1]``).
    """
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or len(points) == 0:
        raise ValueError(f"expected points of shape [n, d] with n >= 1, got {points.shape}")
    low, high = np.percentile(points[:, :2], percentiles, axis=0)
    width = np.where(high - low > 0, high - low, 1.0)
    low, high = low - margin * width, high + margin * width
    if points.shape[1] == 1:
        low, high = np.append(low, -1.0), np.append(high, 1.0)
    return low, high


def shared_levels(values: Sequence[np.ndarray | None], n_levels: int) -> np.ndarray:
    finite = [np.asarray(v)[np.isfinite(v)] for v in values if v is not None]
    finite = np.concatenate(finite) if finite else np.zeros(0)
    if finite.size == 0:
        return np.linspace(-1.0, 1.0, n_levels)
    low, high = np.percentile(finite, [0.5, 99.5])
    if high - low < 1e-12:
        low, high = low - 1.0, high + 1.0
    return np.linspace(low, high, n_levels)


def subsample(points: np.ndarray, max_points: int) -> np.ndarray:
    points = np.asarray(points)
    return points[:: max(1, len(points) // max_points)]


def xy(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(points)
    return points[:, 0], points[:, 1] if points.shape[1] > 1 else np.zeros(len(points))


def potential_panels(
    grid_x: np.ndarray,
    grid_y: np.ndarray,
    values: Sequence[np.ndarray | None],
    *,
    titles: Sequence[str],
    points: Sequence[np.ndarray | None] | None = None,
    n_levels: int = 15,
    title: str | None = None,
    axis_labels: tuple[str, str] = (r"$x_1$", r"$x_2$"),
    max_points: int = 500,
    message: str = "no learned potential",
) -> Figure:
    """Returns one panel of level curves per learned potential (e.g. one per time), on shared levels.

    Args:
        grid_x, grid_y: the grid of the first two coordinates, ``[g, g]`` (``np.meshgrid`` output).
        values: per panel the potential on the grid ``[g, g]``, or None (the panel then shows ``message``).
        titles: per panel title.
        points: per panel an optional cloud ``[n, >= 1]`` drawn over the levels (first two coordinates).
        n_levels: contour levels, shared by all panels (0.5-99.5 percentiles of all finite values).
        title: figure title.
        max_points: at most this many points drawn per cloud.
    """
    if len(values) != len(titles):
        raise ValueError(f"got {len(values)} potentials but {len(titles)} titles")
    points = list(points) if points is not None else [None] * len(values)
    finite = [v if v is not None and np.all(np.isfinite(v)) else None for v in values]
    levels = shared_levels(finite, n_levels)
    n = max(len(values), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n + 1.0, 3.6), sharex=True, sharey=True, layout="constrained",
                             squeeze=False)
    axes = axes[0]
    filled = None
    for ax, v, cloud, name in zip(axes, finite, points, titles):
        if v is not None:
            filled = ax.contourf(grid_x, grid_y, v, levels=levels, cmap="viridis", extend="both")
            ax.contour(grid_x, grid_y, v, levels=levels, colors=_LEARNED_COLOR, linewidths=0.6)
        else:
            ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, wrap=True)
        if cloud is not None and len(cloud):
            x, y = xy(subsample(cloud, max_points))
            ax.scatter(x, y, s=3, c="white", edgecolors="0.2", linewidths=0.2, alpha=0.6)
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel(axis_labels[0])
        ax.set_xlim(grid_x.min(), grid_x.max())
        ax.set_ylim(grid_y.min(), grid_y.max())
    axes[0].set_ylabel(axis_labels[1])
    if filled is not None:
        fig.colorbar(filled, ax=axes, shrink=0.9, label="learned potential (centred, shared levels)")
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig
