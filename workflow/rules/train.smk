# Training stage: one job per run (SGD or CGD, with per-step Hessian spectrum diagnostics).
# Runs that carry a tangent map are trained by the lyapunov stage instead.


rule train_run:
    input:
        code=rule_inputs("train"),
        data=lambda wildcards: f"results/datasets/{RUNS[wildcards.run].dataset}.pt",
    output:
        steps=STEPS.path(),
        epochs=EPOCHS.path(),
        # the Hessian's eigenvalues at the evaluation steps; no rows without the spectrum
        spectra=SPECTRA.path(),
        final="results/train/{run}/final.pt",
        info="results/train/{run}/run.json",
    log:
        "logs/train/{run}.log",
    wildcard_constraints:
        run=plan.wildcard_choice(set(RUNS) - set(LYAPUNOV_RUNS)),
    cache: True
    conda:
        CONDA_ENV
    threads: config["training"]["threads"]
    resources:
        runtime=lambda wildcards: RESOURCES.runtime("train", wildcards.run),
        mem_mb=lambda wildcards: RESOURCES.mem_mb("train", wildcards.run),
    params:
        args=lambda wildcards: plan.train_args(RUNS[wildcards.run]),
        untracked=lambda wildcards: plan.untracked_args(RUNS[wildcards.run]),
        checkpoint=lambda wildcards: f"results/train/{wildcards.run}/checkpoint.pt",
    # exec: the job's python replaces the shell, so that a SIGTERM sent to every process of
    # the job (SLURM) reaches it with no shell that dies at once around it
    shell:
        "exec python -m chaosgd.train {params.args} --data {input.data} --threads {threads}"
        # settings that cannot change a result (plan.Untracked: no rerun trigger)
        " {params.untracked}"
        " --checkpoint {params.checkpoint} --out-steps {output.steps}"
        " --out-epochs {output.epochs} --out-spectra {output.spectra}"
        " --out-final {output.final} --out-info {output.info}"
        " > {log} 2>&1"


# every output of every run (the Lyapunov runs' from lyapunov_run): a deleted one is remade
rule train_all:
    input:
        expand(rules.train_run.output, run=RUNS),
