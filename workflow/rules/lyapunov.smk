# Lyapunov stage: trains the selected runs with their tangent map (writing their training
# outputs too, so their per-step Hessians are computed once) and reads out the spectra.


rule lyapunov_run:
    input:
        code=rule_inputs("lyapunov"),
        data=lambda wildcards: f"results/datasets/{RUNS[wildcards.run].dataset}.pt",
    output:
        steps=STEPS.path(),
        epochs=EPOCHS.path(),
        # the Hessian's eigenvalues at the evaluation steps; no rows without the spectrum
        spectra=SPECTRA.path(),
        final="results/train/{run}/final.pt",
        info="results/train/{run}/run.json",
        exponents=EXPONENTS.path(),
        # λ1 at every step (λN only at the readouts in exponents)
        lambda1=LAMBDA1.path(),
        subspaces=SUBSPACES.path(),
        spectrum="results/lyapunov/{run}/spectrum_final.pt",
    log:
        "logs/lyapunov/{run}.log",
    wildcard_constraints:
        run=plan.wildcard_choice(LYAPUNOV_RUNS),
    cache: True
    # the longest jobs, and the ensembles wait for them: start them first
    priority: 10
    conda:
        CONDA_ENV
    threads: config["lyapunov"]["threads"]
    resources:
        runtime=lambda wildcards: RESOURCES.runtime("lyapunov", wildcards.run),
        mem_mb=lambda wildcards: RESOURCES.mem_mb("lyapunov", wildcards.run),
    params:
        args=lambda wildcards: plan.train_args(RUNS[wildcards.run]),
        untracked=lambda wildcards: plan.untracked_args(RUNS[wildcards.run]),
        lyapunov=plan.lyapunov_args(config),
        checkpoint=lambda wildcards: f"results/lyapunov/{wildcards.run}/checkpoint.pt",
    # exec: the job's python replaces the shell, so that a SIGTERM sent to every process of
    # the job (SLURM) reaches it with no shell that dies at once around it
    shell:
        "exec python -m chaosgd.lyapunov {params.args} {params.lyapunov} --data {input.data}"
        # settings that cannot change a result (plan.Untracked: no rerun trigger)
        " {params.untracked}"
        " --threads {threads} --checkpoint {params.checkpoint}"
        " --out-steps {output.steps} --out-epochs {output.epochs} --out-spectra {output.spectra}"
        " --out-final {output.final} --out-info {output.info} --out-exponents {output.exponents}"
        " --out-lambda1 {output.lambda1} --out-subspaces {output.subspaces} --out-spectrum {output.spectrum} > {log} 2>&1"


rule lyapunov_all:
    input:
        expand(rules.lyapunov_run.output, run=LYAPUNOV_RUNS),
