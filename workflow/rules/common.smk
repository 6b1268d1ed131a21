# Planning helpers shared by the stage files: the config -> job arguments logic lives in the
# package (chaosgd.planning.plan), where it is tested without Snakemake.
from chaosgd.planning import plan
from chaosgd.planning.code_inputs import rule_inputs
from chaosgd.planning.stale import refuse_other_settings
from chaosgd.planning.tables import (
    BOUNDS,
    DISTANCES,
    EPOCHS,
    EXPONENTS,
    FITS,
    LAMBDA1,
    MEMBERS,
    SPECTRA,
    STEPS,
    SUBSPACES,
)
from chaosgd.planning.vocab import DATASETS

# every training run of the configured experiments (run id -> settings), each experiment's runs,
# and the runs that carry a tangent map, by experiment (trained by the lyapunov stage, with the
# spectrum forced on)
RUNS, GROUPS, LYAPUNOV = plan.plan_runs(config)
# Snakemake reruns a run whose settings changed only where it has its own record of making it:
# one that came from elsewhere (an imported archive, a copied results/) made with other settings
# would pass for the config's. Stop here, naming them. The main process checks; the jobs it
# starts read this file again and need not.
if not (workflow.remote_exec or workflow.subprocess_exec):
    refuse_other_settings(
        config,
        RUNS,
        LYAPUNOV,
        plan.config_name(workflow.overwrite_configfiles, workflow.basedir),
        overrides=bool(workflow.config_settings.config),
    )
# all runs that carry a tangent map
LYAPUNOV_RUNS = sorted({run for runs in LYAPUNOV.values() for run in runs})
# the references of the perturbed ensembles (every Lyapunov run of plain SGD) and their labels
REFERENCES = plan.ensemble_references(config, RUNS, LYAPUNOV)
# every figure, by name
FIGURES = plan.figures(RUNS, GROUPS, LYAPUNOV, REFERENCES, config["ensembles"])
# each job's runtime (minutes) and mem_mb, from its size: what a SLURM job asks for
RESOURCES = plan.job_resources(config, RUNS, LYAPUNOV, REFERENCES, FIGURES)
