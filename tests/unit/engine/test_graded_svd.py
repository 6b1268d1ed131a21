"""Tests of chaosgd.engine.graded_svd: the divide-and-conquer readout against the Jacobi SVD on
graded factors and a training run, the fallbacks when it loses precision, and the fold's
triangular product."""

import math

import numpy as np
import pytest
import torch

from chaosgd.engine.tangent_map import TangentMap

from support.engine import single_thread

F64 = torch.float64

# -------------------------------------------------- divide-and-conquer readout vs the Jacobi SVD


def _graded_map(n, log_range, shape, seed):
    """A map holding a realistic graded factor, its row scales stretched to span log_range nats.

    Low-rank SGD steps as in training: ``"tails"`` has a weakly touched bulk (exponents near 0) and
    a few persistent, strongly curved directions of both signs, as a long MLP run; ``"spread"``
    touches every direction at widely varying rates, so the bulk is wide and dense (for the windows
    of the fast readout, the costly case). Stretching s (and ln|R_ii| with it) keeps B, the
    directions, and makes the grading as strong as wanted.
    """
    g = torch.Generator().manual_seed(seed)
    k, r = (25, 10) if shape == "tails" else (0, 12)
    U, _ = torch.linalg.qr(torch.randn(n, max(k, 1), dtype=F64, generator=g))
    rate = torch.randn(k, dtype=F64, generator=g)
    tm = TangentMap(n)
    with single_thread():
        for _ in range(120):
            U, _ = torch.linalg.qr(U + 0.05 * torch.randn(U.shape, dtype=F64, generator=g) / n**0.5)
            V, _ = torch.linalg.qr(
                torch.cat([U[:, :k], torch.randn(n, r, dtype=F64, generator=g)], dim=1)
            )
            bulk = 0.02 if shape == "tails" else 1.5
            x = torch.cat([rate + 0.3 * torch.randn(k, dtype=F64, generator=g),
                           bulk * torch.randn(r, dtype=F64, generator=g)])  # fmt: skip
            sign = torch.where(torch.rand(k + r, dtype=F64, generator=g) < 0.2, -1.0, 1.0)
            tm.step_sgd(1.0, 1.0 - sign * torch.exp(x), V)
        tm.reorthonormalize()
    sd = tm.state_dict()
    stretch = log_range / float(sd["s"].max() - sd["s"].min())
    sd["log_diag"] = sd["log_diag"] + (stretch - 1.0) * sd["s"]  # ln|R_ii| = s_i + ln|B_ii|
    sd["s"] = stretch * sd["s"]
    out = TangentMap(n)
    out.load_state_dict(sd)
    return out


def _cut(logsig, lo, hi):
    """A threshold in the widest gap of the values within [lo, hi] (nats), and the gap."""
    pts = np.sort(np.concatenate([[lo, hi], logsig[(logsig > lo) & (logsig < hi)]]))
    i = int(np.argmax(np.diff(pts)))
    return 0.5 * (pts[i] + pts[i + 1]), float(pts[i + 1] - pts[i])


def _assert_readouts_agree(fast, ref, tol=1e-6, near=(1.0, -1.0)):
    """Every ln σ_i within ``tol`` nats of the reference, and the chaotic and non-chaotic
    subspaces (exponents above / below a threshold in a gap of ln σ near ``near``, nats) within
    ``tol`` (largest principal angle, sin θ = ‖V_refᵀ⊥ V‖₂, which keeps full precision)."""
    ls, ls_ref = fast.exponents * fast.t, ref.exponents * ref.t
    assert np.abs(ls - ls_ref).max() <= tol, "ln σ"
    for c, above in zip(near, (True, False)):
        lo, hi = sorted((0.5 * c, 2.0 * c))
        cut, gap = _cut(ls_ref, lo, hi)
        assert gap > 1e-4
        inside, inside_ref = (ls > cut, ls_ref > cut) if above else (ls < cut, ls_ref < cut)
        assert inside.sum() == inside_ref.sum(), "subspace dimension"
        assert 0 < inside.sum() < ls.size
        sin = np.linalg.norm(ref.vectors[:, ~inside_ref].T @ fast.vectors[:, inside], 2)
        assert sin <= tol, f"{'chaotic' if above else 'non-chaotic'} subspace: sin θ = {sin:.1e}"


@pytest.mark.parametrize(
    "shape, log_range, n",
    [
        ("tails", 50.0, 400),
        ("tails", 500.0, 400),  # one float64 window, many sub-windows
        ("tails", 1500.0, 300),  # three float64 windows
        ("spread", 50.0, 300),
        ("spread", 500.0, 300),
        ("spread", 1500.0, 300),
    ],
)
def test_fast_readout_equals_jacobi_on_graded_factors(shape, log_range, n):
    tm = _graded_map(n, log_range, shape, seed=11)
    fast, ref = tm.readout(), tm.readout(method="jacobi")
    assert fast.solver == "dc" and ref.solver == "jacobi"
    assert fast.method == ref.method and fast.windows == ref.windows
    assert fast.method == ("svd_deflated" if log_range > 600 else "svd")
    assert fast.log_range > 0.9 * log_range
    assert fast.orthogonality_loss < 1e-9
    _assert_readouts_agree(fast, ref)


def test_fast_readout_of_a_nearly_isometric_map_uses_the_gram_matrix(monkeypatch):
    """A few small steps, as early in training: the values span well under _DC_GRAM nats, so
    one eigendecomposition of the Gram matrix reads them out (to ~κ² ε)."""
    from chaosgd.engine import graded_svd

    n = 300
    g = torch.Generator().manual_seed(9)
    tm = TangentMap(n)
    with single_thread():
        for _ in range(5):
            V, _ = torch.linalg.qr(torch.randn(n, 40, dtype=F64, generator=g))
            tm.step_sgd(0.05, torch.randn(40, dtype=F64, generator=g) * 4.0, V)
    calls = []
    gram = graded_svd._gram_svd
    monkeypatch.setattr(graded_svd, "_gram_svd", lambda A: calls.append(A.shape) or gram(A))
    fast, ref = tm.readout(), tm.readout(method="jacobi")
    assert calls == [(n, n)] and fast.solver == "dc" and fast.log_range < 2.0
    assert fast.orthogonality_loss < 1e-12
    _assert_readouts_agree(fast, ref, tol=1e-10, near=(0.1, -0.1))


def test_fast_readout_equals_jacobi_on_a_training_run():
    """A real (tiny) MLP trained by minibatch SGD, the tangent map from the exact Hessians."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 9), torch.nn.Tanh(), torch.nn.Linear(9, 4))
    model = model.double()
    params = {k: v.detach() for k, v in model.named_parameters()}
    names, shapes = list(params), [v.shape for v in params.values()]
    theta = torch.cat([v.reshape(-1) for v in params.values()])
    n = theta.numel()
    x = torch.randn(64, 12, dtype=F64)
    y = torch.randint(0, 4, (64,))
    lr = 0.2  # 1 − ηλ stays away from 0: nearly singular steps make B too ill-conditioned

    def loss(flat, xb, yb):
        chunks = torch.split(flat, [math.prod(s) for s in shapes])
        p = {k: c.reshape(s) for k, c, s in zip(names, chunks, shapes)}
        return torch.nn.functional.cross_entropy(torch.func.functional_call(model, p, (xb,)), yb)

    tm = TangentMap(n)
    with single_thread():
        for step in range(200):
            idx = torch.arange(8 * (step % 8), 8 * (step % 8 + 1))
            H = torch.func.hessian(loss)(theta, x[idx], y[idx])
            lam, V = torch.linalg.eigh(0.5 * (H + H.T))
            tm.step_sgd(lr, lam, V)
            theta = theta - lr * torch.func.grad(loss)(theta, x[idx], y[idx])
    fast, ref = tm.readout(), tm.readout(method="jacobi")
    assert fast.solver == "dc" and fast.log_range > 30.0
    _assert_readouts_agree(fast, ref)


def test_plain_gesdd_fails_the_comparison_and_the_readout_falls_back(monkeypatch):
    """Without the preconditioning and the windows, gesdd resolves values only to ε·σ_max: the
    comparison above must catch that, and so must the readout, which then redoes the Jacobi SVD."""
    from chaosgd.engine import graded_svd

    tm = _graded_map(300, 200.0, "tails", seed=5)
    ref = tm.readout(method="jacobi")

    def plain(At, depth, margin):
        u, sig, _ = np.linalg.svd(At, full_matrices=False)
        with np.errstate(divide="ignore"):
            return np.log(sig), u

    monkeypatch.setattr(graded_svd, "_dc_svd_tall", plain)
    setting = graded_svd.DC_SETTINGS[0]
    logsig, V, _, _ = graded_svd.svd_readout(setting, tm.s.numpy(), tm.B.numpy(), 600.0, 60.0)
    naive = graded_svd.LyapunovReadout(
        exponents=logsig / tm.t, vectors=V, t=tm.t, method="svd", benettin=ref.benettin,
        log_range=ref.log_range, windows=1, orthogonality_loss=0.0, log_growth_since_reorth=0.0,
    )  # fmt: skip
    with pytest.raises(AssertionError):
        _assert_readouts_agree(naive, ref)
    with pytest.warns(UserWarning, match="fast readout lost precision .*redone by the Jacobi"):
        ro = tm.readout()
    assert ro.solver == "jacobi"
    np.testing.assert_array_equal(ro.exponents, ref.exponents)


@pytest.mark.parametrize("n, block", [(20, 7), (21, 7), (6, 7), (512, 100)])
def test_triangular_product_of_the_fold_equals_the_full_product(n, block):
    from chaosgd.engine.graded_svd import _triu_matmul

    g = torch.Generator().manual_seed(n)
    E = torch.randn(n, n, generator=g, dtype=F64).triu()
    B = torch.randn(n, n, generator=g, dtype=F64).triu()
    out = _triu_matmul(E, B, block)
    assert torch.equal(out, out.triu())
    assert float((out - E @ B).abs().max()) <= 1e-12 * float((E.abs() @ B.abs()).max())
