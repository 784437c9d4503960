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
    params:
        hp=solver_hp,
    log:
        f"results/logs/train/{RUN}.log",
    benchmark:
        f"results/benchmarks/train/{RUN}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=train_runtime,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"
