# Ensembles stage: copies of each reference run perturbed along its Lyapunov directions,
# trained in lockstep; their distances to the reference.


rule ensembles_run:
    input:
        code=rule_inputs("ensembles"),
        data=lambda wildcards: f"results/datasets/{RUNS[wildcards.run].dataset}.pt",
        spectrum="results/lyapunov/{run}/spectrum_final.pt",
        exponents=EXPONENTS.path(),
    output:
        distances=DISTANCES.path(),
        members=MEMBERS.path(),
        info="results/ensembles/{run}/ensemble.json",
    log:
        "logs/ensembles/{run}.log",
    wildcard_constraints:
        run=plan.wildcard_choice(REFERENCES),
    cache: True
    conda:
        CONDA_ENV
    threads: config["ensembles"]["threads"]
    resources:
        runtime=lambda wildcards: RESOURCES.runtime("ensembles", wildcards.run),
        mem_mb=lambda wildcards: RESOURCES.mem_mb("ensembles", wildcards.run),
    params:
        args=lambda wildcards: plan.train_args(RUNS[wildcards.run]),
        untracked=lambda wildcards: plan.untracked_args(RUNS[wildcards.run]),
        ensembles=plan.ensembles_args(config),
        checkpoint=lambda wildcards: f"results/ensembles/{wildcards.run}/checkpoint.pt",
    # exec: the job's python replaces the shell, so that a SIGTERM sent to every process of
    # the job (SLURM) reaches it with no shell that dies at once around it
    shell:
        "exec python -m chaosgd.ensembles {params.args} {params.ensembles} --data {input.data}"
        # settings that cannot change a result (plan.Untracked: no rerun trigger)
        " {params.untracked}"
        " --spectrum-file {input.spectrum} --exponents {input.exponents} --threads {threads}"
        " --checkpoint {params.checkpoint}"
        " --out-distances {output.distances} --out-members {output.members}"
        " --out-info {output.info} > {log} 2>&1"


rule ensembles_all:
    input:
        expand(rules.ensembles_run.output, run=REFERENCES),
