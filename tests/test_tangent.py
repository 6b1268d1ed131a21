"""Tests of chaosgd.tangent: accuracy where the naive product fails, low-rank and momentum
updates against independent references, long horizons, checkpoint round trip, input errors."""

import contextlib
import io
import math

import numpy as np
import pytest
import torch

from chaosgd.tangent import TangentMap

F64 = torch.float64


@contextlib.contextmanager
def _one_thread():
    """Small products gain nothing from threads and suffer badly on a shared, busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


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
    with _one_thread():
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
    with _one_thread():
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
    assert ro.orthogonality_loss < 1e-12
    _assert_vectors_match(ro.vectors, c["vecs"], c["exps"], tol=1e-10)
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
    with _one_thread():
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
    with _one_thread():
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
    for _ in range(T):
        tm.step_sgd(lr, lam, V)
    assert tm.Q.dtype == torch.float32 and tm.s.dtype == F64
    ro = tm.readout()
    assert np.abs(ro.exponents - exps).max() < 1e-6


def test_overflow_between_reorthonormalizations_is_an_error():
    tm = TangentMap(3, reorth_every=50)
    J = torch.eye(3, dtype=F64) * 1e200
    with pytest.raises(FloatingPointError):
        for _ in range(50):
            tm.step_linear(J)


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
