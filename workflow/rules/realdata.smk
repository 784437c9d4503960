# Real population time courses: the single-cell RNA experiment of the paper (Sec. 4.4, config `rna`) and the
# user's datasets (config `datasets`). Read once (rule read_dataset), they run the same couplings, train,
# evaluate and table rules as the synthetic experiments, under results/{data,runs}/dataset~<name>/seed~<s>/.


localrules:
    rna,
    datasets,
    rna_table,
    rna_figure,
    rna_protocols,


rule rna:
    input:
        realdata_outputs("rna"),


rule datasets:
    input:
        realdata_outputs("datasets"),


rule read_dataset:
    input:
        data=lambda w: REAL_DATASETS[w.dataset]["files"],
        code=CODE["read_dataset"],
    output:
        population=f"results/data/{REAL_DATASET}/population.npz",
        summary=f"results/data/{REAL_DATASET}/population.json",
    log:
        f"results/logs/read_dataset/{REAL_DATASET}.log",
    conda:
        "../../envs/plot.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        dataset=lambda w: w.dataset,
        source=lambda w: settings(REAL_DATASETS[w.dataset]["source"]),
    script:
        "../scripts/read_dataset.py"


rule rna_table:
    input:
        metrics=lambda w: real_dataset_files("rna", "metrics.json"),
        code=CODE["rna_table"],
    output:
        table=report(
            "results/tables/rna.csv",
            caption="../report/rna.rst",
            category="Real data",
            subcategory="rna",
            labels={"figure": "table"},
        ),
    log:
        "results/logs/rna_table/rna.log",
    conda:
        "../../envs/plot.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        protocol=lambda w: rna_protocols(),
    script:
        "../scripts/rna_table.py"


rule rna_figure:
    input:
        population=f"results/data/{REAL_DATASET.format(dataset='rna')}/population.npz",
        test=lambda w: rna_first_data("test_population.npz"),
        model=lambda w: rna_first_run("model.npz"),
        table="results/tables/rna.csv",
        code=CODE["rna_figure"],
    output:
        png=report(
            "results/figures/rna.png",
            caption="../report/rna.rst",
            category="Real data",
            subcategory="rna",
            labels={"figure": "paper Fig. 5"},
        ),
        pdf="results/figures/rna.pdf",
    log:
        "results/logs/rna_figure/rna.log",
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        seed=lambda w: rna_first()["seed"],
        solver=lambda w: rna_first()["solver"],
        tau=lambda w: realdata_hp("rna", rna_first()["solver"])["tau"],
        plots=lambda w: settings(config["rna"]["plots"]),
        time_names=lambda w: config["rna"].get("time_names"),
        predict_options=lambda w: realdata_predict_options("rna", rna_first()["solver"]),
        protocol=lambda w: f"{config['protocol']}; {rna_protocols()[rna_first()['solver']]}",
    script:
        "../scripts/rna_figure.py"


rule rna_protocols:
    input:
        one_step=lambda w: real_dataset_files("rna", "metrics.json"),
        leave_one_out=lambda w: loo_files("rna", "metrics.json"),
        code=CODE["rna_protocols"],
    output:
        table=report(
            "results/tables/rna_protocols.csv",
            caption="../report/rna_protocols.rst",
            category="Real data",
            subcategory="rna",
            labels={"figure": "protocols table"},
        ),
        png=report(
            "results/figures/rna_protocols.png",
            caption="../report/rna_protocols.rst",
            category="Real data",
            subcategory="rna",
            labels={"figure": "protocols"},
        ),
        pdf="results/figures/rna_protocols.pdf",
    log:
        "results/logs/rna_protocols/rna.log",
    conda:
        "../../envs/plot.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        protocol=lambda w: {"one-step": rna_protocols(), "leave-one-out": loo_protocol("rna")},
    script:
        "../scripts/rna_protocols.py"
