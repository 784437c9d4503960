# One method on one coupled dataset (synthetic or real); JKOnet* solvers read the couplings, the JKOnet
# baselines the training population.
rule train:
    input:
        couplings=f"results/data/{COUPLED}/train_couplings.npz",
        test=f"results/data/{COUPLED}/test_population.npz",
        train_population=f"results/data/{COUPLED}/train_population.npz",
        code=CODE["train"],
    output:
        model=f"results/runs/{RUN}/model.npz",
        history=f"results/runs/{RUN}/history.csv",
        fit=f"results/runs/{RUN}/fit.json",
    log:
        f"results/logs/train/{RUN}.log",
    benchmark:
        f"results/benchmarks/train/{RUN}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=train_runtime,
    params:
        solver=lambda w: w.solver,
        seed=run_seed,
        hp=method_hp,
    script:
        "../scripts/train.py"
