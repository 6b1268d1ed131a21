"""chaosgd: reproduce "Chaotic Dynamics are Intrinsic to Neural Network Training with SGD".

Library modules hold the shared maths (models, curvature, cgd, tangent, io); stage modules
(datasets, train, lyapunov, ensembles, fits, figures, claims) are what the Snakemake rules run,
each with a ``main(argv)`` entry point used as ``python -m chaosgd.<stage>``.
"""

import os

# Pipeline jobs share the cores of a machine. OpenMP's default spin-waiting made torch's small
# LAPACK calls (QR, eigh) up to 10x slower whenever another job ran beside them; passive
# waiting costs nothing when alone. It must be set before torch loads OpenMP, and a user's
# own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
