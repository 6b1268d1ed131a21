# Planning helpers shared by the stage files: the config -> job arguments logic lives in the
# package (chaosgd.plan), where it is tested without Snakemake.
import os

from chaosgd import plan

# every training run of the configured experiments, and each experiment's runs
RUNS, GROUPS = plan.expand_runs(config)
# the runs that carry a tangent map, by experiment (trained by the lyapunov stage, with the
# spectrum forced on), and all of them
RUNS, LYAPUNOV = plan.lyapunov_runs(config, RUNS, GROUPS)
LYAPUNOV_RUNS = sorted({run for runs in LYAPUNOV.values() for run in runs})
# the references of the perturbed ensembles (every Lyapunov run of plain SGD) and their labels
REFERENCES = plan.ensemble_references(config, RUNS, LYAPUNOV)
# every figure, by name
FIGURES = plan.figures(RUNS, GROUPS, LYAPUNOV, REFERENCES, config["ensembles"])
