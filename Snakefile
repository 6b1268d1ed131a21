# chaosgd: reproduce "Chaotic Dynamics are Intrinsic to Neural Network Training with SGD".
# The folder names are the DAG: workflow/rules/<stage>.smk runs python -m chaosgd.<stage> and
# writes results/<stage>/.
import sys

from snakemake.utils import min_version, update_config

sys.path.insert(0, f"{workflow.basedir}/workflow")
from chaosgd.planning.config import typed_overrides, validate_config

min_version("9.0")


report: "workflow/report/workflow.rst"


# The paper's settings unless the user names config files (--configfile): a user config then
# starts from the schema's defaults (the same settings) instead of being merged into
# config/config.yaml, whose experiment lists it could not otherwise replace.
if not workflow.overwrite_configfiles:

    configfile: f"{workflow.basedir}/config/config.yaml"


# --config resources='{speed: 2}' arrives with every nested value a string (Snakemake reads it
# with YAML's BaseLoader): read those values as a config file would.
update_config(config, typed_overrides(workflow.config_settings.config))
# Fills in the schema defaults; a misspelled key or a wrong type stops here, naming the key.
validate_config(config)

# Rule files live two folders down; conda paths are relative to them.
CONDA_ENV = "../../envs/chaosgd.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/lyapunov.smk"
include: "workflow/rules/ensembles.smk"
include: "workflow/rules/fits.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/claims.smk"


# every result, not only the last stage's: an intermediate file deleted (a job killed while it
# was forced to rerun takes its outputs with it) is remade, though what reads it is up to date
rule all:
    default_target: True
    input:
        rules.datasets_all.input,
        rules.train_all.input,
        rules.lyapunov_all.input,
        rules.ensembles_all.input,
        rules.fits_all.input,
        rules.figures_all.input,
        rules.report_runs.output,
        rules.claims_check.output,
