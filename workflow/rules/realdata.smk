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


rule rna_figure:
    input:
        population="results/datasets/rna/population.npz",
        test=lambda w: f"{REALDATA_SEED.format(dataset='rna', seed=dict_wildcards('rna').seed)}/test_population.npz",
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
        protocol=lambda w: f"{config['protocol']}; {rna_protocols()[dict_wildcards('rna').solver]}",
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
