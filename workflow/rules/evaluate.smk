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


# Real-data runs only (realdata_outputs): the learnt V and drift -grad V at every cell of the dataset, as AnnData
# (.h5ad), a tidy CSV and a picture of V over the first two coordinates with the cells coloured by time.
rule energy:
    input:
        model=f"results/runs/{RUN}/model.npz",
        fit=f"results/runs/{RUN}/fit.json",
        test=f"results/data/{COUPLED}/test_population.npz",
        population=coupled_population,
        code=CODE["energy"],
    output:
        h5ad=f"results/runs/{RUN}/energy.h5ad",
        csv=f"results/runs/{RUN}/energy.csv",
        png=report(
            f"results/runs/{RUN}/energy.png",
            caption="../report/run.rst",
            category=run_category,
            subcategory=run_subcategory,
            labels=run_labels("energy"),
        ),
    log:
        f"results/logs/energy/{RUN}.log",
    benchmark:
        f"results/benchmarks/energy/{RUN}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        run=run_descriptors,
        tau=lambda w: method_hp(w)["tau"],
    script:
        "../scripts/energy.py"
