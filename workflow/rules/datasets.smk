# Datasets stage: obtain, verify, resize to 16x16 and normalize each configured dataset.


rule datasets_prepare:
    input:
        code=rule_inputs("datasets"),
    output:
        data="results/datasets/{dataset}.pt",
        manifest="results/datasets/{dataset}.json",
    log:
        "logs/datasets/{dataset}.log",
    wildcard_constraints:
        dataset=plan.wildcard_choice(DATASETS),
    conda:
        CONDA_ENV
    resources:
        runtime=lambda wildcards: RESOURCES.runtime("datasets", wildcards.dataset),
        mem_mb=lambda wildcards: RESOURCES.mem_mb("datasets", wildcards.dataset),
    params:
        name="{dataset}",
        args=lambda wildcards: plan.datasets_args(config, wildcards.dataset),
        sources=lambda wildcards: plan.datasets_sources(config, wildcards.dataset),
    shell:
        "python -m chaosgd.datasets {params.name} {params.args} {params.sources}"
        " --out {output.data} --manifest {output.manifest} > {log} 2>&1"


rule datasets_all:
    input:
        expand("results/datasets/{dataset}.{ext}", dataset=config["datasets"], ext=["pt", "json"]),
