"""Perturbations along Lyapunov directions (Fig. 3a, App. C.3): unit directions in their
subspaces, fixed by their seed, the members and their initial parameters."""

from __future__ import annotations

import pytest
import torch

from chaosgd.planning.run_settings import RunSettings
from chaosgd.runs import perturbations

from support.runs import (
    ENSEMBLE_BASE,
    F64,
    random_dirs,
    synthetic_spectrum,
)

STEPS = 26
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_thread")


def settings(**changes) -> RunSettings:
    return RunSettings(**{**ENSEMBLE_BASE, **changes})


def test_directions_are_unit_and_lie_in_their_subspaces():
    spec = synthetic_spectrum(40, n_pos=6, n_neutral=4)
    v = spec["vectors"]
    dirs = perturbations.directions(spec, torch.Generator().manual_seed(0))
    assert list(dirs) == list(perturbations.STRATEGIES)
    for name, d in dirs.items():
        assert d.dtype == F64 and d.shape == (40,)
        assert abs(float(d.norm()) - 1.0) < 1e-14, name
    assert torch.allclose(dirs["max_chaos"], v[:, 0], atol=1e-15, rtol=0)
    assert torch.allclose(dirs["max_convergence"], v[:, -1], atol=1e-15, rtol=0)
    chaotic, nonchaotic = v[:, :6], v[:, 10:]
    for name, basis, other in (
        ("chaotic", chaotic, v[:, 6:]),
        ("nonchaotic", nonchaotic, v[:, :10]),
    ):
        d = dirs[name]
        residual = d - basis @ (basis.T @ d)
        assert float(residual.norm()) < 1e-12, name
        # nothing along the neutral or opposite vectors, and a genuine mixture of its own
        assert float((other.T @ d).abs().max()) < 1e-12, name
        assert int(((basis.T @ d).abs() > 1e-3).sum()) >= 3, name
    # the random direction is in neither subspace
    r = dirs["random"]
    assert float((r - chaotic @ (chaotic.T @ r)).norm()) > 0.5


def test_directions_are_fixed_by_the_generator_seed():
    spec = synthetic_spectrum(30)
    a = perturbations.directions(spec, torch.Generator().manual_seed(5))
    b = perturbations.directions(spec, torch.Generator().manual_seed(5))
    c = perturbations.directions(spec, torch.Generator().manual_seed(6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(a["max_chaos"], c["max_chaos"])
    for k in ("chaotic", "nonchaotic", "random"):
        assert not torch.allclose(a[k], c[k])


@pytest.mark.parametrize("empty", ["chaotic", "nonchaotic"])
def test_empty_subspace_is_an_error_naming_the_strategy(empty):
    spec = synthetic_spectrum(20)
    exps = spec["exponents"].clone()
    if empty == "chaotic":
        exps = -exps.abs().sort().values  # all ≤ 0, still descending
        exps[:3] = 0.0
    else:
        exps = exps.abs().sort(descending=True).values
    spec["exponents"] = exps
    with pytest.raises(ValueError, match=f"strategy '{empty}'"):
        perturbations.directions(spec, torch.Generator().manual_seed(0))


def test_members_and_initial_perturbations():
    members = perturbations.plan_members([0.1, 1.0])
    assert members[0] == perturbations.Member("reference", 0.0)
    assert len(members) == 1 + 5 * 2
    dirs = random_dirs(50)
    theta0 = torch.randn(50, dtype=F64)
    thetas, d = perturbations.initial_parameters(theta0, dirs, members)
    assert torch.equal(thetas[0], theta0)
    dist = (thetas[1:] - theta0).norm(dim=1)
    eps = torch.tensor([m.eps for m in members[1:]], dtype=F64)
    assert torch.allclose(dist, eps, rtol=1e-14, atol=0)
    assert torch.equal(d[0], dirs[members[1].strategy])
    for bad in ([], [-0.1], [float("nan")], [0.1, 0.1]):
        with pytest.raises(ValueError):
            perturbations.plan_members(bad)


def test_only_sgd_references_can_be_perturbed():
    s = settings(variant="cgd-negative")
    with pytest.raises(ValueError, match="run ref: .*plain SGD"):
        perturbations.check_reference(s, {"theta0": torch.zeros(5350, dtype=F64), "run_id": "ref"})
