"""CGD projections, prune sets, spectrum diagnostics and the CGD optimizer (chaosgd.engine.cgd)."""

import math

import pytest
import torch

from chaosgd.engine import cgd, models
from chaosgd.engine.curvature import hessian_eigenpairs
from chaosgd.engine.eigenpairs import Eigenpairs

LR = 1e-3


pytestmark = pytest.mark.usefixtures("one_thread")


def _quadratic(eig, seed=0):
    """Loss ½ θᵀHθ with H = U diag(eig) Uᵀ for a random orthogonal U; returns (loss_fn, H, U)."""
    gen = torch.Generator().manual_seed(seed)
    n = eig.numel()
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    h = (u * eig) @ u.T
    return (lambda t: 0.5 * t @ (h @ t)), h, u


# one of each kind for lr = 1e-3: negative, null, stable positive, positive chaotic (> 2/lr = 2000)
EIG = torch.tensor(
    [-3.0, -0.5, -1e-4, 0.0, 0.0, 0.0, 1e-3, 0.7, 1.5, 1999.0, 2001.0, 4000.0], dtype=torch.float64
)


def test_theorem_2_1_on_a_diagonal_quadratic():
    """The chaotic set is exactly where one GD step stretches a perturbation (|1 − ηλ| > 1)."""
    d = EIG[torch.randperm(EIG.numel(), generator=torch.Generator().manual_seed(1))]

    def loss_fn(t):
        return 0.5 * (d * t * t).sum()

    theta = torch.linspace(-1, 1, d.numel(), dtype=torch.float64)
    for method in ("dense", "lowrank"):
        ep = hessian_eigenpairs(loss_fn, theta, method, generator=torch.Generator().manual_seed(0))
        mask = cgd.prune_mask(ep.values, LR, "chaotic", ep.null_tol)
        for i in range(ep.values.numel()):
            if abs(float(ep.values[i])) <= ep.null_tol:
                assert not mask[i]
                continue
            v = ep.vectors[:, i]
            eps = 1e-6
            step = lambda t: t - LR * torch.func.grad(loss_fn)(t)  # noqa: E731
            growth = float((step(theta + eps * v) - step(theta)).norm()) / eps
            assert bool(mask[i]) == (growth > 1 + 1e-9), (float(ep.values[i]), growth)
            # local Lyapunov exponent ½ ln (1 − ηλ)²
            assert math.isclose(
                math.log(growth),
                0.5 * math.log((1 - LR * ep.values[i]) ** 2),
                rel_tol=1e-6,
                abs_tol=1e-9,
            )
        counts = cgd.spectrum_diagnostics(torch.ones_like(theta), ep, LR)
        nonzero = d[d != 0]
        assert counts["n_negative"] == int((nonzero < 0).sum())
        assert counts["n_positive"] == int((nonzero > 0).sum())
        assert counts["n_positive_chaotic"] == int((nonzero > 2 / LR).sum())
        assert counts["n_chaotic"] == int(((1 - LR * nonzero).abs() > 1).sum())
        assert counts["rank"] == nonzero.numel()
        assert counts["lambda_min"] == pytest.approx(float(d.min()), rel=1e-12)
        assert counts["lambda_max"] == pytest.approx(float(d.max()), rel=1e-12)


@pytest.fixture(scope="module")
def quad():
    loss_fn, h, u = _quadratic(EIG, seed=2)
    theta = torch.randn(
        EIG.numel(), generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    ep = hessian_eigenpairs(loss_fn, theta, "dense")
    return dict(ep=ep, grad=h @ theta, h=h)


@pytest.mark.parametrize("prune_set", cgd.PRUNE_SETS)
@pytest.mark.parametrize(
    "selection, k", [("all", None), ("top_k", 1), ("top_k", 2), ("random_k", 2)]
)
def test_projection_removes_exactly_the_pruned_components(quad, prune_set, selection, k):
    ep, g = quad["ep"], quad["grad"]
    gen = torch.Generator().manual_seed(0)
    out, idx = cgd.project_gradient(
        g,
        ep.values,
        ep.vectors,
        LR,
        prune_set,
        selection,
        k,
        gen,
        null_tol=ep.null_tol,
        return_indices=True,
    )
    eligible = cgd.prune_mask(ep.values, LR, prune_set, ep.null_tol)
    assert bool(eligible[idx].all())
    assert idx.numel() == (int(eligible.sum()) if k is None else min(k, int(eligible.sum())))
    coeff_in, coeff_out = ep.vectors.T @ g, ep.vectors.T @ out
    pruned = torch.zeros_like(eligible)
    pruned[idx] = True
    assert float(coeff_out[pruned].abs().max()) < 1e-14 * float(g.norm())  # orthogonal
    assert torch.allclose(
        coeff_out[~pruned], coeff_in[~pruned], rtol=0, atol=1e-14 * float(g.norm())
    )
    if selection == "top_k":
        lam = ep.values
        score = (1 - LR * lam) ** 2 if prune_set == "chaotic" else lam.abs()
        rest = score[eligible & ~pruned]
        assert rest.numel() == 0 or float(rest.max()) <= float(score[pruned].min())


def test_top_k_for_chaotic_ranks_by_local_lyapunov_exponent(quad):
    ep = quad["ep"]
    idx = cgd.select_pruned(ep.values, LR, "chaotic", "top_k", 2, null_tol=ep.null_tol)
    # (1 − ηλ)²: λ = 4000 → 9, λ = −3 → 1.006, λ = 2001 → 1.002: top-2 is {4000, −3}
    assert sorted(ep.values[idx].tolist()) == [pytest.approx(-3.0), pytest.approx(4000.0)]
    idx = cgd.select_pruned(ep.values, LR, "positive", "top_k", 2, null_tol=ep.null_tol)
    assert sorted(ep.values[idx].tolist()) == [pytest.approx(2001.0), pytest.approx(4000.0)]


def test_random_k_is_uniform_over_nonzero_eigenpairs_of_the_set(quad):
    ep = quad["ep"]
    eligible = torch.nonzero(cgd.prune_mask(ep.values, LR, "negative", ep.null_tol)).flatten()
    assert eligible.numel() == 3  # −3, −0.5, −1e-4; the three null eigenvalues are excluded
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(ep.values.numel())
    for _ in range(600):
        idx = cgd.select_pruned(ep.values, LR, "negative", "random_k", 1, gen, ep.null_tol)
        counts[idx] += 1
    assert set(torch.nonzero(counts).flatten().tolist()) == set(eligible.tolist())
    assert float(counts[eligible].min()) > 150  # ≈ 200 each
    pair = cgd.select_pruned(ep.values, LR, "negative", "random_k", 2, gen, ep.null_tol)
    assert pair.unique().numel() == 2  # without replacement


def test_noise_replaces_pruned_components(quad):
    ep, g = quad["ep"], quad["grad"]
    kw = dict(null_tol=ep.null_tol, return_indices=True)
    out, idx = cgd.project_gradient(
        g,
        ep.values,
        ep.vectors,
        LR,
        "positive",
        noise=True,
        noise_scale=2.0,
        generator=torch.Generator().manual_seed(1),
        **kw,
    )
    clean = cgd.project_gradient(g, ep.values, ep.vectors, LR, "positive", null_tol=ep.null_tol)
    xi = ep.vectors[:, idx].T @ (out - clean)
    expected = 2.0 * torch.randn(
        idx.numel(), generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    assert torch.allclose(xi, expected, rtol=1e-12, atol=1e-12)
    # the kept components are untouched
    keep = torch.ones(ep.values.numel(), dtype=torch.bool)
    keep[idx] = False
    assert torch.allclose(
        ep.vectors[:, keep].T @ out, ep.vectors[:, keep].T @ g, rtol=0, atol=1e-14 * float(g.norm())
    )


def test_spectrum_diagnostics_matches_brute_force():
    torch.manual_seed(0)
    model = models.build_model("mlp", "sigmoid", hidden=5)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 1, 16, 16, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    loss_fn = models.make_loss_fn(model, x, y)
    theta = models.flat_params(model).double() * 3  # sharper curvature
    g = torch.func.grad(loss_fn)(theta)
    dense = hessian_eigenpairs(loss_fn, theta, "dense")
    low = hessian_eigenpairs(loss_fn, theta, "lowrank", generator=gen)
    lr = 2.0 / float(dense.values.max()) * 1.5  # some positive eigenvalues are chaotic
    dd, dl = cgd.spectrum_diagnostics(g, dense, lr), cgd.spectrum_diagnostics(g, low, lr)
    lam, v = dense.values, dense.vectors
    nz = lam.abs() > dense.null_tol
    c2 = (v.T @ g) ** 2 / (g @ g)
    assert dd["n_positive"] == int((nz & (lam > 0)).sum()) > 0
    assert dd["n_negative"] == int((nz & (lam < 0)).sum()) > 0
    assert dd["n_positive_chaotic"] == int((lam > 2 / lr).sum()) > 0
    assert dd["n_chaotic"] == dd["n_negative"] + dd["n_positive_chaotic"]
    assert dd["grad_frac_positive"] == pytest.approx(float(c2[nz & (lam > 0)].sum()), rel=1e-12)
    assert dd["grad_frac_negative"] == pytest.approx(float(c2[nz & (lam < 0)].sum()), rel=1e-12)
    assert dd["lambda_min"] == pytest.approx(float(lam.min()), rel=1e-12)
    # the reference code's convention: all N eigenvalues, the null ones split evenly
    n = lam.numel()
    null = int((~nz).sum())
    assert dd["ref_n_negative"] == dd["n_negative"] + null / 2
    assert dd["ref_n_positive"] + dd["ref_n_negative"] == n
    cos = (v.T @ g).abs() / g.norm()
    pos_ref = float(cos[nz & (lam > 0)].sum()) / (int((nz & (lam > 0)).sum()) + null / 2)
    assert dd["ref_cos_positive"] == pytest.approx(pos_ref, rel=1e-12)
    assert dd["cos_lambda_max"] == pytest.approx(float(cos[int(lam.argmax())]), rel=1e-12)
    assert dd["cos_lambda_min"] == pytest.approx(float(cos[int(lam.argmin())]), rel=1e-12)
    for key in dd:
        if key.startswith("n_") or key == "rank":
            assert dd[key] == dl[key], key
        else:
            assert dl[key] == pytest.approx(dd[key], rel=1e-9, abs=1e-12), key


def _train(opt_factory, steps, eigenpairs_fn=None, seed=0, hidden=6):
    torch.manual_seed(seed)
    model = models.build_model("mlp", hidden=hidden)
    gen = torch.Generator().manual_seed(seed + 1)
    x, y = torch.randn(32, 1, 16, 16, generator=gen), torch.randint(0, 10, (32,), generator=gen)
    opt = opt_factory(model.parameters())
    for t in range(steps):
        idx = torch.arange(8) + 8 * (t % 4)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        if isinstance(opt, cgd.CGD):
            ep = eigenpairs_fn(model, x[idx], y[idx]) if eigenpairs_fn else None
            opt.step(ep)
        else:
            opt.step()
    return models.flat_params(model)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_cgd_with_nothing_to_prune_is_sgd_bit_for_bit(momentum):
    sgd = _train(lambda p: torch.optim.SGD(p, lr=0.05, momentum=momentum), 12)
    for kw in (dict(prune_start=100), dict(prune_set=None)):  # onset never reached / no set
        out = _train(lambda p: cgd.CGD(p, lr=0.05, momentum=momentum, **kw), 12)
        assert torch.equal(out, sgd), kw

    # pruning active, but the eigenpairs hold no negative eigenvalue: an empty prune set
    n = 256 * 6 + 6 + 6 * 10 + 10
    basis, _ = torch.linalg.qr(
        torch.randn(n, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    )
    positive = Eigenpairs(
        torch.linspace(0.1, 5.0, 40, dtype=torch.float64), basis, 40, "lowrank", 1e-9
    )
    out = _train(
        lambda p: cgd.CGD(p, lr=0.05, momentum=momentum, prune_set="negative"),
        12,
        lambda *_: positive,
    )
    assert torch.equal(out, sgd)
    # ... while pruning the positive ones does change the trajectory
    out = _train(
        lambda p: cgd.CGD(p, lr=0.05, momentum=momentum, prune_set="positive"),
        12,
        lambda *_: positive,
    )
    assert not torch.equal(out, sgd)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_cgd_step_is_sgd_on_the_projected_gradient(momentum):
    """From prune_start on, parameters follow SGD/momentum driven by g̃ = g − V_p V_pᵀ g."""
    onset, steps, lr, hidden = 2, 5, 0.05, 3

    def eigenpairs_fn(model, x, y):
        return hessian_eigenpairs(
            models.make_loss_fn(model, x, y),
            models.flat_params(model),
            "lowrank",
            generator=torch.Generator().manual_seed(0),
        )

    out = _train(
        lambda p: cgd.CGD(p, lr=lr, momentum=momentum, prune_set="chaotic", prune_start=onset),
        steps,
        eigenpairs_fn,
        hidden=hidden,
    )
    sgd = _train(lambda p: torch.optim.SGD(p, lr=lr, momentum=momentum), steps, hidden=hidden)
    assert not torch.allclose(out, sgd, rtol=0, atol=1e-6)  # pruning changed the trajectory

    # reference: the same recursion written out on flat vectors
    torch.manual_seed(0)
    model = models.build_model("mlp", hidden=hidden)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 1, 16, 16, generator=gen), torch.randint(0, 10, (32,), generator=gen)
    theta, buf = models.flat_params(model), None
    for t in range(steps):
        idx = torch.arange(8) + 8 * (t % 4)
        loss_fn = models.make_loss_fn(model, x[idx], y[idx])
        g = torch.func.grad(loss_fn)(theta)
        if t >= onset:
            ep = hessian_eigenpairs(
                loss_fn, theta, "lowrank", generator=torch.Generator().manual_seed(0)
            )
            vp = ep.vectors[:, cgd.prune_mask(ep.values, lr, "chaotic", ep.null_tol)]
            assert vp.shape[1] > 0
            g = (g.double() - vp @ (vp.T @ g.double())).float()
        buf = g.clone() if buf is None else momentum * buf + g
        theta = theta - lr * (buf if momentum else g)
        models.assign_flat_params(model, theta)
    assert torch.allclose(out, theta, rtol=0, atol=1e-6)


def test_cgd_records_pruned_indices_and_needs_eigenpairs():
    torch.manual_seed(0)
    model = models.build_model("mlp", hidden=3)
    x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,))
    opt = cgd.CGD(model.parameters(), lr=0.1, prune_set="positive", selection="top_k", k=3)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    with pytest.raises(ValueError, match="eigenpairs"):
        opt.step()
    ep = hessian_eigenpairs(models.make_loss_fn(model, x, y), models.flat_params(model), "dense")
    opt.step(ep)
    assert opt.last_pruned.numel() == 3 and bool((ep.values[opt.last_pruned] > 0).all())
    assert opt.steps_taken == 1
    state = opt.state_dict()
    fresh = cgd.CGD(model.parameters(), lr=0.1, prune_set="positive", selection="top_k", k=3)
    fresh.load_state_dict(state)
    assert fresh.steps_taken == 1


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(prune_set="zero"), "prune_set"),
        (dict(prune_set="chaotic", selection="best"), "selection"),
        (dict(prune_set="chaotic", selection="top_k"), "k"),
        (dict(prune_set="chaotic", selection="random_k"), "k"),
        (dict(prune_set="chaotic", selection="top_k", k=0), "k"),
        (dict(prune_set="chaotic", selection="all", k=3), "k"),
        (dict(prune_set="chaotic", lr=-1.0), "lr"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(quad, kwargs, word):
    ep, g = quad["ep"], quad["grad"]
    args = {"lr": LR, **kwargs}
    with pytest.raises(ValueError, match=word):
        cgd.project_gradient(g, ep.values, ep.vectors, **args)
    params = [torch.zeros(3, requires_grad=True)]
    with pytest.raises(ValueError, match=word):
        cgd.CGD(params, **args)


def test_non_finite_eigenvalues_are_rejected(quad):
    ep, g = quad["ep"], quad["grad"]
    bad = ep.values.clone()
    bad[0] = float("nan")
    with pytest.raises(ValueError, match="values"):
        cgd.project_gradient(g, bad, ep.vectors, LR, "chaotic")
    broken = Eigenpairs(bad, ep.vectors, ep.rank, "dense", ep.null_tol)
    with pytest.raises(ValueError, match="values"):
        cgd.spectrum_diagnostics(g, broken, LR)
