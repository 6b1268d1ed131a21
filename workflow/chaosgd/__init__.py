"""chaosgd: reproduce "Chaotic Dynamics are Intrinsic to Neural Network Training with SGD".

Library modules hold the shared maths (models, curvature, cgd, tangent, io); stage modules
(datasets, train, lyapunov, ensembles, fits, figures, claims) are what the Snakemake rules run,
each with a ``main(argv)`` entry point used as ``python -m chaosgd.<stage>``.
"""

__version__ = "0.1.0"
