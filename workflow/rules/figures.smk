# Figures stage: the paper's figures, drawn from cached results (never trains).


rule figures_draw:
    input:
        code=f"{CODE}/figures.py",
        results=lambda wildcards: FIGURES[wildcards.figure].inputs,
    output:
        pdf="results/figures/{figure}.pdf",
        png="results/figures/{figure}.png",
    log:
        "logs/figures/{figure}.log",
    wildcard_constraints:
        figure=plan.wildcard_choice(FIGURES),
    conda:
        CONDA_ENV
    params:
        kind=lambda wildcards: FIGURES[wildcards.figure].kind,
        name="{figure}",
        runs=lambda wildcards: " ".join(FIGURES[wildcards.figure].runs),
    shell:
        "python -m chaosgd.figures {params.kind} --name {params.name} --results results"
        " --runs {params.runs} --out {output.pdf} {output.png} > {log} 2>&1"


rule figures_all:
    input:
        expand("results/figures/{figure}.{ext}", figure=FIGURES, ext=["pdf", "png"]),
