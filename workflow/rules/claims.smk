# Claims stage: each claim of the paper, measured on this workflow's results, with a verdict.


rule claims_check:
    input:
        code=rule_inputs("claims"),
        results=plan.claims_inputs(RUNS, LYAPUNOV, REFERENCES),
        # App. C.2's subspaces (claim 9) and App. C.3's members (claim 10)
        subspaces=expand(SUBSPACES.path(), run=LYAPUNOV_RUNS),
        members=expand(MEMBERS.path(), run=REFERENCES),
    output:
        table="results/claims/claims.parquet",
        markdown="results/claims/claims.md",
        html=report(
            "results/claims/claims.html",
            caption="../report/claims.rst",
            category="Claims",
        ),
    log:
        "logs/claims/claims.log",
    conda:
        CONDA_ENV
    resources:
        runtime=RESOURCES.runtime("claims"),
        mem_mb=RESOURCES.mem_mb("claims"),
    params:
        args=plan.claims_args(GROUPS, LYAPUNOV, REFERENCES, config),
        config_name=plan.config_name(workflow.overwrite_configfiles, workflow.basedir),
        neutral_tol=config["lyapunov"]["neutral_tol"],
    shell:
        "python -m chaosgd.claims --results results {params.args}"
        " --neutral-tol {params.neutral_tol} --config-name {params.config_name:q}"
        " --out-table {output.table} --out-markdown {output.markdown} --out-html {output.html} > {log} 2>&1"
