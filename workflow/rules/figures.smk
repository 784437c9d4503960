localrules:
    table,
    figure,
    prediction_figure,


# The tidy table of many runs: an experiment's (results/tables/<experiment>.csv) or a real dataset's
# (results/tables/datasets/<name>.csv), with the runs' training histories beside it.
rule table:
    input:
        metrics=lambda w: table_files(w.table, "metrics.json"),
        histories=lambda w: table_files(w.table, "history.csv"),
        couplings=table_couplings,
        code=CODE["table"],
    output:
        table=report(
            "results/tables/{table}.csv",
            caption="../report/table.rst",
            category=table_category,
            subcategory=table_subcategory,
        ),
        history="results/tables/{table}_history.csv",
    log:
        "results/logs/table/{table}.log",
    conda:
        "../../envs/plot.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        run_columns=table_run_columns,
    script:
        "../scripts/table.py"


# One rule for the figure of every synthetic experiment: jkonetstar.jobs.figure picks the experiment's
# caption (jkonetstar.figures.experiment_caption) and plot, workflow/report/figure.rst its report caption.
rule figure:
    input:
        table="results/tables/{experiment}.csv",
        history="results/tables/{experiment}_history.csv",
        code=CODE["figure"],
    output:
        png=report("results/figures/{experiment}.png", caption="../report/figure.rst", category="Figures"),
        pdf="results/figures/{experiment}.pdf",
        summary=report("results/tables/{experiment}_summary.csv", caption="../report/summary.rst", category="Tables"),
    log:
        "results/logs/figure/{experiment}.log",
    conda:
        "../../envs/plot.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        experiment=lambda w: w.experiment,
        grid=lambda w: config_slice("experiments", w.experiment),
        solvers=lambda w: config_slice("solvers", keys=experiment_solvers(w.experiment)),
        data=config_slice("data"),
        extra=figure_extra,
        protocol=config["protocol"],
    script:
        "../scripts/figure.py"


# Exp. 4.1's JKOnet* MLP runs predicted with the explicit and the implicit step (the same trained models).
rule prediction_figure:
    input:
        table="results/tables/exp1.csv",
        code=CODE["prediction"],
    output:
        table=report("results/tables/prediction.csv", caption="../report/table.rst", category="Tables"),
        png=report("results/figures/prediction.png", caption="../report/prediction.rst", category="Figures"),
        pdf="results/figures/prediction.pdf",
    log:
        "results/logs/figure/prediction.log",
    conda:
        "../../envs/plot.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        grid=config_slice("experiments", "exp1") if "exp1" in config["experiments"] else {},
        protocol=config["protocol"],
    script:
        "../scripts/prediction.py"
