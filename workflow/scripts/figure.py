"""Snakemake adapter: the figure of one experiment (exp1 = paper Figure 3, exp2, exp3, ablation, pairing).

Each experiment has its caption builder below (the settings the figure was made with, from the config) and
its plotting function in :mod:`jkonetstar.plots`; every figure also writes the seed summary of its table.
"""

import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.iocontainers import snakemake

# The checkout's library first: conda environments do not install it, and in the project venv the
# same checkout wins.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from jkonetstar.io import log_to  # noqa: E402

experiment = snakemake.wildcards.experiment
log = log_to(snakemake.log[0], f"figure {experiment}")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from jkonetstar import figures, plots  # noqa: E402
from jkonetstar.io import atomic_path  # noqa: E402

grid, data, solvers, extra = snakemake.params.grid, snakemake.params.data, snakemake.params.solvers, snakemake.params.extra
full_table = pd.read_csv(snakemake.input.table)
table = figures.configured_step_rows(full_table)  # each run scored with its configured prediction step
steps = table[table["metric"] == "diverged"].groupby("solver")["predict_step"].first().to_dict()


def listing(values):
    return ", ".join(str(v) for v in values)


def solver_phrase(name, with_eval=False):
    """How a solver was trained: its epochs and minibatch (and evaluation interval), or its closed-form solve."""
    hp = solvers[name]
    step = f", {steps[name]} prediction" if name in steps else ""
    if "linear" in name:
        return f"{plots.solver_label(name)}: closed form, ridge {hp['ridge']:g}{step}"
    text = f"{plots.solver_label(name)}: {hp['epochs']} epochs, batch {hp['batch_size']}, lr {hp['learning_rate']:g}"
    if hp.get("lr_schedule", "constant") != "constant":
        text += f" ({hp['lr_schedule']} decay)"
    if hp.get("select", "last") != "last":
        text += f", best of the evaluations on {hp['validation_ratio']:g} of the training rows held out"
    if hp.get("interaction_average") and name == "jkonet-star":
        text += f", interaction mean over the {hp['interaction_average']}"
    return text + (f", W1 every {hp['eval_every']}" if with_eval else "") + step


def training():
    return "; ".join(solver_phrase(name) for name in solvers)


def setting():
    return (f"T = {data['n_steps']} steps of dt = {data['dt']:g}, {data['test_ratio']:g} of the particles "
            f"held out by {data['split_by']}; seeds {listing(grid['seeds'])}; {training()}. {protocol()}")


def protocol():
    return f"Settings: {snakemake.params.protocol}."


def exp1():
    order = list(dict.fromkeys(grid["solvers"] + [s for subset in grid.get("subsets", []) for s in subset["solvers"]]))
    subset_note = "".join(
        f"; {', '.join(plots.solver_label(s) for s in subset['solvers'])} on {listing(subset['potentials'])} only"
        for subset in grid.get("subsets", [])
    )
    epochs = "; ".join(solver_phrase(name, with_eval=True) for name in order if "linear" not in name)
    caption = "\n".join(textwrap.wrap(
        f"N = {listing(grid['n_particles'])} particles per snapshot, {data['test_ratio']:g} held out by "
        f"{data['split_by']}; d = {listing(grid['dims'])}; T = {data['n_steps']} steps of dt = {data['dt']:g}; "
        f"interaction {listing(grid['interactions'])}, beta {listing(grid['betas'])}; "
        f"seeds {listing(grid['seeds'])}{subset_note}. {epochs}; linear solvers: one closed-form solve. "
        "EMD = one-step-ahead W1 on the test split, mean over the time steps; markers: mean over seeds, "
        f"bars: min-max over seeds. {protocol()}",
        width=170,
    ))
    history = figures.history_with_steps(pd.read_csv(snakemake.input.history), full_table)
    return figures.figure3(table, history, potential_order=grid["potentials"], solver_order=order, caption=caption)


def exp2():
    caption = (f"N_train = {listing(round((1 - data['test_ratio']) * n) for n in grid['n_particles'])}, "
               f"d = {listing(grid['dims'])}; EMD = one-step-ahead W1 on the test split, mean over the time steps. "
               f"{setting()}")
    return figures.exp2_heatmaps(table, potential_order=grid["potentials"], train_share=1 - data["test_ratio"],
                               caption=caption)


def exp3():
    caption = (f"{len(grid['potentials'])} potentials x {len(grid['interactions'])} interactions x beta in "
               f"{{{listing(grid['betas'])}}}; d = {listing(grid['dims'])}, N = {listing(grid['n_particles'])} per "
               f"snapshot. {setting()} Gradients compared on a grid over the test data's "
               "bounding box (jkonetstar.pipeline.recovery_points); beta_hat is rescaled by tau/dt.")
    return figures.exp3_figure(table, solver_order=grid["solvers"], caption=caption)


def ablation():
    relaxed = " (halved until an entry passes where none does)" if extra.get("sparsify_relax") else ""
    caption = (f"{len(grid['potentials'])} potentials, d = {listing(grid['dims'])}, N = {listing(grid['n_particles'])} "
               f"per snapshot; blocks of {extra['block_size']} particles, Sinkhorn threshold "
               f"{extra['sinkhorn_threshold']:g}, at most {extra['sinkhorn_max_iterations']} iterations, plans "
               f"sparsified at 1/(10 n){relaxed}. {setting()}")
    return figures.ablation_figure(table, caption=caption)


def pairing():
    caption = (f"N = {listing(grid['n_particles'])} per snapshot, d = {listing(grid['dims'])}, couplings in blocks of "
               f"{extra['block_size']} particles; paired: snapshot t of one simulated population; shuffled: the same, "
               "every snapshot shuffled before the block-wise couplings; independent: snapshot t of the t-th of "
               f"T + 1 independent populations (same initial law), split within every snapshot. {setting()}")
    # every prediction step of the JKOnet* MLP runs (one panel each): the full table, not the configured rows
    return figures.pairing_figure(full_table, potential_order=grid["potentials"], solver_order=grid["solvers"],
                                caption=caption + " Grey bars: two-sample floor of the independent snapshots.")


FIGURES = {"exp1": exp1, "exp2": exp2, "exp3": exp3, "ablation": ablation, "pairing": pairing}

fig = FIGURES[experiment]()
with atomic_path(snakemake.output.summary) as tmp:
    figures.seed_summary(full_table).to_csv(tmp, index=False)
for path, kind in ((snakemake.output.png, "png"), (snakemake.output.pdf, "pdf")):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=kind, dpi=150, bbox_inches="tight")
plt.close(fig)
log.info("wrote %s", list(snakemake.output))
