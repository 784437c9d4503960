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
    # Prediction settings are evaluation settings (rule dataset_evaluate reads them): never a training input.
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


localrules:
    rna,
    datasets,
    dataset_table,
    rna_table,
    rna_figure,


rule rna:
    input:
        realdata_outputs("rna"),


rule datasets:
    input:
        realdata_outputs("datasets"),


rule dataset_population:
    input:
        data=lambda w: REAL_DATASETS[w.dataset]["files"],
        code=REALDATA_CODE["population"],
    output:
        population=f"{REALDATA}/population.npz",
        summary=f"{REALDATA}/population.json",
    params:
        source=lambda w: settings(REAL_DATASETS[w.dataset]["source"]),
    log:
        f"results/logs/dataset_population/{REALDATA}.log",
    wildcard_constraints:
        **REALDATA_CONSTRAINTS,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/dataset_population.py"


rule dataset_couplings:
    input:
        population=f"{REALDATA}/population.npz",
        code=REALDATA_CODE["couplings"],
    output:
        train=f"{REALDATA_SEED}/train_couplings.npz",
        test=f"{REALDATA_SEED}/test_population.npz",
        density=f"{REALDATA_SEED}/density.npz",
        train_population=f"{REALDATA_SEED}/train_population.npz",
        summary=f"{REALDATA_SEED}/couplings.json",
    params:
        split=lambda w: {"test_ratio": REAL_DATASETS[w.dataset]["settings"]["test_ratio"]},
        split_seed=split_seed,
        pairing=_realdata_slice("pairing"),
        couplings=_realdata_slice("couplings"),
        density=_realdata_slice("density"),
    log:
        f"results/logs/dataset_couplings/{REALDATA_SEED}.log",
    benchmark:
        f"results/benchmarks/dataset_couplings/{REALDATA_SEED}.tsv"
    wildcard_constraints:
        **REALDATA_CONSTRAINTS,
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/ot.yaml"
    script:
        "../scripts/dataset_couplings.py"


rule dataset_train:
    input:
        couplings=f"{REALDATA_SEED}/train_couplings.npz",
        test=f"{REALDATA_SEED}/test_population.npz",
        train_population=f"{REALDATA_SEED}/train_population.npz",
        code=REALDATA_CODE["train"],
    output:
        model=f"{REALDATA_RUN}/model.npz",
        history=f"{REALDATA_RUN}/history.csv",
        fit=f"{REALDATA_RUN}/fit.json",
    params:
        hp=realdata_hp,
    log:
        f"results/logs/dataset_train/{REALDATA_RUN}.log",
    benchmark:
        f"results/benchmarks/dataset_train/{REALDATA_RUN}.tsv"
    wildcard_constraints:
        **REALDATA_CONSTRAINTS,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"


rule dataset_evaluate:
    input:
        model=f"{REALDATA_RUN}/model.npz",
        fit=f"{REALDATA_RUN}/fit.json",
        test=f"{REALDATA_SEED}/test_population.npz",
        population=f"{REALDATA}/population.npz",
        code=REALDATA_CODE["evaluate"],
    output:
        metrics=f"{REALDATA_RUN}/metrics.json",
        predictions=report(
            f"{REALDATA_RUN}/predictions.png",
            caption="../report/datasets.rst",
            category="Real data",
            subcategory="{dataset}",
            labels={"solver": "{solver}", "figure": "predictions", "seed": "{seed}"},
        ),
        levels=report(
            f"{REALDATA_RUN}/levels.png",
            caption="../report/datasets.rst",
            category="Real data",
            subcategory="{dataset}",
            labels={"solver": "{solver}", "figure": "learned potential", "seed": "{seed}"},
        ),
    params:
        tau=lambda w: realdata_hp(w)["tau"],
        plots=_realdata_slice("plots"),
        predict_options=predict_options,
    log:
        f"results/logs/dataset_evaluate/{REALDATA_RUN}.log",
    benchmark:
        f"results/benchmarks/dataset_evaluate/{REALDATA_RUN}.tsv"
    wildcard_constraints:
        **REALDATA_CONSTRAINTS,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/dataset_evaluate.py"


rule dataset_table:
    input:
        metrics=lambda w: real_dataset_files(w.dataset, "metrics.json"),
        code=REALDATA_CODE["table"],
    output:
        table=report(
            "results/tables/datasets/{dataset}.csv",
            caption="../report/datasets.rst",
            category="Real data",
            subcategory="{dataset}",
            labels={"figure": "table"},
        ),
    log:
        "results/logs/dataset_table/{dataset}.log",
    wildcard_constraints:
        **REALDATA_CONSTRAINTS,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/dataset_table.py"


rule rna_table:
    input:
        metrics=lambda w: real_dataset_files("rna", "metrics.json"),
        code=REALDATA_CODE["rna_table"],
    output:
        table=report("results/tables/rna.csv", caption="../report/rna.rst", category="Real data",
                     subcategory="rna", labels={"figure": "table"}),
    params:
        protocol=lambda w: rna_protocols(),
    log:
        "results/logs/rna_table/rna.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/rna_table.py"


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
    return REALDATA_RUN.format(dataset="rna", seed=w.seed, solver=w.solver) + f"/{filename}"


rule rna_figure:
    input:
        population="results/datasets/rna/population.npz",
        test=lambda w: REALDATA_SEED.format(dataset="rna", seed=dict_wildcards("rna").seed) + "/test_population.npz",
        model=lambda w: _rna_first("model.npz"),
        table="results/tables/rna.csv",
        code=REALDATA_CODE["rna_figure"],
    output:
        png=report("results/figures/rna.png", caption="../report/rna.rst", category="Real data",
                   subcategory="rna", labels={"figure": "paper Fig. 5"}),
        pdf="results/figures/rna.pdf",
    params:
        seed=lambda w: dict_wildcards("rna").seed,
        solver=lambda w: dict_wildcards("rna").solver,
        tau=lambda w: realdata_hp(dict_wildcards("rna"))["tau"],
        plots=lambda w: settings(config["rna"]["plots"]),
        time_names=lambda w: config["rna"].get("time_names"),
        predict_options=lambda w: predict_options(dict_wildcards("rna")),
        protocol=lambda w: f"{config['protocol']}; " + rna_protocols()[dict_wildcards("rna").solver],
    log:
        "results/logs/rna_figure/rna.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/rna_figure.py"
