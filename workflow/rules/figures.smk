localrules:
    table,
    figure_exp1,


rule table:
    input:
        metrics=lambda w: run_files(w.experiment, "metrics.json"),
        histories=lambda w: run_files(w.experiment, "history.csv"),
        couplings=lambda w: coupled_files(w.experiment, "couplings.json"),
        extra=lambda w: extra_table_rows(w.experiment),
        code=CODE["table"],
    output:
        table=report(
            "results/tables/{experiment}.csv",
            caption="../report/table.rst",
            category="Tables",
        ),
        history="results/tables/{experiment}_history.csv",
    log:
        "results/logs/table/{experiment}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/table.py"


rule figure_exp1:
    input:
        table="results/tables/exp1.csv",
        history="results/tables/exp1_history.csv",
        code=CODE["figure_exp1"],
    output:
        png=report(
            "results/figures/exp1.png",
            caption="../report/exp1.rst",
            category="Figures",
        ),
        pdf="results/figures/exp1.pdf",
    params:
        grid=lambda w: config_slice("experiments", "exp1"),
        data=config_slice("data"),
        solvers=lambda w: config_slice("solvers", keys=experiment_solvers("exp1")),
    log:
        "results/logs/figure_exp1/exp1.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/figure_exp1.py"
