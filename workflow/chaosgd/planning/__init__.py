"""Planning: the config, its vocabularies and run settings, the DAG of jobs, their costs.

Torch-free, and the only part of the package the Snakefile imports, so that planning a
workflow stays fast.
"""
