rule evaluate:
    input:
        model=f"results/runs/{RUN}/model.npz",
        fit=f"results/runs/{RUN}/fit.json",
        test=f"results/data/{COUPLED}/test_population.npz",
        code=CODE["evaluate"],
    output:
        metrics=f"results/runs/{RUN}/metrics.json",
        levels=report(
            f"results/runs/{RUN}/levels.png",
            caption="../report/levels.rst",
            category="Runs",
            subcategory="{potential}",
            labels={"solver": "{solver}", "figure": "level curves", "seed": "{seed}"},
        ),
        predictions=report(
            f"results/runs/{RUN}/predictions.png",
            caption="../report/predictions.rst",
            category="Runs",
            subcategory="{potential}",
            labels={"solver": "{solver}", "figure": "predictions", "seed": "{seed}"},
        ),
    params:
        tau=lambda w: config["solvers"][w.solver]["tau"],
        dt=config["data"]["dt"],
        plots=config_slice("plots"),
        predict_options=predict_options,
    log:
        f"results/logs/evaluate/{RUN}.log",
    benchmark:
        f"results/benchmarks/evaluate/{RUN}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/evaluate.py"
