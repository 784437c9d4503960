# One-step-ahead W1 of a trained run on its test split; synthetic runs also score every prediction step and
# the recovery of the true energies (params truth), real ones draw over the data window (params truth: None).
rule evaluate:
    input:
        model=f"results/runs/{RUN}/model.npz",
        fit=f"results/runs/{RUN}/fit.json",
        test=f"results/data/{COUPLED}/test_population.npz",
        population=coupled_population,
        couplings=f"results/data/{COUPLED}/couplings.json",
        code=CODE["evaluate"],
    output:
        metrics=f"results/runs/{RUN}/metrics.json",
        levels=report(
            f"results/runs/{RUN}/levels.png",
            caption="../report/run.rst",
            category=run_category,
            subcategory=run_subcategory,
            labels=run_labels("level curves"),
        ),
        predictions=report(
            f"results/runs/{RUN}/predictions.png",
            caption="../report/run.rst",
            category=run_category,
            subcategory=run_subcategory,
            labels=run_labels("predictions"),
        ),
    log:
        f"results/logs/evaluate/{RUN}.log",
    benchmark:
        f"results/benchmarks/evaluate/{RUN}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        run=run_descriptors,
        truth=run_truth,
        tau=lambda w: method_hp(w)["tau"],
        plots=plot_settings,
        predict_options=predict_options,
    script:
        "../scripts/evaluate.py"
