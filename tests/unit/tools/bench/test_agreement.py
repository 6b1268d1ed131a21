"""chaosgd.tools.bench.agreement: the GPU bench's agreement checks pass on identical results and
fail on a shifted spectrum or rotated eigenvectors."""

import dataclasses
import math

import torch

from chaosgd.engine.curvature import hessian_eigenpairs
from chaosgd.engine.models import build_model, flat_params, hessian_structure, make_loss_fn
from chaosgd.tools.bench.agreement import Check, compare_eigenpairs, max_rel_diff


def test_gpu_bench_agreement_can_fail():
    torch.manual_seed(0)
    model = build_model("mlp", hidden=2)
    x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,))
    loss_fn = make_loss_fn(model, x, y)
    theta = flat_params(model).double()
    eig = hessian_eigenpairs(loss_fn, theta, "lowrank", **hessian_structure(model, x, y))
    grad = torch.func.grad(loss_fn)(theta)
    dense = hessian_eigenpairs(loss_fn, theta, "dense")
    assert all(c.ok for c in compare_eigenpairs(eig, grad, dense, grad, 1e-3, "t"))

    shifted = dataclasses.replace(eig, values=eig.values * (1 + 1e-8))
    checks = compare_eigenpairs(eig, grad, shifted, grad, 1e-3, "t")
    assert [c.ok for c in checks] == [False, True, True, True]  # same vectors, same projections

    # a rotation by 1e-6 between the top and the bottom eigenvector moves the projections
    v = eig.vectors.clone()
    c, s = math.cos(1e-6), math.sin(1e-6)
    v[:, 0], v[:, -1] = (
        c * eig.vectors[:, 0] - s * eig.vectors[:, -1],
        s * eig.vectors[:, 0] + c * eig.vectors[:, -1],
    )
    rotated = dataclasses.replace(eig, vectors=v)
    checks = compare_eigenpairs(eig, grad, rotated, grad, 1e-3, "t")
    assert checks[0].ok and not all(c.ok for c in checks[1:])
    assert not Check("t", "nan", math.nan).ok


def test_max_rel_diff_is_relative_to_the_reference():
    ref = torch.tensor([[1.0, -4.0], [2.0, 0.0]], dtype=torch.float64)
    assert max_rel_diff(ref, ref) == 0.0
    assert max_rel_diff(ref + 0.5, ref) == 0.5 / 4
    # a zero reference: the absolute difference
    assert max_rel_diff(torch.full((2,), 0.25), torch.zeros(2)) == 0.25
