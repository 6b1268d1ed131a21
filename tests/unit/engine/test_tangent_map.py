"""Tests of chaosgd.engine.tangent_map: accuracy where the naive product fails, low-rank and momentum
updates against independent references, long horizons, checkpoint round trip, input errors."""

import decimal
import io
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from chaosgd.engine.tangent_map import TangentMap, TangentPrecisionError

from support.engine import single_thread

F64 = torch.float64


def _constant_hessian(n, exps, signs, lr, seed):
    """Hessian whose SGD tangent map has 1 − ηλ_i = signs_i · e^{exps_i} on random eigenvectors."""
    rng = np.random.default_rng(seed)
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = (1.0 - signs * np.exp(exps)) / lr
    return torch.tensor(lam), torch.tensor(V)


def _assert_vectors_match(got, want, exps, tol):
    """Columns equal up to sign; within (numerically) degenerate clusters compare projectors."""
    i = 0
    n = len(exps)
    while i < n:
        j = i + 1
        while j < n and abs(exps[j] - exps[i]) < 1e-12:
            j += 1
        if j - i == 1:
            assert abs(abs(got[:, i] @ want[:, i]) - 1.0) < tol, f"vector {i}"
        else:
            Pg = got[:, i:j] @ got[:, i:j].T
            Pw = want[:, i:j] @ want[:, i:j].T
            assert np.abs(Pg - Pw).max() < tol, f"cluster {i}:{j}"
        i = j


@pytest.fixture(scope="module")
def constant_case():
    """300-dim constant Hessian, exponents spread over [−0.05, 0.02] per step, 2000 steps."""
    n, lr, T = 300, 0.5, 2000
    rng = np.random.default_rng(0)
    exps = rng.uniform(-0.05, 0.02, n)
    signs = rng.choice([-1.0, 1.0], n)
    # degenerate singular values: an exact repeat, and ±e^μ (same modulus, opposite sign)
    exps[1], signs[1] = exps[0], signs[0]
    exps[3], signs[3] = exps[2], -signs[2]
    lam, V = _constant_hessian(n, exps, signs, lr, seed=1)
    tm = TangentMap(n)
    with single_thread():
        for _ in range(T):
            tm.step_sgd(lr, lam, V)
    order = np.argsort(-exps, kind="stable")
    return dict(n=n, lr=lr, T=T, lam=lam, V=V, tm=tm, exps=exps[order], vecs=V.numpy()[:, order])


def test_constant_hessian_exponents_where_naive_product_fails(constant_case):
    c = constant_case
    ro = c["tm"].readout()
    assert ro.t == c["T"] and ro.method == "svd" and ro.windows == 1
    assert np.all(np.diff(ro.exponents) <= 0)
    assert np.abs(ro.exponents - c["exps"]).max() <= 1e-10

    # The reference code's way: multiply Y out, eigendecompose YᵀY.
    J = torch.eye(c["n"], dtype=F64) - c["lr"] * (c["V"] * c["lam"]) @ c["V"].T
    Y = torch.eye(c["n"], dtype=F64)
    with single_thread():
        for _ in range(c["T"]):
            Y = J @ Y
    w = torch.linalg.eigvalsh(Y.T @ Y).numpy()[::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        naive = np.log(w) / (2 * c["T"])
    naive_ok = np.abs(naive - c["exps"]) <= 1e-10
    assert naive_ok.sum() < c["n"] // 2, "naive product should fail on most of this spectrum"
    assert np.isnan(naive).any() or naive_ok.sum() < c["n"] // 4


def test_constant_hessian_vectors_are_the_eigenvectors(constant_case):
    c = constant_case
    ro = c["tm"].readout()
    assert ro.solver == "dc" and ro.orthogonality_loss < 1e-9
    _assert_vectors_match(ro.vectors, c["vecs"], c["exps"], tol=1e-10)
    ref = c["tm"].readout(method="jacobi")
    assert ref.solver == "jacobi" and ref.orthogonality_loss < 1e-12
    _assert_vectors_match(ref.vectors, c["vecs"], c["exps"], tol=1e-10)
    # Benettin sums converge only at O(1/t): a cross-check, not the answer.
    assert np.abs(ro.benettin - c["exps"]).max() < 10.0 / c["T"]


def test_deflated_readout_agrees_with_single_window(constant_case):
    c = constant_case
    full = c["tm"].readout()
    narrow = c["tm"].readout(window=60.0, margin=15.0)  # range ≈ 140 nats → several windows
    assert narrow.method == "svd_deflated" and narrow.windows > 2
    assert np.abs(narrow.exponents - c["exps"]).max() <= 1e-10
    np.testing.assert_allclose(narrow.exponents, full.exponents, rtol=0, atol=1e-12)
    _assert_vectors_match(narrow.vectors, c["vecs"], c["exps"], tol=1e-9)


def test_lowrank_update_equals_dense_update():
    n, r, lr, steps = 40, 9, 0.3, 120
    g = torch.Generator().manual_seed(3)
    a = TangentMap(n, reorth_every=7)
    b = TangentMap(n, reorth_every=7)
    with single_thread():
        for _ in range(steps):
            V, _ = torch.linalg.qr(torch.randn(n, r, dtype=F64, generator=g))
            lam = torch.randn(r, dtype=F64, generator=g) * 4.0
            a.step_sgd(lr, lam, V)
            b.step_linear(torch.eye(n, dtype=F64) - lr * (V * lam) @ V.T)
    Ya, Yb = a.matrix(), b.matrix()
    assert torch.isfinite(Ya).all()
    assert (Ya - Yb).abs().max() <= 1e-10 * Yb.abs().max()
    ra, rb = a.readout(), b.readout()
    np.testing.assert_allclose(ra.exponents, rb.exponents, rtol=0, atol=1e-12)
    exps = ra.exponents
    _assert_vectors_match(ra.vectors, rb.vectors, exps, tol=1e-8)


def _momentum_problem(n=6, steps=30, seed=0):
    """Small smooth nonconvex minibatch losses f_t(θ) and their momentum-SGD trajectory map."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(steps, 5, n, dtype=F64, generator=g)
    b = torch.randn(steps, 5, dtype=F64, generator=g)

    def loss(theta, k):
        z = A[k] @ theta - b[k]
        return torch.log(torch.cosh(z)).sum() - 0.3 * theta @ theta + 0.05 * (theta @ theta) ** 2

    def run(theta0, lr, mu):
        theta, v = theta0, torch.zeros_like(theta0)
        for k in range(steps):
            v = mu * v + torch.func.grad(loss)(theta, k)
            theta = theta - lr * v
        return theta

    theta0 = torch.randn(n, dtype=F64, generator=g) * 0.5
    return loss, run, theta0, steps


@pytest.mark.parametrize("reorth_every", [1, 4, 1000])
def test_momentum_recursion_equals_linearized_momentum_sgd(reorth_every):
    lr, mu = 0.05, 0.9
    loss, run, theta0, steps = _momentum_problem()
    n = theta0.numel()
    tm = TangentMap(n, reorth_every=reorth_every)
    plain = TangentMap(n, reorth_every=reorth_every)  # same Hessians, momentum ignored
    theta, v = theta0.clone(), torch.zeros(n, dtype=F64)
    for k in range(steps):
        H = torch.func.hessian(loss)(theta, k)
        lam, V = torch.linalg.eigh(H)
        tm.step_momentum(lr, mu, lam, V)
        plain.step_sgd(lr, lam, V)
        v = mu * v + torch.func.grad(loss)(theta, k)
        theta = theta - lr * v

    # Independent references: forward-mode AD through the unrolled steps, and finite differences.
    Y_ad = torch.func.jacfwd(lambda th: run(th, lr, mu))(theta0)
    h = 1e-5
    Y_fd = torch.stack(
        [
            (run(theta0 + h * e, lr, mu) - run(theta0 - h * e, lr, mu)) / (2 * h)
            for e in torch.eye(n, dtype=F64)
        ],
        dim=1,
    )
    Y = tm.matrix()
    scale = Y_ad.abs().max()
    assert (Y - Y_ad).abs().max() <= 1e-11 * scale
    assert (Y - Y_fd).abs().max() <= 1e-6 * scale
    # The references are sensitive enough to tell momentum from the plain-SGD tangent map.
    assert (plain.matrix() - Y_ad).abs().max() > 1e-2 * scale

    ro = tm.readout()
    sv = torch.linalg.svdvals(Y_ad).numpy()
    np.testing.assert_allclose(ro.exponents, np.log(sv) / steps, rtol=0, atol=1e-12)


def test_momentum_zero_equals_sgd():
    n, lr = 10, 0.2
    g = torch.Generator().manual_seed(5)
    a, b = TangentMap(n, reorth_every=3), TangentMap(n, reorth_every=3)
    for _ in range(25):
        V, _ = torch.linalg.qr(torch.randn(n, 4, dtype=F64, generator=g))
        lam = torch.randn(4, dtype=F64, generator=g)
        a.step_momentum(lr, 0.0, lam, V)
        b.step_sgd(lr, lam, V)
    assert torch.allclose(a.matrix(), b.matrix(), rtol=1e-12, atol=1e-14)


def test_long_horizon_strong_chaos_stays_finite_and_exact():
    """Exponents ±0.1/step over 20k steps: R spans ~4000 nats, far outside float64."""
    n, lr, T = 12, 1.0, 20_000
    exps = np.linspace(0.1, -0.1, n)
    signs = np.random.default_rng(2).choice([-1.0, 1.0], n)
    lam, V = _constant_hessian(n, exps, signs, lr, seed=4)
    tm = TangentMap(n)
    with single_thread():
        for _ in range(T):
            tm.step_sgd(lr, lam, V)
    for name, x in tm.state_dict().items():
        assert torch.isfinite(x).all(), name
    ro = tm.readout()
    assert ro.log_range > 3000
    assert ro.method == "svd_deflated" and ro.windows > 1
    assert np.isfinite(ro.exponents).all() and np.isfinite(ro.vectors).all()
    assert np.abs(ro.exponents - exps).max() <= 1e-10
    _assert_vectors_match(ro.vectors, V.numpy(), exps, tol=1e-10)
    qr = tm.readout(method="qr_diagonal")
    assert qr.method == "qr_diagonal" and qr.vectors is None
    assert np.abs(qr.exponents - exps).max() < 1e-3


def test_long_horizon_nonnormal_map():
    """A non-normal constant Jacobian: exponents converge to ln|a_i| at rate O(1/t)."""
    n, T = 8, 20_000
    rng = np.random.default_rng(6)
    a = np.linspace(0.1, -0.1, n)
    P = rng.standard_normal((n, n))
    J = torch.tensor(P @ np.diag(np.exp(a) * rng.choice([-1.0, 1.0], n)) @ np.linalg.inv(P))
    tm = TangentMap(n)
    with single_thread():
        for _ in range(T):
            tm.step_linear(J)
    ro = tm.readout()
    assert ro.method == "svd_deflated"
    assert np.isfinite(ro.exponents).all()
    assert np.abs(ro.exponents - a).max() < 20.0 / T
    assert np.abs(ro.exponents - ro.benettin).max() < 20.0 / T


def _steps(tm, g, k, momentum):
    n = tm.n
    for _ in range(k):
        V, _ = torch.linalg.qr(torch.randn(n, 5, dtype=F64, generator=g))
        lam = torch.randn(5, dtype=F64, generator=g) * 3.0
        if momentum:
            tm.step_momentum(0.1, 0.8, lam, V)
        else:
            tm.step_sgd(0.4, lam, V)


@pytest.mark.parametrize("momentum", [False, True])
def test_state_dict_round_trip_continues_bit_identically(momentum):
    n = 16
    full = TangentMap(n, reorth_every=6)
    _steps(full, torch.Generator().manual_seed(7), 101, momentum)

    g = torch.Generator().manual_seed(7)
    first = TangentMap(n, reorth_every=6)
    _steps(first, g, 45, momentum)
    first.readout()  # a checkpoint readout must not disturb the continuation
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = TangentMap(n)  # settings come from the checkpoint
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    _steps(resumed, g, 56, momentum)

    sa, sb = full.state_dict(), resumed.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert np.array_equal(full.exponents(), resumed.exponents())
    assert np.array_equal(full.vectors(), resumed.vectors())


def test_float32_map_keeps_log_scales_in_float64():
    n, lr, T = 20, 1.0, 3000
    exps = np.linspace(0.05, -0.05, n)
    lam, V = _constant_hessian(n, exps, np.ones(n), lr, seed=8)
    tm = TangentMap(n, dtype=torch.float32)
    with single_thread():
        for _ in range(T):
            tm.step_sgd(lr, lam, V)
    assert tm.Q.dtype == torch.float32 and tm.s.dtype == F64
    ro = tm.readout()
    assert np.abs(ro.exponents - exps).max() < 1e-6


# Hénon map x' = 1 − a x² + y, y' = b x. Its Lyapunov exponents: λ1 = 0.41922 (Sprott, "Chaos and
# Time-Series Analysis", 2003) and λ2 = ln b − λ1 = −1.62319 (det J = −b at every point).
HENON_A, HENON_B, HENON_L1 = 1.4, 0.3, 0.41922


def _henon_jacobians(steps, x=0.1, y=0.1, burn_in=1000):
    for _ in range(burn_in):
        x, y = 1.0 - HENON_A * x * x + y, HENON_B * x
    out = np.empty((steps, 2, 2))
    for k in range(steps):
        out[k] = [[-2.0 * HENON_A * x, 1.0], [HENON_B, 0.0]]
        x, y = 1.0 - HENON_A * x * x + y, HENON_B * x
    return out


def _benettin_every_step(jacobians):
    """Independent reference: Σ ln|R_ii| with a QR after every step (numpy), descending."""
    Q, acc = np.eye(jacobians.shape[1]), np.zeros(jacobians.shape[1])
    for J in jacobians:
        Q, R = np.linalg.qr(J @ Q)
        acc += np.log(np.abs(np.diag(R)))
    return np.sort(acc)[::-1] / len(jacobians)


def _run_linear(tm, jacobians):
    with single_thread():
        for J in torch.from_numpy(jacobians):
            tm.step_linear(J)
    return tm


def test_henon_with_default_reorth_every_matches_reference_exponents():
    """κ(Q) grows ~e^2 per step, so 20 unguarded steps lose λ2 (formerly -inf); the bound folds."""
    T = 10_000
    jac = _henon_jacobians(T)
    tm = _run_linear(TangentMap(2), jac)
    ro = tm.readout()
    assert np.isfinite(ro.exponents).all() and np.isfinite(ro.vectors).all()
    # exact identities for this product, whatever T: Σ ln σ_i = ln|det Y| = T ln b, and the QR
    # diagonal of a product is the same however often it is folded
    assert abs(ro.exponents.sum() - math.log(HENON_B)) < 1e-12
    np.testing.assert_allclose(ro.benettin, _benettin_every_step(jac), rtol=0, atol=1e-12)
    assert np.abs(ro.exponents - ro.benettin).max() < 10.0 / T
    # finite-time exponents scatter around the limit: std 0.0035 over 30 orbits at T = 10⁴,
    # so 0.02 is ~6 standard deviations (this orbit: ~0.002 off)
    want = [HENON_L1, math.log(HENON_B) - HENON_L1]
    np.testing.assert_allclose(ro.exponents, want, rtol=0, atol=0.02)
    # the guard: ln κ(Q) ≤ Σ ln κ(J) ≤ max_log_growth between folds, and folds measured no more
    assert ro.fold_log_cond <= tm.max_log_growth + 1e-6


@pytest.mark.parametrize(
    "d, angle, T",
    [
        ([1e-3, 1e-5], 0.0, 2_000),
        ([1e-3, 1e-5], 0.3, 10_000),
        ([1e-200, 5e-201], 0.3, 2_000),
        ([1e200, 5e199], 0.3, 2_000),
    ],
)
def test_strongly_contracting_map_reads_out_exactly(d, angle, T):
    """J = P diag(d) Pᵀ (P a rotation): σ_i(J^T) = d_i^T exactly.

    diag(1e-3, 1e-5) rotated: κ(J) = 100, so 20 steps apart the small direction is 1e-40 of the
    large one. d = 1e∓200 (1, 1/2): κ(J) = 2, folds are ~12 steps apart, yet Y itself under- or
    overflows float64 within two steps unless the steps are rescaled.
    """
    d = np.array(d)
    c, s = math.cos(angle), math.sin(angle)
    P = np.array([[c, -s], [s, c]])
    J = P @ np.diag(d) @ P.T
    J = 0.5 * (J + J.T)  # exactly symmetric: singular values = |eigenvalues| = d to rounding
    tm = _run_linear(TangentMap(2), np.repeat(J[None], T, axis=0))
    ro = tm.readout()
    np.testing.assert_allclose(ro.exponents, np.log(d), rtol=1e-13, atol=1e-12)
    assert np.abs(ro.benettin - np.log(d)).max() < 1.0 / T  # QR diagonal: O(1/t) off
    assert ro.fold_log_cond <= tm.max_log_growth + 1e-6


def test_singular_step_is_an_error_naming_the_step():
    tm = TangentMap(2)
    jac = _henon_jacobians(10)
    jac[5] = [[1.0, 2.0], [0.5, 1.0]]  # rank 1: step t = 6 makes Y singular
    _run_linear(tm, jac)
    with pytest.raises(TangentPrecisionError, match=r"step 6: .*reorth_every") as err:
        tm.readout()
    assert err.value.step == 6 and isinstance(err.value, FloatingPointError)
    with pytest.raises(TangentPrecisionError):
        tm.readout(method="qr_diagonal")
    with pytest.raises(TangentPrecisionError):
        tm.exponents()
    # the record survives a checkpoint
    resumed = TangentMap(2)
    resumed.load_state_dict(tm.state_dict())
    with pytest.raises(TangentPrecisionError, match=r"step 6: "):
        resumed.readout()


def test_unguarded_linear_steps_lose_directions_and_say_so(monkeypatch):
    """Without step_linear's bound (the old behaviour) Hénon's λ2 is lost: an error, not -inf."""
    monkeypatch.setattr(TangentMap, "_linear_growth", lambda self, J: (0.0, 0))
    tm = _run_linear(TangentMap(2), _henon_jacobians(400))
    with pytest.raises(
        TangentPrecisionError, match="reorth_every .now 20. or max_log_growth"
    ) as err:
        tm.readout()
    assert err.value.step % 20 == 0  # lost at a fold


def _exact_log_singular_values_2x2(J, T):
    """ln σ of J^T for a rational 2×2 J, exact products and 60-digit square roots."""
    Jf = [[Fraction(x) for x in row] for row in J]
    Y = [[Fraction(1), Fraction(0)], [Fraction(0), Fraction(1)]]
    for _ in range(T):
        Y = [[sum(Jf[i][k] * Y[k][j] for k in range(2)) for j in range(2)] for i in range(2)]
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        fro2 = sum(Y[i][j] ** 2 for i in range(2) for j in range(2))
        det = abs(Y[0][0] * Y[1][1] - Y[0][1] * Y[1][0])
        F = decimal.Decimal(fro2.numerator) / fro2.denominator
        D = decimal.Decimal(det.numerator) / det.denominator
        s1 = ((F + (F * F - 4 * D * D).sqrt()) / 2).sqrt()
        return [float(s1.ln()), float((D / s1).ln())]


@pytest.mark.parametrize("T", [20, 60])
def test_svd_that_loses_precision_is_an_error_not_a_wrong_exponent(T):
    """An exactly triangular J on Y(0) = I keeps e1 (exponent ln ½) ahead of e2 (ln 2): the
    factor's first row becomes [2^-T, ~2^T] and the Jacobi SVD loses σ_min (wrong at T = 20,
    -inf at T = 60), while the QR diagonal stays exact. The 2×2 divide-and-conquer SVD still
    resolves T = 20 exactly; at T = 60 nothing does, and the fallback to Jacobi says so."""
    J = np.array([[0.5, 1.0], [0.0, 2.0]])
    tm = _run_linear(TangentMap(2), np.repeat(J[None], T, axis=0))
    with pytest.raises(TangentPrecisionError, match="method='qr_diagonal'"):
        tm.readout(method="jacobi")
    if T == 20:
        ro = tm.readout()
        assert ro.solver == "dc"
        exact = _exact_log_singular_values_2x2(J, T)
        np.testing.assert_allclose(ro.exponents * T, exact, rtol=0, atol=1e-9)
    else:
        with pytest.warns(UserWarning, match="redone by the Jacobi SVD"):
            with pytest.raises(TangentPrecisionError, match="method='qr_diagonal'"):
                tm.readout()
    ro = tm.readout(method="qr_diagonal")
    np.testing.assert_allclose(ro.exponents, [math.log(2.0), math.log(0.5)], rtol=0, atol=1e-15)


def _momentum_rotated(lam, lr, mu, T, **kw):
    c, s = math.cos(0.3), math.sin(0.3)
    V = torch.tensor([[c, -s], [s, c]], dtype=F64)
    tm = TangentMap(2, **kw)
    for _ in range(T):
        tm.step_momentum(lr, mu, torch.tensor(lam, dtype=F64), V)
    return tm


def test_momentum_fold_that_loses_a_direction_is_an_error():
    """Momentum steps have no growth bound: here κ(Q) grows ~e^3.4 per step."""
    lam, lr, mu, T = [-20.0, 0.99], 1.0, 0.5, 100
    # Y = V diag(y_i) Vᵀ with scalar recursions g ← μg + λy, y ← y − ηg: σ_i = |y_i(T)|
    want = []
    for lam_i in lam:
        y, g = 1.0, 0.0
        for _ in range(T):
            g = mu * g + lam_i * y
            y = y - lr * g
        want.append(math.log(abs(y)) / T)
    ro = _momentum_rotated(lam, lr, mu, T, reorth_every=1).readout()
    np.testing.assert_allclose(ro.exponents, sorted(want, reverse=True), rtol=0, atol=1e-13)
    # default reorth_every = 20: ~68 nats between folds, the first fold already lost λ2 (the
    # garbage it left later overflows Q; the error names the cause)
    with pytest.raises(TangentPrecisionError, match=r"step 20: .*reorth_every .now 20.\."):
        _momentum_rotated(lam, lr, mu, T).readout()


def test_overflow_between_reorthonormalizations_is_an_error():
    V = torch.eye(3, dtype=F64)[:, :1]
    tm = TangentMap(3, reorth_every=50)
    with pytest.raises(TangentPrecisionError, match="overflowed"):
        for _ in range(50):
            tm.step_momentum(1.0, 0.0, torch.tensor([-1e100], dtype=F64), V)


def test_growth_bound_triggers_early_reorthonormalization():
    tm = TangentMap(4, reorth_every=1000, max_log_growth=math.log(10.0))
    V = torch.eye(4, dtype=F64)[:, :2]
    tm.step_sgd(1.0, torch.tensor([-1.0, 0.5], dtype=F64), V)  # κ bound 2/0.5 = 4 < 10
    assert tm.state_dict()["since_reorth"] == 1
    tm.step_sgd(1.0, torch.tensor([-1.0, 0.5], dtype=F64), V)  # 16 > 10: fold now
    assert tm.state_dict()["since_reorth"] == 0
    np.testing.assert_allclose(
        tm.exponents(), sorted([math.log(2.0), 0, 0, math.log(0.5)], reverse=True), atol=1e-15
    )


@pytest.mark.parametrize(
    "call, arg",
    [
        (lambda tm: tm.step_linear(torch.eye(4, dtype=F64)), "J"),
        (lambda tm: tm.step_linear(torch.full((5, 5), math.nan, dtype=F64)), "J"),
        (
            lambda tm: tm.step_sgd(0.1, torch.ones(2, dtype=F64), torch.ones(4, 2, dtype=F64)),
            "vectors",
        ),
        (
            lambda tm: tm.step_sgd(
                0.1, torch.tensor([1.0, math.inf], dtype=F64), torch.ones(5, 2, dtype=F64)
            ),
            "values",
        ),
        (
            lambda tm: tm.step_sgd(math.nan, torch.ones(2, dtype=F64), torch.ones(5, 2, dtype=F64)),
            "lr",
        ),
        (
            lambda tm: tm.step_momentum(
                0.1, math.inf, torch.ones(2, dtype=F64), torch.ones(5, 2, dtype=F64)
            ),
            "momentum",
        ),
        (
            lambda tm: tm.step_sgd(0.1, torch.ones(2, 2, dtype=F64), torch.ones(5, 2, dtype=F64)),
            "values",
        ),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, arg):
    tm = TangentMap(5)
    with pytest.raises(ValueError, match=arg):
        call(tm)
    assert tm.t == 0


def test_readout_before_any_step_and_mixing_are_refused():
    tm = TangentMap(3)
    with pytest.raises(RuntimeError):
        tm.readout()
    tm.step_momentum(0.1, 0.9, torch.ones(1, dtype=F64), torch.eye(3, dtype=F64)[:, :1])
    with pytest.raises(RuntimeError):
        tm.step_sgd(0.1, torch.ones(1, dtype=F64), torch.eye(3, dtype=F64)[:, :1])


def test_readout_rejects_unknown_method():
    tm = TangentMap(3)
    tm.step_sgd(0.1, torch.ones(1, dtype=F64), torch.eye(3, dtype=F64)[:, :1])
    with pytest.raises(ValueError, match="'auto', 'jacobi' or 'qr_diagonal'"):
        tm.readout(method="gesdd")


# -- the update through a basis (the MLP's range basis) ------------------------------------------


def _mlp_eigenpairs(hidden, seed):
    from chaosgd.engine import models
    from chaosgd.engine.curvature import hessian_eigenpairs

    torch.manual_seed(seed)
    model = models.build_model("mlp", "relu", hidden=hidden)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(8, 1, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)
    theta = models.flat_params(model).double()
    loss_fn = models.make_loss_fn(model, x, y)
    return hessian_eigenpairs(loss_fn, theta, "auto", **models.hessian_structure(model, x, y))


@pytest.mark.slow  # the paper's MLP, N = 5350: ~30 s each on 2 cores
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_update_through_the_range_basis_equals_the_dense_update(momentum):
    """Applying H = S (W Λ Wᵀ) Sᵀ through the MLP's range basis is the same map as the two
    r×N×N products with V = S W, step after step (also with CGD's kept subset and momentum)."""
    steps = [_mlp_eigenpairs(12, seed) for seed in range(3)]
    eig = steps[0]
    assert eig.basis is not None and eig.coords.shape == (eig.basis.dim, eig.rank)
    n = eig.n_params
    plain, fast = TangentMap(n, reorth_every=2), TangentMap(n, reorth_every=2)
    assert fast._structured(eig.basis, eig.coords, eig.values)
    with single_thread():
        for i, e in enumerate(steps * 2):
            keep = torch.ones(e.rank, dtype=torch.bool)
            keep[:: 3 if i % 2 else e.rank + 1] = False  # every other step a CGD-like subset
            lam, V, W = e.values[keep], e.vectors[:, keep], e.coords[:, keep]
            if momentum:
                plain.step_momentum(0.05, momentum, lam, V)
                fast.step_momentum(0.05, momentum, lam, V, e.basis, W)
            else:
                plain.step_sgd(0.05, lam, V)
                fast.step_sgd(0.05, lam, V, e.basis, W)
    assert float((plain.Q - fast.Q).abs().max()) <= 1e-12  # momentum sums ~1/(1 − μ) steps
    assert float((plain.s - fast.s).abs().max()) <= 1e-12
    a, b = plain.readout(), fast.readout()
    assert np.abs(a.exponents - b.exponents).max() * a.t <= 1e-10


def test_the_basis_is_used_only_where_it_is_cheaper_and_must_match():
    eig = _mlp_eigenpairs(12, 0)
    tm = TangentMap(eig.n_params)
    few = torch.ones(eig.rank, dtype=torch.bool)
    few[3:] = False  # three kept eigenpairs: two thin products beat the basis
    assert not tm._structured(eig.basis, eig.coords[:, few], eig.values[few])
    assert not tm._structured(None, eig.coords, eig.values)
    with pytest.raises(ValueError, match="basis and coords"):
        tm._structured(eig.basis, eig.coords[:-1], eig.values)
    with pytest.raises(ValueError, match="basis and coords"):
        TangentMap(eig.n_params - 1)._structured(eig.basis, eig.coords, eig.values)


def test_a_state_with_a_non_triangular_factor_is_refused():
    tm = TangentMap(4)
    sd = tm.state_dict()
    sd["B"] = sd["B"].clone()
    sd["B"][3, 0] = 1e-3
    with pytest.raises(ValueError, match="not upper triangular"):
        TangentMap(4).load_state_dict(sd)


@pytest.mark.parametrize("kind", ["sgd", "linear"])
def test_top_singular_every_step_equals_the_dense_svd(kind):
    # 60 steps of a 40-dim map, folds every 7 steps (and by the growth bound) in between, each
    # step warm-started from the previous one's vector as the Lyapunov stage does. TOP_TOL =
    # 1e-10 bounds σ1²'s relative error by r²/gap, ≈ 5e-11 in ln σ1; the dense product and its
    # SVD add ~1e-15. 1e-9 relative (or absolute while |ln σ1| < 1) leaves a factor ~20 for the
    # bound's gap, which it takes from the Krylov space's own next Ritz value.
    n, lr = 40, 0.05
    rng = np.random.default_rng(3)
    tm = TangentMap(n, reorth_every=7)
    Y = np.eye(n)
    v, seen = None, []
    for t in range(1, 61):
        if kind == "sgd":
            V = np.linalg.qr(rng.standard_normal((n, 12)))[0]
            lam = rng.uniform(-6.0, 30.0, 12)  # |1 − ηλ| up to 2.5: strongly expanding steps
            tm.step_sgd(lr, torch.tensor(lam), torch.tensor(V))
            J = np.eye(n) - lr * (V * lam) @ V.T
        else:
            J = np.eye(n) + 0.2 * rng.standard_normal((n, n)) / math.sqrt(n)
            tm.step_linear(torch.tensor(J))
        Y = J @ Y
        top = tm.top_singular(v)
        v = top.vector
        want = math.log(np.linalg.svd(Y, compute_uv=False)[0])
        assert abs(top.log_sigma - want) <= 1e-9 * max(1.0, abs(want)), (t, top, want)
        # the vector is the top right singular vector: ‖Yv‖ = σ1
        assert math.log(np.linalg.norm(Y @ v.numpy())) == pytest.approx(want, abs=1e-9)
        seen.append(top.iterations)
    assert tm.state_dict()["log_growth"] >= 0 and max(seen) < 40
    # a state only as the tangent map holds it: the same call gives the same bits
    again = tm.top_singular(v)
    assert again.log_sigma == tm.top_singular(v).log_sigma
    assert torch.equal(again.vector, tm.top_singular(v).vector)


def test_top_singular_before_any_step_and_of_a_wide_graded_factor():
    tm = TangentMap(5)
    assert tm.top_singular().log_sigma == 0.0 and tm.top_singular().iterations == 0
    # row scales far beyond float64 (e^±2000): the log-scaled products neither overflow nor lose σ1
    tm.step_linear(torch.diag(torch.tensor([2.0, 1.0, 0.5, 0.25, 0.125], dtype=F64)))
    tm.s += torch.tensor([2000.0, 0.0, -1000.0, -2000.0, 5.0], dtype=F64)
    top = tm.top_singular()
    assert top.log_sigma == pytest.approx(2000.0 + math.log(2.0), rel=1e-12)
    with pytest.raises(ValueError, match="v0"):
        tm.top_singular(torch.ones(4, dtype=F64))
