# Planning helpers shared by the stage files: the config -> job arguments logic lives in the
# package (chaosgd.plan), where it is tested without Snakemake.
from chaosgd import plan
