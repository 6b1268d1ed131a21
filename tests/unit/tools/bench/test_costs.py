"""chaosgd.tools.bench.costs: its closing ``resources: costs:`` block is YAML the config reads.

(A tiny run of the command is tests/unit/planning/test_job_costs.py's: it checks the costs
against the planner's table.)"""

import pytest
import yaml

from chaosgd.tools.bench.costs import yaml_float


@pytest.mark.parametrize("x", [5e-05, 1.2e-5, 4.68e-09, 0.0291, 17.4, 880.0, 1e20, 3e-300])
def test_costs_block_numbers_read_back_as_numbers(x):
    """The printed ``resources: costs:`` block is YAML: every value must read back as a number
    (YAML 1.1 reads ``5e-05`` as text), equal to x at 3 significant digits."""
    value = yaml.safe_load(f"a: {yaml_float(x)}")["a"]
    assert isinstance(value, (int, float)) and not isinstance(value, bool)
    assert value == pytest.approx(x, rel=5e-3)
