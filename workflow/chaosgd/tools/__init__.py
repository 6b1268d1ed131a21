"""Tools beside the workflow: sharing results (archive) and benchmarks (bench)."""
