# Report stage: what `snakemake --report report.zip` shows beside the figures.


rule report_runs:
    input:
        code=code_closure("report"),
        runs=expand("results/train/{run}/run.json", run=RUNS),
    output:
        report(
            "results/report/runs.tsv",
            caption="../report/runs.rst",
            category="Settings",
        ),
    log:
        "logs/report/runs.log",
    conda:
        CONDA_ENV
    resources:
        runtime=RESOURCES.runtime("report"),
        mem_mb=RESOURCES.mem_mb("report"),
    params:
        runs=" ".join(RUNS),
    shell:
        "python -m chaosgd.report runs --results results --runs {params.runs} --out {output}"
        " > {log} 2>&1"
