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


# ---- helpers of rules/couplings.smk ----

def pairing_population(wildcards):
    """The population a pairing is drawn from: the independent snapshots (rule simulate_independent) for
    ``independent``, else the paired one (rule simulate)."""
    name = "independent_population.npz" if wildcards.pairing == "independent" else "population.npz"
    return f"results/data/{DATASET.format(**dict(wildcards.items()))}/{name}"


# ---- helpers of rules/figures.smk ----

def figure_extra(wildcards):
    """The config slice an experiment's caption needs beyond its grid, solvers and data settings."""
    if wildcards.experiment in ("ablation", "pairing"):
        return config_slice("couplings")
    return {}


# ---- helpers of rules/realdata.smk ----

# Real population time courses: the single-cell RNA experiment of the paper (Sec. 4.4, config section `rna`)
# and the user's own datasets (config section `datasets`). Both run the same stages as the synthetic
# experiments: read -> split (within every snapshot; by particle for paired data; none for pre-split data)
# -> OT couplings + densities -> train -> evaluate. A dataset's `pairing` says whether its rows are paired
# across snapshots (particle ids), `test_path` (or the train_*/test_* directory form) that it comes split.
#
#   results/datasets/<name>/population.npz                    the data as read (snapshots renumbered 0..T)
#   results/datasets/<name>/seed~<s>/{train_couplings,test_population,density}.npz
#   results/datasets/<name>/seed~<s>/solver~<solver>/{model.npz,history.csv,fit.json,metrics.json,*.png}
#   results/tables/datasets/<name>.csv                        every run's metrics (user datasets)
#   results/tables/rna.csv, results/figures/rna.{png,pdf}     the RNA table and figure (paper Fig. 5)
#
# The RNA data is not part of the repository. Where `rna.path` (or `--config rna_path=...`) is null or
# missing, the RNA targets are left out with one message and everything else builds.
import sys
import zipfile
from pathlib import Path

import numpy as np

from jkonetstar.data import RNA_HELP, SPLIT_FILES

REPO_ROOT = Path(workflow.basedir).parent
RNA_DEFAULT_LOCATION = "data/eb_rna_pca5"
REALDATA = "results/datasets/{dataset}"
REALDATA_SEED = f"{REALDATA}/seed~{{seed}}"
REALDATA_RUN = f"{REALDATA_SEED}/solver~{{solver}}"
RNA_OUTPUTS = ["results/tables/rna.csv", "results/figures/rna.png", "results/figures/rna.pdf"]

REALDATA_CODE = {
    "population": [
        "workflow/scripts/dataset_population.py",
        "src/jkonetstar/data.py",
        "src/jkonetstar/io.py",
    ],
    "couplings": [
        "workflow/scripts/dataset_couplings.py",
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
        "workflow/scripts/dataset_evaluate.py",
        "src/jkonetstar/pipeline.py",
        "src/jkonetstar/baselines.py",
        "src/jkonetstar/models.py",
        "src/jkonetstar/features.py",
        "src/jkonetstar/metrics.py",
        "src/jkonetstar/plots.py",
        "src/jkonetstar/io.py",
    ],
    "table": ["workflow/scripts/dataset_table.py", "src/jkonetstar/io.py"],
    "rna_table": ["workflow/scripts/rna_table.py", "src/jkonetstar/io.py"],
    "rna_figure": [
        "workflow/scripts/rna_figure.py",
        "src/jkonetstar/pipeline.py",
        "src/jkonetstar/models.py",
        "src/jkonetstar/figures.py",
        "src/jkonetstar/plots.py",
        "src/jkonetstar/io.py",
    ],
}


def _data_location(path):
    """A configured data path, relative to the repository root unless absolute."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def _is_split_directory(location):
    return location.is_dir() and all((location / name).is_file() for name in SPLIT_FILES)


def _data_files(location, test_location=None):
    """The files a data location stands for (inputs of the reading rule, so that new data reruns it)."""
    if test_location is not None:
        return _data_files(location) + _data_files(test_location)
    if _is_split_directory(location):
        return [str(location / name) for name in SPLIT_FILES]
    if location.is_dir():
        return [str(location / "data.npy"), str(location / "sample_labels.npy")]
    return [str(location)]


def _csv_header(location):
    with open(location) as f:
        return f.readline().strip().split(",")


def _has_particle_ids(location, particle_column):
    """Whether a data file has particle ids (npz array particle, CSV column particle_column), from its header."""
    if location.suffix == ".csv" and location.is_file():
        return particle_column in _csv_header(location)
    if location.suffix == ".npz" and location.is_file():
        with zipfile.ZipFile(location) as archive:
            return "particle.npy" in archive.namelist()
    return False


def _data_dim(location, time_column, n_pcs, particle_column="particle"):
    """The dimension of a data file, read from its header only (to check settings before any job runs)."""
    if _is_split_directory(location):
        return np.load(location / "train_data.npy", mmap_mode="r").shape[1]
    if location.is_dir():
        return np.load(location / "data.npy", mmap_mode="r").shape[1]
    if location.suffix == ".csv":
        return len([c for c in _csv_header(location) if c not in (time_column, particle_column)])
    if location.suffix == ".npz":
        with zipfile.ZipFile(location) as archive:
            names = archive.namelist()
            if "pcs.npy" in names:
                return n_pcs
            for name in ("X.npy", "x.npy"):
                if name in names:
                    with archive.open(name) as f:
                        version = np.lib.format.read_magic(f)
                        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0)
                        shape = read_header(f)[0]
                    return shape[1] if len(shape) == 2 else None
    return None  # an unknown form: load_population names the problem in the job


def _check_real_dataset(where, section, location, test_location=None):
    """Raises WorkflowError naming the setting when a dataset's settings cannot work."""
    if test_location is not None and not test_location.exists():
        raise WorkflowError(f"invalid config setting {where}.test_path: {test_location} not found")
    if test_location is not None and _is_split_directory(location):
        raise WorkflowError(f"invalid config setting {where}.test_path: {location} is split already (train_*.npy, "
                            "test_*.npy); give no test_path")
    if section["pairing"] in ("paired", "shuffled"):
        parts = [location] + ([test_location] if test_location is not None else [])
        missing = [str(p) for p in parts if not _has_particle_ids(p, section["particle_column"])]
        if missing:
            raise WorkflowError(
                f"invalid config setting {where}.pairing: {section['pairing']!r} needs particle ids in {missing[0]} "
                f"(an npz array 'particle' or a CSV column {section['particle_column']!r}); use independent"
            )
    for solver in section["solvers"]:
        if solver not in config["solvers"]:
            raise WorkflowError(
                f"invalid config setting {where}.solvers: solver {solver!r} has no hyper-parameters under "
                f"solvers: (have {sorted(config['solvers'])})"
            )
    for baseline in section.get("baselines", []):
        if baseline not in config["solvers"]:
            raise WorkflowError(
                f"invalid config setting {where}.baselines: baseline {baseline!r} has no hyper-parameters under "
                f"solvers: (have {sorted(config['solvers'])})"
            )
    couplings = section["couplings"]
    if (couplings["method"] == "sinkhorn") != (couplings.get("epsilon") is not None):
        raise WorkflowError(
            f"invalid config setting {where}.couplings.epsilon: give epsilon > 0 exactly when method is sinkhorn"
        )
    linear = [s for s in section["solvers"] if "linear" in s]
    if linear and location.exists():
        dim = _data_dim(location, section["time_column"], section["n_pcs"], section["particle_column"])
        for solver in linear:
            options = {**config["solvers"][solver].get("features", {}), **section["training"].get("features", {})}
            size = (options.get("degree", 4) + 1) ** (dim or 1) - 1 + options.get("rbf_per_dim", 10) ** (dim or 1)
            if dim is not None and size > globals().get("MAX_LINEAR_FEATURES", 5000):
                raise WorkflowError(
                    f"invalid config setting {where}.solvers: linear solver {solver!r} cannot run on {location} "
                    f"(d = {dim}: {size} features, more than {globals().get('MAX_LINEAR_FEATURES', 5000)}); "
                    "use an MLP solver such as jkonet-star-potential"
                )


def _real_dataset(name, where, section, location):
    test_location = _data_location(section["test_path"]) if section.get("test_path") else None
    _check_real_dataset(where, section, location, test_location)
    return {
        "where": where,
        "files": _data_files(location, test_location),
        "settings": section,
        "source": {"location": str(location), "time_column": section["time_column"], "n_pcs": section["n_pcs"],
                   "particle_column": section["particle_column"],
                   "test_location": str(test_location) if test_location is not None else None},
    }


REAL_DATASETS = {}
RNA_SKIPPED = None
if "rna" in config:
    _rna_path = config.get("rna_path") or config["rna"].get("path")
    _rna_location = _data_location(_rna_path) if _rna_path else None
    if _rna_location is None:
        RNA_SKIPPED = "no data configured (rna.path is null)"
    elif not (_rna_location.is_file() or (_rna_location / "data.npy").is_file() or _is_split_directory(_rna_location)):
        RNA_SKIPPED = f"{_rna_location} not found"
    else:
        REAL_DATASETS["rna"] = _real_dataset("rna", "rna", config["rna"], _rna_location)
elif config.get("rna_path"):
    raise WorkflowError("invalid config setting rna_path: it overrides rna.path, but the config has no rna: section")
if RNA_SKIPPED:
    print(
        f"NOTE: single-cell RNA experiment (targets rna, results/tables/rna.csv) skipped: {RNA_SKIPPED}. It needs "
        f"{RNA_HELP}. Put it at {RNA_DEFAULT_LOCATION}/ (git-ignored) or pass --config rna_path=/path/to/it; "
        "every other target still builds.",
        file=sys.stderr,
    )

for _name, _section in config.get("datasets", {}).items():
    if not _section["path"]:
        raise WorkflowError(f"invalid config setting datasets.{_name}.path: give the data file or directory")
    _location = _data_location(_section["path"])
    if not _location.exists():
        raise WorkflowError(f"invalid config setting datasets.{_name}.path: {_location} not found")
    REAL_DATASETS[_name] = _real_dataset(_name, f"datasets.{_name}", _section, _location)


def real_dataset_runs(name):
    """Returns ``[{"dataset", "seed", "solver"}]`` of every run on real dataset ``name``: its JKOnet* solvers on
    ``seeds``, then its JKOnet baselines on ``baseline_seeds`` (default: ``seeds``)."""
    section = REAL_DATASETS[name]["settings"]
    runs = [dict(dataset=name, seed=seed, solver=solver) for seed in section["seeds"] for solver in section["solvers"]]
    baseline_seeds = section.get("baseline_seeds") or section["seeds"]
    return runs + [
        dict(dataset=name, seed=seed, solver=baseline)
        for seed in baseline_seeds
        for baseline in section.get("baselines", [])
    ]


def real_dataset_files(name, filename):
    return [f"{REALDATA_RUN.format(**run)}/{filename}" for run in real_dataset_runs(name)]


def realdata_outputs(which="all"):
    """The final files of the RNA experiment (``which="rna"``), of the user datasets (``"datasets"``) or both."""
    outputs = []
    if which in ("all", "rna") and "rna" in REAL_DATASETS:
        outputs += RNA_OUTPUTS
    if which in ("all", "datasets"):
        for name in REAL_DATASETS:
            if name != "rna":
                outputs.append(f"results/tables/datasets/{name}.csv")
                outputs += real_dataset_files(name, "predictions.png") + real_dataset_files(name, "levels.png")
    return outputs


def realdata_hp(wildcards):
    """Per-job slice: the method's hyper-parameters with the dataset's `training` overrides (and, for a JKOnet
    baseline, its `baseline_training` overrides on top)."""
    section, hp = REAL_DATASETS[wildcards.dataset]["settings"], config["solvers"][wildcards.solver]
    if wildcards.solver in section.get("baselines", []):  # only the training keys a baseline has (no features...)
        overrides = {k: v for k, v in section["training"].items() if k in hp}
        return settings({**hp, **overrides, **section.get("baseline_training", {})})
    # Prediction settings are evaluation settings, read by the dataset_evaluate jobs, never a training input.
    return settings({k: v for k, v in {**hp, **section["training"]}.items() if k not in PREDICT_OPTIONS})


def split_seed(wildcards):
    """The seed of a real dataset's split and mixtures: its `split_seed` (one split for every run), else the run's."""
    fixed = REAL_DATASETS[wildcards.dataset]["settings"].get("split_seed")
    return int(wildcards.seed) if fixed is None else int(fixed)


def _realdata_slice(key):
    return lambda wildcards: settings(REAL_DATASETS[wildcards.dataset]["settings"][key])


REALDATA_CONSTRAINTS = dict(
    dataset="|".join(sorted(REAL_DATASETS, key=len, reverse=True)) or "(?!)",
    seed=r"\d+",
    solver="|".join(sorted({s for d in REAL_DATASETS.values()
                            for s in d["settings"]["solvers"] + d["settings"].get("baselines", [])}, key=len,
                           reverse=True)) or "(?!)",
)


def rna_protocols():
    """Per RNA method, how this reproduction measured it (the source column of the RNA table)."""
    section = config["rna"]
    protocols = {}
    for method in section["solvers"] + section.get("baselines", []):
        baseline = method in section.get("baselines", [])
        protocols[method] = (
            f"60/40 split within each time point (test ratio {section['test_ratio']}; "
            + ("a split per seed" if section.get("split_seed") is None else f"one split, seed {section['split_seed']}")
            + "), one-step-ahead W1 on the "
            f"test split, {realdata_hp(dict_wildcards('rna', solver=method))['epochs']} epochs"
            + ("; training snapshots subsampled at random to the smallest" if baseline else "")
        )
    return protocols


def dict_wildcards(dataset, seed=None, solver=None):
    """Wildcards-like object of the first run of ``dataset`` (for its aggregate rules)."""
    section = REAL_DATASETS[dataset]["settings"]

    class _W:
        pass

    w = _W()
    w.dataset, w.seed, w.solver = dataset, seed or section["seeds"][0], solver or section["solvers"][0]
    return w


def _rna_first(filename):
    w = dict_wildcards("rna")
    return f"{REALDATA_RUN.format(dataset='rna', seed=w.seed, solver=w.solver)}/{filename}"
