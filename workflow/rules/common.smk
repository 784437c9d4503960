import itertools
import math

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


if not config:

    configfile: "config/config.yaml"


def _config_error(error):
    """Returns a one-line message naming the config setting a schema error is about."""
    cause = error.__cause__ or error.__context__
    if not hasattr(cause, "absolute_path"):
        return str(error).replace("\n", " ")
    setting = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in cause.absolute_path)
    setting = setting.lstrip(".") or "<top level>"
    return f"invalid config setting {setting}: {cause.message}"


try:
    validate(config, schema="../schemas/config.schema.yaml")
except WorkflowError as error:
    raise WorkflowError(_config_error(error)) from None

for _name, _grid in config["experiments"].items():
    for _solver in _grid["solvers"]:
        if _solver not in config["solvers"]:
            raise WorkflowError(
                f"invalid config setting experiments.{_name}.solvers: solver {_solver!r} "
                f"has no hyper-parameters under solvers: (have {sorted(config['solvers'])})"
            )
if (config["couplings"]["method"] == "sinkhorn") != (config["couplings"]["epsilon"] is not None):
    raise WorkflowError(
        "invalid config setting couplings.epsilon: give epsilon > 0 exactly when method is sinkhorn "
        f"(method={config['couplings']['method']!r}, epsilon={config['couplings']['epsilon']!r})"
    )


# Readable wildcard paths: one directory level per setting.
DATASET = "potential~{potential}/interaction~{interaction}/beta~{beta}/dim~{dim}/n~{n}/seed~{seed}"
COUPLED = f"{DATASET}/pairing~{{pairing}}"
RUN = f"{COUPLED}/solver~{{solver}}"

# Library files each stage runs: declared as inputs so that a content change reruns exactly the
# stages that use them (profiles set rerun-triggers without `code`; a touch alone reruns nothing).
CODE = {
    "simulate": [
        "workflow/scripts/simulate.py",
        "src/jkonetstar/pipeline.py",
        "src/jkonetstar/simulate.py",
        "src/jkonetstar/energies.py",
        "src/jkonetstar/io.py",
    ],
    "couplings": [
        "workflow/scripts/couplings.py",
        "src/jkonetstar/pipeline.py",
        "src/jkonetstar/split.py",
        "src/jkonetstar/couplings.py",
        "src/jkonetstar/density.py",
        "src/jkonetstar/io.py",
    ],
    "train": [
        "workflow/scripts/train.py",
        "src/jkonetstar/pipeline.py",
        "src/jkonetstar/training.py",
        "src/jkonetstar/models.py",
        "src/jkonetstar/features.py",
        "src/jkonetstar/metrics.py",
        "src/jkonetstar/io.py",
    ],
    "evaluate": [
        "workflow/scripts/evaluate.py",
        "src/jkonetstar/pipeline.py",
        "src/jkonetstar/models.py",
        "src/jkonetstar/features.py",
        "src/jkonetstar/metrics.py",
        "src/jkonetstar/energies.py",
        "src/jkonetstar/plots.py",
        "src/jkonetstar/io.py",
    ],
    "table": ["workflow/scripts/table.py", "src/jkonetstar/io.py"],
    "figure_exp1": ["workflow/scripts/figure_exp1.py", "src/jkonetstar/plots.py"],
}


def beta_label(beta):
    """Path form of a diffusion coefficient: the shortest float repr (0.0, 0.1, 1e-05)."""
    return repr(float(beta))


def experiment_runs(name):
    """Returns the wildcard values of every run of experiment ``name``, in grid order."""
    grid = config["experiments"][name]
    product = itertools.product(
        grid["potentials"],
        grid["interactions"],
        grid["betas"],
        grid["dims"],
        grid["n_particles"],
        grid["seeds"],
        grid["pairings"],
        grid["solvers"],
    )
    keys = ("potential", "interaction", "beta", "dim", "n", "seed", "pairing", "solver")
    runs = [dict(zip(keys, values)) for values in product]
    for run in runs:
        run["beta"] = beta_label(run["beta"])
    return runs


def run_files(name, filename):
    """Returns ``results/runs/<run>/<filename>`` for every run of experiment ``name``."""
    return [f"results/runs/{RUN.format(**run)}/{filename}" for run in experiment_runs(name)]


def experiment_outputs(name):
    """Returns the tables and figures an experiment produces."""
    outputs = [f"results/tables/{name}.csv", f"results/tables/{name}_history.csv"]
    if name == "exp1":
        outputs += ["results/figures/exp1.png", "results/figures/exp1.pdf"]
    return outputs


def _choices(values):
    return "|".join(sorted({str(v).replace(".", r"\.") for v in values}, key=len, reverse=True))


def _grid_values(key):
    return [value for grid in config["experiments"].values() for value in grid[key]]


wildcard_constraints:
    potential=_choices(_grid_values("potentials")),
    interaction=_choices(_grid_values("interactions")),
    beta=_choices(beta_label(b) for b in _grid_values("betas")),
    dim=_choices(_grid_values("dims")),
    n=_choices(_grid_values("n_particles")),
    seed=_choices(_grid_values("seeds")),
    pairing=_choices(_grid_values("pairings")),
    solver=_choices(_grid_values("solvers")),
    experiment=_choices(config["experiments"]),


def settings(value):
    """Returns ``value`` with every mapping's keys sorted, so that a job's params (compared between runs
    by their repr) do not change when keys are reordered in a config file."""
    if isinstance(value, dict):
        return {key: settings(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [settings(item) for item in value]
    return value


def config_slice(*path, keys=None):
    """Returns ``config[path...]`` (restricted to ``keys``) as sorted settings: a job's slice of the config."""
    value = config
    for part in path:
        value = value[part]
    return settings({key: value[key] for key in keys} if keys else value)


def solver_hp(wildcards):
    """Per-job slice of the config: the hyper-parameters of this run's solver."""
    return config_slice("solvers", wildcards.solver)


def train_runtime(wildcards):
    """Generous wall-time estimate of one training job, in minutes (for cluster schedulers)."""
    hp = config["solvers"][wildcards.solver]
    if "linear" in wildcards.solver:
        return 30
    pairs = int(wildcards.n) * config["data"]["n_steps"]
    per_epoch = 2e-6 * pairs * (hp["batch_size"] if wildcards.solver == "jkonet-star" else 1)
    return 10 + math.ceil(2 * hp["epochs"] * per_epoch / 60)
