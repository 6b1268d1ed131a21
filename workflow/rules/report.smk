# Report stage: what `snakemake --report report.zip` shows beside the figures.
import json

from chaosgd.planning.stale import planned


rule report_runs:
    input:
        code=rule_inputs("report"),
        runs=expand("results/train/{run}/run.json", run=RUNS),
    output:
        runs=report(
            "results/report/runs.tsv",
            caption="../report/runs.rst",
            category="Settings",
        ),
        # what lies under results/ and logs/ that the config no longer makes
        # (chaosgd.planning.stale); the tool chaosgd.tools.stale moves it away with --move
        stale=report(
            "results/report/stale.txt",
            caption="../report/stale.rst",
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
        # what the config makes, per folder: a change reruns the listing, a setting that
        # changes no name (checkpoint cadence, lr, ...) does not
        planned=planned(config, RUNS, LYAPUNOV, REFERENCES, FIGURES),
        # the job plans it again from the config to list what it no longer makes
        config_json=lambda wildcards: plan.Untracked(json.dumps(config, sort_keys=True)),
        config_name=plan.config_name(workflow.overwrite_configfiles, workflow.basedir),
    shell:
        "python -m chaosgd.report runs --results results --runs {params.runs} --out {output.runs}"
        " --config-json {params.config_json:q} --config-name {params.config_name:q}"
        " --out-stale {output.stale} > {log} 2>&1"
