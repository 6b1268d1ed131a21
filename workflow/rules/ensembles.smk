# Ensembles stage: copies of each reference run perturbed along its Lyapunov directions,
# trained in lockstep; their distances to the reference.


rule ensembles_run:
    input:
        code=plan.code_closure("ensembles"),
        data=lambda wildcards: f"results/datasets/{RUNS[wildcards.run].dataset}.pt",
        spectrum="results/lyapunov/{run}/spectrum_final.pt",
        exponents="results/lyapunov/{run}/exponents.parquet",
    output:
        distances="results/ensembles/{run}/distances.parquet",
        members="results/ensembles/{run}/members.parquet",
        info="results/ensembles/{run}/ensemble.json",
    log:
        "logs/ensembles/{run}.log",
    wildcard_constraints:
        run=plan.wildcard_choice(REFERENCES),
    cache: True
    conda:
        CONDA_ENV
    threads: config["ensembles"]["threads"]
    params:
        args=lambda wildcards: plan.train_args(RUNS[wildcards.run]),
        ensembles=plan.ensembles_args(config),
    shell:
        "python -m chaosgd.ensembles {params.args} {params.ensembles} --data {input.data}"
        " --spectrum-file {input.spectrum} --exponents {input.exponents} --threads {threads}"
        " --out-distances {output.distances} --out-members {output.members}"
        " --out-info {output.info} > {log} 2>&1"


rule ensembles_all:
    input:
        expand("results/ensembles/{run}/distances.parquet", run=REFERENCES),
