"""Perturbations along Lyapunov directions (Fig. 3a, App. C.3): unit directions in their
subspaces, fixed by their seed, the members and their initial parameters."""

from __future__ import annotations

import pytest
import torch

from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.vocab import strategies_for
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


# --- around a top-k Lyapunov run: the k leading exponents and N×k vectors -----------------------


def topk_spectrum(n=40, k=8, n_pos=5, **kw):
    """A ``spectrum_final.pt`` of a top-k map: the k leading exponents and vectors of
    :func:`synthetic_spectrum`'s, ``topk`` = k."""
    spec = synthetic_spectrum(n, n_pos=n_pos, **kw)
    spec.update(
        exponents=spec["exponents"][:k].clone(), vectors=spec["vectors"][:, :k].clone(), topk=k
    )
    return spec


def test_topk_directions_are_the_three_the_leading_vectors_give():
    spec = topk_spectrum()
    v = spec["vectors"]
    dirs = perturbations.directions(spec, torch.Generator().manual_seed(0))
    assert list(dirs) == ["max_chaos", "chaotic", "random"] == list(strategies_for(8))
    for name, d in dirs.items():
        assert d.dtype == F64 and d.shape == (40,)
        assert abs(float(d.norm()) - 1.0) < 1e-14, name
    assert torch.allclose(dirs["max_chaos"], v[:, 0], atol=1e-15, rtol=0)
    # in the span of the 5 chaotic vectors among the 8, a genuine mixture, nothing beyond
    chaotic = v[:, :5]
    d = dirs["chaotic"]
    assert float((d - chaotic @ (chaotic.T @ d)).norm()) < 1e-12
    assert float((v[:, 5:].T @ d).abs().max()) < 1e-12
    assert int(((chaotic.T @ d).abs() > 1e-3).sum()) >= 3
    r = dirs["random"]
    assert float((r - v @ (v.T @ r)).norm()) > 0.5  # of the whole space, not of the k
    members = perturbations.plan_members([0.1, 1.0], strategies=tuple(dirs))
    assert [m.strategy for m in members] == ["reference"] + [s for s in dirs for _ in range(2)]


def test_topk_directions_are_fixed_by_the_seed():
    spec = topk_spectrum()
    a = perturbations.directions(spec, torch.Generator().manual_seed(5))
    b = perturbations.directions(spec, torch.Generator().manual_seed(5))
    c = perturbations.directions(spec, torch.Generator().manual_seed(6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.allclose(a["chaotic"], c["chaotic"])
    assert not torch.allclose(a["random"], c["random"])
    # the draws in order, chaotic then random, nothing for the absent non-chaotic combination
    gen = torch.Generator().manual_seed(5)
    coeff = torch.randn(5, generator=gen, dtype=F64)
    rand = torch.randn(40, generator=gen, dtype=F64)
    # selected by a mask as the module does: a contiguous copy, the same product to the bit
    chaotic = spec["vectors"][:, torch.arange(8) < 5] @ coeff
    assert torch.equal(a["chaotic"], chaotic / torch.linalg.vector_norm(chaotic))
    assert torch.equal(a["random"], rand / torch.linalg.vector_norm(rand))


def test_exact_directions_are_those_of_before_topk():
    """The exact map's five directions, drawn as before top-k maps existed (chaotic,
    non-chaotic, random coefficients in turn): results made before stay bit-identical, and a
    file without ``topk`` or with ``topk`` 0 reads as the exact map."""
    spec = synthetic_spectrum(40, n_pos=6, n_neutral=4, seed=3)
    v, e = spec["vectors"], spec["exponents"]
    gen = torch.Generator().manual_seed(7)
    unit = lambda x: x / torch.linalg.vector_norm(x)  # noqa: E731
    index = torch.arange(40)  # masks, as the module selects: contiguous copies
    chaotic = v[:, index < 6] @ torch.randn(6, generator=gen, dtype=F64)
    nonchaotic = v[:, index >= 10] @ torch.randn(30, generator=gen, dtype=F64)
    before = {
        "max_chaos": unit(v[:, 0]),
        "max_convergence": unit(v[:, -1]),
        "chaotic": unit(chaotic),
        "nonchaotic": unit(nonchaotic),
        "random": unit(torch.randn(40, generator=gen, dtype=F64)),
    }
    assert bool((e[:6] * 1000 > 1e-2).all() and (e[10:] * 1000 < -1e-2).all())
    for topk in (None, 0):
        if topk is not None:
            spec["topk"] = topk
        dirs = perturbations.directions(spec, torch.Generator().manual_seed(7))
        assert list(dirs) == list(before)
        assert all(torch.equal(dirs[k], before[k]) for k in before)
    # the first coordinates as this module gave them before top-k (torch 2, CPU, float64)
    assert float(dirs["nonchaotic"][0]) == pytest.approx(0.19590764210919961, abs=1e-15)
    assert float(dirs["random"][0]) == pytest.approx(0.029269531178828113, abs=1e-15)
    assert len(perturbations.plan_members([0.1])) == 1 + 5


@pytest.mark.parametrize(
    "change, match",
    [
        ({"topk": 5}, "topk 5: exponents"),  # 8 exponents, topk says 5
        ({"topk": 0}, "vectors N×N"),  # N×8 vectors read as the exact map
        ({"topk": -1}, "topk -1"),
    ],
)
def test_a_topk_spectrum_must_be_what_it_says(change, match):
    spec = {**topk_spectrum(), **change}
    with pytest.raises(ValueError, match=match):
        perturbations.directions(spec, torch.Generator().manual_seed(0))


def test_a_topk_spectrum_without_chaotic_exponents_names_the_strategy():
    spec = topk_spectrum(n_pos=0, n_neutral=3)
    with pytest.raises(ValueError, match="strategy 'chaotic'.* among the 8 leading exponents"):
        perturbations.directions(spec, torch.Generator().manual_seed(0))


def test_plan_members_takes_known_distinct_strategies():
    for bad in ((), ("max_chaos", "max_chaos"), ("lyapunov",)):
        with pytest.raises(ValueError, match="strategies"):
            perturbations.plan_members([0.1], strategies=bad)
    # in STRATEGIES order whatever order they come in
    members = perturbations.plan_members([0.1], strategies=("random", "max_chaos"))
    assert [m.strategy for m in members] == ["reference", "max_chaos", "random"]
