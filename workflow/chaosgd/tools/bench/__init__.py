"""Benchmarks of the engine: ``python -m chaosgd.tools.bench <command> ...``."""
