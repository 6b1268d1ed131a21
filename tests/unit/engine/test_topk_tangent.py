"""Tests of chaosgd.engine.topk_tangent: the k-vector tangent block against the exact tangent map
(k = N: equal; k < N: below the exact exponents by at most the derived overlap bound), one
Hessian-vector step against the eigenpair step, checkpoints, cadence, input errors."""

import io

import numpy as np
import pytest
import torch

from chaosgd.engine import cgd, models
from chaosgd.engine.curvature import dense_hessian, hessian_eigenpairs, make_hvp
from chaosgd.engine.tangent_map import TangentMap, TangentPrecisionError
from chaosgd.engine.topk_tangent import TopKTangent, overlap_bound

from support.engine import image_batch

F64 = torch.float64
LR, MU = 0.5, 0.9

pytestmark = pytest.mark.usefixtures("one_thread")


def _sgd_trajectory(hidden, n_images, steps, lr, seed=0):
    """(model, images, [(loss_fn, θ, batch)]) along plain SGD (batch 8, float64) of the MLP."""
    torch.manual_seed(seed)
    model = models.build_model("mlp", hidden=hidden)
    x, y = image_batch(n_images, seed=5)
    theta = models.flat_params(model).to(F64)
    g = torch.Generator().manual_seed(6)
    out = []
    for _ in range(steps):
        idx = torch.randint(0, n_images, (8,), generator=g)
        loss_fn = models.make_loss_fn(model, x[idx], y[idx])
        out.append((loss_fn, theta, (x[idx], y[idx])))
        theta = theta - lr * torch.func.grad(loss_fn)(theta)
    return model, x, out


@pytest.fixture(scope="module")
def small():
    """The hidden-2 MLP (N = 544), 15 SGD steps: each step's dense Hessian and eigenpairs."""
    model, _, traj = _sgd_trajectory(hidden=2, n_images=32, steps=15, lr=LR)
    steps = []
    for loss_fn, theta, _ in traj:
        h = dense_hessian(loss_fn, theta)
        h = 0.5 * (h + h.T)
        lam, vec = torch.linalg.eigh(h)
        chaotic = cgd.prune_mask(lam, LR, "chaotic", 1e-10 * float(lam.abs().max()))
        steps.append(dict(h=h, lam=lam, vec=vec, chaotic=chaotic, loss_fn=loss_fn, theta=theta))
    return dict(n=models.num_params(model), steps=steps)


def _dense_hvp(h):
    return lambda rows: rows @ h


def _run(tk, steps, kind):
    for st in steps:
        if kind == "momentum":
            tk.step_momentum(LR, MU, _dense_hvp(st["h"]))
        elif kind == "cgd":
            pr = st["chaotic"]
            tk.step_sgd(LR, _dense_hvp(st["h"]), pruned=(st["lam"][pr], st["vec"][:, pr]))
        else:
            tk.step_sgd(LR, _dense_hvp(st["h"]))
    return tk


def _assert_vectors_match(got, want, exps, tol):
    """Columns equal up to sign; within (numerically) degenerate clusters compare projectors."""
    i, n = 0, len(exps)
    while i < n:
        j = i + 1
        while j < n and abs(exps[j] - exps[i]) < 1e-9:
            j += 1
        if j - i == 1:
            assert abs(abs(got[:, i] @ want[:, i]) - 1.0) < tol, f"vector {i}"
        else:
            pg, pw = got[:, i:j] @ got[:, i:j].T, want[:, i:j] @ want[:, i:j].T
            assert np.abs(pg - pw).max() < tol, f"cluster {i}:{j}"
        i = j


@pytest.mark.parametrize("kind", ["sgd", "momentum", "cgd"])
def test_full_block_equals_the_exact_tangent_map(small, kind):
    """k = N: Q0 is orthogonal, so ln σ_i(YQ0)/t is the exact spectrum (all N exponents)."""
    n = small["n"]
    tm = TangentMap(n)
    for st in small["steps"]:
        keep = st["lam"].abs() > 1e-10 * float(st["lam"].abs().max())
        if kind == "cgd":
            keep &= ~st["chaotic"]
        if kind == "momentum":
            tm.step_momentum(LR, MU, st["lam"][keep], st["vec"][:, keep])
        else:
            tm.step_sgd(LR, st["lam"][keep], st["vec"][:, keep])
    # the identity start makes the QR diagonal TangentMap's too; a random one only its sum
    q0 = torch.eye(n, dtype=F64) if kind == "momentum" else None
    tk = _run(TopKTangent(n, n, reorth_every=5, q0=q0), small["steps"], kind)
    want, got = tm.readout(), tk.readout()
    assert got.t == 15 and got.method == "svd"
    np.testing.assert_allclose(got.exponents, want.exponents, rtol=0, atol=1e-9)
    # Σ ln|R_ii| = ln|det Y Q0| = Σ ln σ_i
    assert abs(got.benettin.sum() - got.exponents.sum()) < 1e-9
    if kind == "momentum":
        np.testing.assert_allclose(np.sort(got.benettin)[::-1], want.benettin, atol=1e-9, rtol=0)
    if kind == "sgd":
        _assert_vectors_match(got.vectors, want.vectors, want.exponents, tol=1e-7)
    if kind == "cgd":  # the pruned chaotic pairs were the only expanding directions
        assert got.exponents.max() < 1e-9 and tk.hvp_products == 15 * n


def test_one_hvp_step_equals_the_dense_eigenpair_step(small):
    """The matrix-free step (one batched Hessian-vector product) is TangentMap's step with all the
    dense eigenpairs, for SGD, CGD's projection and two momentum steps."""
    n, k = small["n"], 7
    st0, st1 = small["steps"][:2]
    hvps = [make_hvp(st["loss_fn"], st["theta"]) for st in (st0, st1)]
    for kind in ("sgd", "cgd", "momentum"):
        tm = TangentMap(n, max_log_growth=float("inf"))
        tk = TopKTangent(n, k, generator=torch.Generator().manual_seed(3))
        for st, hvp in zip((st0, st1) if kind == "momentum" else (st0,), hvps):
            lam, vec = st["lam"], st["vec"]
            if kind == "momentum":
                tm.step_momentum(LR, MU, lam, vec)
                tk.step_momentum(LR, MU, hvp)
            elif kind == "cgd":
                pr = st["chaotic"]
                assert pr.any()
                tm.step_sgd(LR, lam[~pr], vec[:, ~pr])
                tk.step_sgd(LR, hvp, pruned=(lam[pr], vec[:, pr]))
            else:
                tm.step_sgd(LR, lam, vec)
                tk.step_sgd(LR, hvp)
        want = tm.Q @ tk.q0  # no fold yet: Y = Q
        assert float((tk.matrix() - want).abs().max()) <= 1e-12 * float(want.abs().max()), kind


def _input_span_basis(hidden, x, n):
    """Orthonormal P (N×d) with range(H) ⊆ range(P) for every minibatch of the images ``x``:
    first-layer rows within the images' span, all other parameters free."""
    u, _, _ = torch.linalg.svd(x.reshape(x.shape[0], -1).to(F64).T, full_matrices=False)
    m, w = u.shape[1], hidden * u.shape[0]
    p = torch.zeros(n, hidden * m + n - w, dtype=F64)
    for i in range(hidden):
        p[i * u.shape[0] : (i + 1) * u.shape[0], i * m : (i + 1) * m] = u
    p[w:, hidden * m :] = torch.eye(n - w, dtype=F64)
    return p


@pytest.fixture(scope="module")
def chaotic_run():
    """The hidden-8 MLP (N = 2146), 200 SGD steps at η = 0.5 on 64 images (chaotic
    throughout: λ1 ≈ 0.13): top-20 blocks read out at t = 20 and 200, with the exact spectrum.

    Exact reference: every minibatch Hessian lives in range(P) (the gradient's first-layer rows
    lie in the span of the batch's images), so Y(t) = (I − PPᵀ) + P M(t) Pᵀ and the exact top
    exponents and vectors are M(t)'s, a 610-dimensional TangentMap fed the step's eigenpairs in
    P's coordinates (all of them, null ones included: no truncation)."""
    k, steps, reads = 20, 200, (20, 200)
    model, x, traj = _sgd_trajectory(hidden=8, n_images=64, steps=steps, lr=LR)
    n = models.num_params(model)
    p = _input_span_basis(8, x, n)
    ref = TangentMap(p.shape[1])
    tk = TopKTangent(n, k, generator=torch.Generator().manual_seed(1))
    out = {}
    for t, (loss_fn, theta, (xb, yb)) in enumerate(traj, start=1):
        eig = hessian_eigenpairs(loss_fn, theta, **models.hessian_structure(model, xb, yb))
        coords = p.T @ eig.vectors
        if t == 1:  # the premise: the eigenvectors lie in range(P)
            assert float((p @ coords - eig.vectors).abs().max()) < 1e-12
        ref.step_sgd(LR, eig.values, coords)
        tk.step_sgd(LR, make_hvp(loss_fn, theta))
        if t in reads:
            exact = ref.readout()
            out[t] = dict(
                got=tk.readout(),
                lam=exact.exponents[: k + 1],
                vec=(p @ torch.from_numpy(exact.vectors[:, :k])).numpy(),
            )
    return dict(k=k, n=n, tk=tk, out=out, reads=reads, steps=steps)


def test_top_k_exponents_are_below_the_exact_ones_within_the_overlap_bound(chaotic_run):
    k, tk = chaotic_run["k"], chaotic_run["tk"]
    q0 = tk.q0.numpy()
    for t in chaotic_run["reads"]:
        o = chaotic_run["out"][t]
        got, lam, vec = o["got"], o["lam"][:k], o["vec"]
        assert got.t == t and o["lam"][k - 1] > 0.03  # the whole block is chaotic
        assert np.all(np.diff(got.exponents) <= 0)
        # interlacing: λ̂_i ≤ λ_i (to rounding); here every gap is ~2 nats / t
        gap_nats = (lam - got.exponents) * t
        assert gap_nats.min() >= -1e-8
        # the overlap bound on the partial sums: 0 ≤ Σ_{j≤i} (λ_j − λ̂_j) t ≤ β_i
        beta = overlap_bound(q0, vec)
        assert beta.shape == (k,) and np.all(np.diff(beta) > 0)
        cum = np.cumsum(gap_nats)
        assert np.all(cum <= beta + 1e-8)
        # the same for the Benettin (QR diagonal) partial sums with Q0's first i columns
        beta_b = np.array([overlap_bound(q0[:, :i], vec)[i - 1] for i in range(1, k + 1)])
        cum_b = np.cumsum(lam - got.benettin) * t
        assert cum_b.min() >= -1e-8 and np.all(cum_b <= beta_b + 1e-8)
        # (b)'s partial sums are never below Benettin's: the better estimate at every t
        assert np.all(np.cumsum(got.exponents) >= np.cumsum(got.benettin) - 1e-12)
        if t == chaotic_run["steps"]:
            # not loose: once the top vectors settle, the error is nearly the overlap term
            # itself (here 98-100% of β_i at t = 200)
            assert np.all(cum >= 0.9 * beta)
            # β_1 ≈ ½ ln(N/k) for a random block (≈ 2.3 here)
            assert abs(beta[0] - 0.5 * np.log(chaotic_run["n"] / k)) < 1.0
    # both estimates converge to the exact exponents like 1/t
    err = {}
    for t in chaotic_run["reads"]:
        o = chaotic_run["out"][t]
        lam = o["lam"][:k]
        err[t] = (
            np.abs(o["got"].exponents - lam).max(),
            np.abs(np.sort(o["got"].benettin)[::-1] - lam).max(),
        )
    assert err[200][0] < err[20][0] and err[200][1] < err[20][1]
    assert err[200][0] < 0.02


def test_top_k_vectors_and_costs(chaotic_run):
    tk, k, n = chaotic_run["tk"], chaotic_run["k"], chaotic_run["n"]
    o = chaotic_run["out"][200]
    got = o["got"]
    assert got.vectors.shape == (n, k) and got.forward.shape == (n, k)
    assert got.orthogonality_loss < 1e-12
    assert np.abs(got.forward.T @ got.forward - np.eye(k)).max() < 1e-12
    # the right singular vectors lie in span(Q0) and map onto the forward block: Y Q0 = Q(t) R
    q0 = tk.q0.numpy()
    assert np.abs(q0 @ (q0.T @ got.vectors) - got.vectors).max() < 1e-12
    # the top vector is the exact one's projection onto span(Q0): cosine ‖Q0ᵀv_1‖ = e^-β_1
    cos = abs(got.vectors[:, 0] @ o["vec"][:, 0])
    assert abs(cos / np.exp(-overlap_bound(q0, o["vec"])[0]) - 1.0) < 1e-4
    assert tk.hvp_products == chaotic_run["steps"] * k


@pytest.mark.parametrize("kind", ["sgd", "momentum"])
def test_state_dict_round_trip_continues_bit_identically(small, kind):
    n, steps = small["n"], small["steps"]

    def make():
        return TopKTangent(n, 6, reorth_every=4, generator=torch.Generator().manual_seed(2))

    full = _run(make(), steps, kind)
    first = _run(make(), steps[:7], kind)
    first.readout()  # a checkpoint readout must not disturb the continuation
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = TopKTangent(n, 6, reorth_every=9, generator=torch.Generator().manual_seed(5))
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert resumed.reorth_every == 4
    _run(resumed, steps[7:], kind)
    sa, sb = full.state_dict(), resumed.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    ra, rb = full.readout(), resumed.readout()
    for field in ("exponents", "benettin", "vectors", "forward"):
        assert np.array_equal(getattr(ra, field), getattr(rb, field)), field


@pytest.mark.parametrize("kind", ["sgd", "momentum"])
def test_reorthonormalization_cadence_changes_only_rounding(small, kind):
    n, steps = small["n"], small["steps"]
    outs = []
    for every in (1, 3, 1000):
        tk = TopKTangent(n, 8, reorth_every=every, generator=torch.Generator().manual_seed(4))
        _run(tk, steps, kind)
        outs.append(tk.readout())
    for other in outs[1:]:
        np.testing.assert_allclose(other.exponents, outs[0].exponents, rtol=0, atol=1e-12)
        np.testing.assert_allclose(other.benettin, outs[0].benettin, rtol=0, atol=1e-12)
        cos = np.abs(np.sum(other.vectors * outs[0].vectors, axis=0))
        assert np.abs(cos - 1.0).max() < 1e-9


def test_constant_hessian_exact_exponents_and_the_measured_growth_guard():
    """J = I − ηH constant, symmetric: σ_i(Y(t)) = |1 − ηλ_i|^t exactly, right singular vectors
    the eigenvectors, so λ_i and β_i are known without a reference run. The spread (3 nats a
    step) defeats a fixed cadence of 1000; the measured ln κ(Q) folds in time."""
    n, k, steps = 60, 5, 200
    g = torch.Generator().manual_seed(8)
    vec, _ = torch.linalg.qr(torch.randn(n, n, dtype=F64, generator=g))
    exps = torch.linspace(1.2, -2.0, n, dtype=F64)  # ln|1 − ηλ_i| per step, distinct
    signs = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0).to(F64)
    lam = (1.0 - signs * exps.exp()) / LR
    h = (vec * lam) @ vec.T
    runs = {}
    for every, budget in ((1, 8.0), (1000, 8.0), (1000, float("inf"))):
        tk = TopKTangent(n, k, reorth_every=every, max_log_growth=budget)
        for _ in range(steps):
            tk.step_sgd(LR, _dense_hvp(h))
        runs[every, budget] = tk
    guarded = runs[1000, 8.0]
    assert 0 < int(guarded.state_dict()["since_reorth"]) < steps  # folded by the guard
    want = runs[1, 8.0].readout()
    got = guarded.readout()
    assert got.fold_log_cond < 8.0 + 3.5  # the budget plus at most one step's growth
    np.testing.assert_allclose(got.exponents, want.exponents, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.benettin, want.benettin, rtol=0, atol=1e-12)
    lam_exact = exps[:k].numpy()
    beta = overlap_bound(guarded.q0, vec[:, :k])
    cum = np.cumsum(lam_exact - got.exponents) * steps
    assert cum.min() >= -1e-9 and np.all(cum <= beta + 1e-9) and np.all(cum >= 0.99 * beta)
    # unguarded, the block's lower directions collapse onto the top one: an error, not a value
    with pytest.raises(TangentPrecisionError, match="lost"):
        runs[1000, float("inf")].readout()


def test_bad_arguments_are_clear_errors(small):
    n = small["n"]
    h = small["steps"][0]["h"]
    with pytest.raises(ValueError, match="exceed"):
        TopKTangent(n, n + 1)
    with pytest.raises(ValueError, match="k must be a positive int"):
        TopKTangent(n, 0)
    with pytest.raises(ValueError, match="reorth_every"):
        TopKTangent(n, 3, reorth_every=0)
    with pytest.raises(ValueError, match="orthonormal"):
        TopKTangent(n, 3, q0=torch.ones(n, 3, dtype=F64))
    with pytest.raises(ValueError, match="shape"):
        TopKTangent(n, 3, q0=torch.eye(n, 4, dtype=F64))
    tk = TopKTangent(n, 3)
    with pytest.raises(RuntimeError, match="no steps"):
        tk.readout()
    for lr in (0.0, -0.1, float("nan"), "x"):
        with pytest.raises(ValueError, match="lr"):
            tk.step_sgd(lr, _dense_hvp(h))
    with pytest.raises(ValueError, match=r"hvp returned \(3, 5\)"):
        tk.step_sgd(LR, lambda rows: rows[:, :5])
    with pytest.raises(ValueError, match="non-finite"):
        tk.step_sgd(LR, lambda rows: rows * float("nan"))
    with pytest.raises(ValueError, match="pruned vectors"):
        tk.step_sgd(LR, _dense_hvp(h), pruned=(torch.ones(2, dtype=F64), torch.ones(n, 3)))
    with pytest.raises(ValueError, match="momentum"):
        tk.step_momentum(LR, -0.5, _dense_hvp(h))
    assert tk.t == 0 and tk.hvp_products == 0  # nothing was applied
    tk.step_sgd(LR, _dense_hvp(h))
    with pytest.raises(RuntimeError, match="momentum buffer"):
        tk.step_momentum(LR, MU, _dense_hvp(h))
    with pytest.raises(ValueError, match="want"):
        TopKTangent(n, 4).load_state_dict(tk.state_dict())
    with pytest.raises(ValueError, match="method"):
        tk.readout(method="eig")
