# Figures stage: the paper's figures, drawn from cached results (never trains).


rule figures_draw:
    input:
        code=rule_inputs("figures"),
        results=lambda wildcards: FIGURES[wildcards.figure].inputs,
    output:
        pdf="results/figures/{figure}.pdf",
        # the numbers drawn, one row per plotted point (panel, series, x, y, lo, hi)
        data="results/figures/{figure}.parquet",
        png=report(
            "results/figures/{figure}.png",
            caption="../report/figure.rst",
            category=lambda wildcards: FIGURES[wildcards.figure].category,
            subcategory=lambda wildcards: FIGURES[wildcards.figure].experiment,
        ),
    log:
        "logs/figures/{figure}.log",
    wildcard_constraints:
        figure=plan.wildcard_choice(FIGURES),
    conda:
        CONDA_ENV
    resources:
        runtime=lambda wildcards: RESOURCES.runtime("figures", wildcards.figure),
        mem_mb=lambda wildcards: RESOURCES.mem_mb("figures", wildcards.figure),
    params:
        caption=lambda wildcards: FIGURES[wildcards.figure].caption,
        kind=lambda wildcards: FIGURES[wildcards.figure].kind,
        name="{figure}",
        runs=lambda wildcards: " ".join(FIGURES[wildcards.figure].runs),
        options=lambda wildcards: " ".join(FIGURES[wildcards.figure].options),
    shell:
        "python -m chaosgd.figures {params.kind} --name {params.name} --results results"
        " --runs {params.runs} {params.options} --out {output.pdf} {output.png}"
        " --data {output.data} > {log} 2>&1"


rule figures_all:
    input:
        expand("results/figures/{figure}.{ext}", figure=FIGURES, ext=["pdf", "png", "parquet"]),
