"""chaosgd: reproduce "Chaotic Dynamics are Intrinsic to Neural Network Training with SGD".

The top-level modules are the stages, what the Snakemake rules run (``python -m
chaosgd.<stage>``, each with a ``main(argv)``): datasets, train, lyapunov, ensembles, fits,
figures, report, claims. Each reads its inputs, calls the library and writes its outputs. The
library is grouped by role: ``planning`` (config, vocabularies, the DAG, job costs; torch-free),
``engine`` (the maths), ``runs`` (the run machinery and files), ``analysis`` (claims and
plots) and ``tools`` (archive, bench).
"""

import os

# Pipeline jobs share the cores of a machine. OpenMP's default spin-waiting made torch's small
# LAPACK calls (QR, eigh) up to 10x slower whenever another job ran beside them; passive
# waiting costs nothing when alone. It must be set before torch loads OpenMP, and a user's
# own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
