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


def _renamed_pairing_settings():
    """The settings that still name the pairing "unpaired" (now "shuffled": jkonetstar.couplings.check_pairing)."""
    sections = [("experiments", "pairings"), ("datasets", "pairing")]
    found = []
    for section, key in sections:
        entries = config.get(section)
        for name, entry in (entries.items() if isinstance(entries, dict) else []):
            value = entry.get(key) if isinstance(entry, dict) else None
            if value == "unpaired" or (isinstance(value, list) and "unpaired" in value):
                found.append(f"{section}.{name}.{key}")
    return found


for _where in _renamed_pairing_settings():
    raise WorkflowError(f"invalid config setting {_where}: pairing 'unpaired' is now called 'shuffled' (paired data "
                        "with the order lost): use 'shuffled', or 'independent' for snapshots that share no particle")

try:
    validate(config, schema="../schemas/config.schema.yaml")
except WorkflowError as error:
    raise WorkflowError(_config_error(error)) from None

if (config["couplings"]["method"] == "sinkhorn") != (config["couplings"]["epsilon"] is not None):
    raise WorkflowError(
        "invalid config setting couplings.epsilon: give epsilon > 0 exactly when method is sinkhorn "
        f"(method={config['couplings']['method']!r}, epsilon={config['couplings']['epsilon']!r})"
    )

# Largest feature count of the closed-form solvers: jkonetstar.features.MAX_FEATURES (not imported here, which
# would load JAX at every parse; tests/test_experiments.py checks that the two agree).
MAX_LINEAR_FEATURES = 5000


def _linear_feature_count(solver, dim):
    options = config["solvers"][solver].get("features", {})
    degree, rbf_per_dim = options.get("degree", 4), options.get("rbf_per_dim", 10)
    return (degree + 1) ** dim - 1 + rbf_per_dim**dim


for _name, _grid in config["experiments"].items():
    for _solver in _grid["solvers"]:
        if "linear" not in _solver:
            continue
        _too_big = [d for d in _grid["dims"] if _linear_feature_count(_solver, d) > MAX_LINEAR_FEATURES]
        if _too_big:
            raise WorkflowError(
                f"invalid config setting experiments.{_name}.dims: linear solver {_solver!r} cannot run in "
                f"d = {_too_big} ({_linear_feature_count(_solver, min(_too_big))} features > "
                f"{MAX_LINEAR_FEATURES}; linear features suit d <= 3); use jkonet-star-potential there"
            )


# Readable wildcard paths: one directory level per setting.
DATASET = "potential~{potential}/interaction~{interaction}/beta~{beta}/dim~{dim}/n~{n}/seed~{seed}"
COUPLED = f"{DATASET}/pairing~{{pairing}}/ot~{{ot}}"
RUN = f"{COUPLED}/solver~{{solver}}"

# Library files each stage runs: declared as inputs so that a content change reruns exactly the
# stages that use them (profiles set rerun-triggers without `code`; a touch alone reruns nothing).
CODE = {
    "simulate": [
        "workflow/scripts/simulate.py",
        "src/jkonetstar/__init__.py",
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
        "src/jkonetstar/baselines.py",
        "src/jkonetstar/training.py",
        "src/jkonetstar/models.py",
        "src/jkonetstar/features.py",
        "src/jkonetstar/metrics.py",
        "src/jkonetstar/io.py",
    ],
    "evaluate": [
        "workflow/scripts/evaluate.py",
        "src/jkonetstar/pipeline.py",
        "src/jkonetstar/baselines.py",
        "src/jkonetstar/models.py",
        "src/jkonetstar/features.py",
        "src/jkonetstar/metrics.py",
        "src/jkonetstar/energies.py",
        "src/jkonetstar/plots.py",
        "src/jkonetstar/io.py",
    ],
    "table": ["workflow/scripts/table.py", "src/jkonetstar/io.py"],
    "figure": [
        "workflow/scripts/figure.py",
        "src/jkonetstar/figures.py",
        "src/jkonetstar/plots.py",
        "src/jkonetstar/io.py",
    ],
}


def beta_label(beta):
    """Path form of a diffusion coefficient: the shortest float repr (0.0, 0.1, 1e-05)."""
    return repr(float(beta))


def ot_label(coupling):
    """Path form of one coupling setting: "exact", or "sinkhorn-<epsilon>" for a Sinkhorn epsilon."""
    return "exact" if coupling == "exact" else f"sinkhorn-{beta_label(coupling)}"


def grid_couplings(grid):
    """The ot labels of an experiment grid: its ``couplings`` list, else the couplings section's method."""
    default = config["couplings"]["epsilon"] if config["couplings"]["method"] == "sinkhorn" else "exact"
    return [ot_label(c) for c in grid.get("couplings", [default])]


def coupling_settings(wildcards):
    """Per-job slice of the config: the couplings section with the method and epsilon of ``wildcards.ot``."""
    method, _, epsilon = wildcards.ot.partition("-")
    return settings({**config["couplings"], "method": method, "epsilon": float(epsilon) if epsilon else None})


def experiment_runs(name):
    """Returns the wildcard values of every run of experiment ``name``, in grid order.

    ``subsets`` of the grid add solvers run on fewer potentials (e.g. the costly JKOnet baselines).
    """
    grid = config["experiments"][name]
    parts = [grid] + [{**grid, **subset} for subset in grid.get("subsets", [])]
    product = itertools.chain.from_iterable(
        itertools.product(
            part["potentials"],
            part["interactions"],
            part["betas"],
            part["dims"],
            part["n_particles"],
            part["seeds"],
            part["pairings"],
            grid_couplings(part),
            part["solvers"],
        )
        for part in parts
    )
    keys = ("potential", "interaction", "beta", "dim", "n", "seed", "pairing", "ot", "solver")
    runs = [dict(zip(keys, values)) for values in product]
    for run in runs:
        run["beta"] = beta_label(run["beta"])
    return runs


def run_files(name, filename):
    """Returns ``results/runs/<run>/<filename>`` for every run of experiment ``name``."""
    return [f"results/runs/{RUN.format(**run)}/{filename}" for run in experiment_runs(name)]


def coupled_files(name, filename):
    """Returns ``results/data/<coupled data>/<filename>`` for every run of experiment ``name``."""
    return [f"results/data/{COUPLED.format(**run)}/{filename}" for run in experiment_runs(name)]


def experiment_outputs(name):
    """Returns the tables and figures an experiment produces (rule figure in workflow/rules/figures.smk)."""
    return [f"results/tables/{name}{suffix}.csv" for suffix in ("", "_history", "_summary")] + [
        f"results/figures/{name}.{kind}" for kind in ("png", "pdf")
    ]


def prediction_outputs():
    """The explicit-vs-implicit comparison of Exp. 4.1 (rule prediction_figure), when exp1 is configured."""
    if "exp1" not in config["experiments"]:
        return []
    return ["results/tables/prediction.csv"] + [f"results/figures/prediction.{kind}" for kind in ("png", "pdf")]


def _choices(values):
    return "|".join(sorted({str(v).replace(".", r"\.") for v in values}, key=len, reverse=True))


def _grid_values(key):
    parts = [p for grid in config["experiments"].values() for p in [grid, *grid.get("subsets", [])]]
    return [value for part in parts for value in part.get(key, [])]


wildcard_constraints:
    potential=_choices(_grid_values("potentials")),
    interaction=_choices(_grid_values("interactions")),
    beta=_choices(beta_label(b) for b in _grid_values("betas")),
    dim=_choices(_grid_values("dims")),
    n=_choices(_grid_values("n_particles")),
    seed=_choices(_grid_values("seeds")),
    pairing=_choices(_grid_values("pairings")),
    ot=_choices(label for grid in config["experiments"].values() for label in grid_couplings(grid)),
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


# Evaluation settings of the JKOnet* solvers (jkonetstar.pipeline.PREDICT_OPTIONS; tests/test_experiments.py
# checks that the two agree): rule evaluate receives them, rule train never does, so choosing them never retrains.
PREDICT_OPTIONS = ("predict_step", "implicit_tolerance", "implicit_max_iterations")


def predict_options(wildcards):
    """Prediction settings of a run: the JKOnet baselines' step and inner loop, or the JKOnet* solvers'
    PREDICT_OPTIONS (absent ones take the library defaults)."""
    hp = config["solvers"][wildcards.solver]
    if "inner_steps" in hp:
        return {"step": hp["predict_step"], "inner_steps": hp["inner_steps"], "inner_learning_rate": hp["inner_learning_rate"]}
    return settings({key: hp[key] for key in PREDICT_OPTIONS if key in hp})


def experiment_solvers(name):
    """Returns the solvers of experiment ``name``: its grid's, then those only its subsets use."""
    grid = config["experiments"][name]
    subsets = [solver for subset in grid.get("subsets", []) for solver in subset["solvers"]]
    return list(dict.fromkeys(grid["solvers"] + subsets))


def solver_hp(wildcards):
    """Per-job slice of the config: the training hyper-parameters of this run's solver (prediction settings
    of the JKOnet* solvers excluded: they are evaluation settings)."""
    hp = config_slice("solvers", wildcards.solver)
    if "inner_steps" in hp:  # the JKOnet baselines evaluate with their own step during training
        return hp
    return {key: value for key, value in hp.items() if key not in PREDICT_OPTIONS}


def train_runtime(wildcards):
    """Generous wall-time estimate of one training job, in minutes (for cluster schedulers)."""
    hp = config["solvers"][wildcards.solver]
    if "linear" in wildcards.solver:
        return 30
    if "inner_steps" in hp:  # JKOnet baselines: seconds per epoch, not milliseconds
        return 10 + math.ceil(hp["epochs"] * 5 * int(wildcards.n) / 2000 / 60)
    pairs = int(wildcards.n) * config["data"]["n_steps"]
    per_epoch = 2e-6 * pairs * (hp["batch_size"] if wildcards.solver == "jkonet-star" else 1)
    return 10 + math.ceil(2 * hp["epochs"] * per_epoch / 60)
