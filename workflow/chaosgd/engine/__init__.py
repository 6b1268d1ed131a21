"""The maths engine: the paper's models, Hessian eigenpairs, CGD, the tangent map, exponents.

Pure functions and small classes on tensors; it imports nothing from the run machinery,
analysis, stages or tools.
"""
