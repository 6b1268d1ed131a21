"""Top-k Hessian eigenpairs (chaosgd.engine.topk_curvature): exact against dense references on
the paper's MLP and CNN, certificates, the completeness check and where it fails, warm starts.

The gap rule for eigenvectors: the returned subspace is compared with the exact one of the
selected eigenvalues where their distance δ to the rest of the spectrum (the unselected
eigenvalues, 0 among them when the Hessian is singular) is at least 1e-4·max|λ|. There the
Davis-Kahan sin Θ theorem bounds the largest principal angle by ‖R‖_F/δ with R the returned
pairs' residuals (≤ √k·1e-10·max|λ|, so ≤ ~5e-6), and the test asserts that bound; closer
eigenvalues make the subspace itself ill-determined, and only the eigenvalues are compared.
"""

import math

import pytest
import torch
from torch.func import grad

from chaosgd.engine import cgd, curvature, models
from chaosgd.engine.topk_curvature import (
    TopKCheckError,
    hessian_topk,
    topk_eigenpairs,
)

from support.engine import image_batch

pytestmark = pytest.mark.usefixtures("one_thread")

KS = (1, 5, 20)
# (which, lr): lr "large" is 5/λ_max, so that λ > 2/η = 0.4·λ_max occurs and the k = 20
# chaotic selections draw from both ends of the spectrum
CASES = [
    ("largest", None),
    ("smallest", None),
    ("negative", None),
    ("positive", None),
    ("chaotic", 1e-3),
    ("chaotic", "large"),
]


def _trained(arch, steps, seed=11):
    """A model after ``steps`` plain SGD steps (batch 8, lr 0.05) on a fixed random data set."""
    torch.manual_seed(seed)
    model = models.build_model(arch, hidden=20)
    x, y = image_batch(64, seed=5)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(6)
    for _ in range(steps):
        idx = torch.randint(0, 64, (8,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model


def _problem(arch, steps):
    """Loss, θ (float64) and the exact eigenpairs of one minibatch Hessian (batch 8).

    The CNN's reference is the dense Hessian and a full ``torch.linalg.eigh``. The MLP's is
    the exact Rayleigh-Ritz on its range basis (test_curvature checks it against the dense
    eigh to 1e-12): a 5350×5350 eigh takes ~40 s, see the slow test at the end.
    """
    model = _trained(arch, steps)
    x, y = image_batch(8, seed=100 + steps)
    loss_fn = models.make_loss_fn(model, x, y)
    theta = models.flat_params(model).double()
    if arch == "cnn":
        values, vectors = torch.linalg.eigh(curvature.dense_hessian(loss_fn, theta))
        null_tol = 1e-10 * float(values.abs().max())
    else:
        basis = models.hessian_range_basis(model, x, y)
        ref = curvature.hessian_eigenpairs(loss_fn, theta, "lowrank", range_basis=basis)
        values, vectors, null_tol = ref.values, ref.vectors, ref.null_tol
    return {
        "loss_fn": loss_fn,
        "theta": theta,
        "values": values,
        "vectors": vectors,
        "null_tol": null_tol,
        "singular": True,  # both models' minibatch Hessians have rank < N
        "scale": float(values.abs().max()),
    }


PROBLEMS = {"mlp-init": ("mlp", 0), "mlp-sgd": ("mlp", 200), "cnn-init": ("cnn", 0)}


@pytest.fixture(scope="module")
def problems():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _problem(*PROBLEMS[name])
        return cache[name]

    return get


def _reference(p, which, k, lr):
    """Indices into p["values"] of the exact selection (cgd.select_pruned for prune sets)."""
    values = p["values"]
    if which in cgd.PRUNE_SETS:
        return cgd.select_pruned(values, lr, which, "top_k", k, null_tol=p["null_tol"])
    nonzero = torch.nonzero(values.abs() > p["null_tol"]).flatten()
    idx = nonzero[-k:] if which == "largest" else nonzero[:k]
    # the walk from the end stops at the null space; here it is never reached
    assert bool((values[idx] > 0).all() if which == "largest" else (values[idx] < 0).all())
    return idx


def _sin_theta(v, ref):
    """Sine of the largest principal angle between span(v) and span(ref) (orthonormal)."""
    return float(torch.linalg.matrix_norm(v - ref @ (ref.T @ v), ord=2))


def _assert_matches(result, p, idx, k, tol=1e-10):
    values, scale = p["values"], p["scale"]
    expected = values[idx]
    assert result.method == "topk"
    assert result.values.dtype == torch.float64
    assert result.values.numel() == result.rank == min(k, idx.numel())
    assert bool((result.values[1:] >= result.values[:-1]).all())
    # eigenvalues: relative 1e-8 of max|λ| (they come out within ~1e-14)
    assert float((result.values - expected).abs().max()) <= 1e-8 * scale
    d = result.diagnostics
    assert d["residual_max"] <= tol and len(d["residuals"]) == result.rank
    assert d["completeness"]["passed"] and d["completeness"]["steps"] >= 1
    assert math.isclose(result.null_tol, p["null_tol"], rel_tol=1e-6)
    v = result.vectors
    eye = torch.eye(v.shape[1], dtype=v.dtype)
    assert float((v.T @ v - eye).abs().max()) < 1e-12
    # eigenvectors, by the gap rule of the module doc
    rest = torch.ones(values.numel(), dtype=torch.bool)
    rest[idx] = False
    others = values[rest]
    if p["singular"]:
        others = torch.cat([others, values.new_zeros(1)])
    delta = float((expected[:, None] - others[None, :]).abs().min())
    if delta >= 1e-4 * scale:
        bound = math.sqrt(sum(r**2 for r in d["residuals"])) / delta
        assert _sin_theta(v, p["vectors"][:, idx]) <= 1.01 * bound + 1e-12
    return delta


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("which, lr", CASES, ids=[f"{w}-{lr}" for w, lr in CASES])
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_matches_the_exact_top_k(problems, name, which, lr, k):
    p = problems(name)
    if lr == "large":
        lr = 5.0 / float(p["values"].max())
    gen = torch.Generator().manual_seed(0)
    result = hessian_topk(p["loss_fn"], p["theta"], k, which, lr=lr, generator=gen)
    idx = _reference(p, which, k, lr if lr is not None else 1.0)
    _assert_matches(result, p, idx, k)
    if which == "chaotic" and k == 20 and lr > 1e-2:
        # the merge of both ends is exercised
        assert (result.values < 0).any() and (result.values > 2 / lr).any()


def _rotated_diagonal(d, seed=0):
    """H = Q diag(d) Qᵀ for a random orthogonal Q, as a batched product, with Q."""
    n = d.numel()
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]

    def hvp(v):
        return ((v @ q) * d) @ q.T

    return hvp, q


def _diag_problem(d, seed=0):
    hvp, q = _rotated_diagonal(d, seed)
    order = torch.argsort(d)
    values = d[order]
    return hvp, {
        "values": values,
        "vectors": q[:, order],
        "null_tol": 1e-10 * float(values.abs().max()),
        "singular": bool((d == 0).any()),
        "scale": float(values.abs().max()),
    }


@pytest.mark.parametrize("which, lr", CASES, ids=[f"{w}-{lr}" for w, lr in CASES])
def test_an_analytic_operator(which, lr):
    """A rotated diagonal with a known spectrum: clusters, a double eigenvalue, both signs."""
    d = torch.cat(
        [
            torch.linspace(-4.0, -0.5, 40, dtype=torch.float64),
            torch.tensor([-4.0, 6.0, 6.0, 5.999], dtype=torch.float64),
            torch.linspace(0.1, 5.0, 120, dtype=torch.float64),
            torch.zeros(36, dtype=torch.float64),
        ]
    )
    if lr == "large":
        lr = 0.9  # 2/η ≈ 2.2; (1 − ηλ)² is ≈ 19.4 at λ = 6 and ≈ 21.2 at λ = −4: both ends
    hvp, p = _diag_problem(d)
    for k in (3, 12):
        result = topk_eigenpairs(hvp, d.numel(), k, which, lr=lr, generator=torch.Generator())
        _assert_matches(result, p, _reference(p, which, k, lr or 1.0), k)


def test_fewer_members_than_k_returns_those_that_exist():
    # 3 negative, 20 null, 2 above 2/η = 4 and 25 in (0, 4)
    d = torch.cat(
        [
            torch.tensor([-3.0, -2.0, -1.0, 5.0, 7.0], dtype=torch.float64),
            torch.zeros(20, dtype=torch.float64),
            torch.linspace(0.5, 3.5, 25, dtype=torch.float64),
        ]
    )
    hvp, p = _diag_problem(d, seed=1)
    cases = [("negative", None, [-3.0, -2.0, -1.0]), ("chaotic", 0.5, [-3.0, -2.0, -1.0, 5.0, 7.0])]
    for which, lr, expected in cases:
        result = topk_eigenpairs(hvp, d.numel(), 8, which, lr=lr)
        assert result.values.tolist() == pytest.approx(expected, abs=1e-12)
        assert result.diagnostics["completeness"]["passed"]
        idx = cgd.select_pruned(p["values"], lr or 1.0, which, "top_k", 8, null_tol=p["null_tol"])
        _assert_matches(result, p, idx, 8)
    # "smallest" walks up from the bottom and stops at the null space: the 3 negative ones
    result = topk_eigenpairs(hvp, d.numel(), 8, "smallest")
    assert result.values.tolist() == pytest.approx([-3.0, -2.0, -1.0], abs=1e-12)
    # 2/η = 20 above the spectrum: the negative ones only
    result = topk_eigenpairs(hvp, d.numel(), 4, "chaotic", lr=0.1)
    assert result.rank == 3 and result.values.tolist() == pytest.approx([-3.0, -2.0, -1.0])
    # a set with no member at all
    empty = topk_eigenpairs(lambda v: v * d.abs(), d.numel(), 4, "negative")
    assert empty.rank == 0 and empty.vectors.shape == (d.numel(), 0)
    assert empty.diagnostics["completeness"]["passed"]


def _block_operator():
    """diag(10) ⊕ A: e₀ carries the largest eigenvalue; A (on e₁, …) has separated top and
    bottom eigenvalues over a bulk in [−1, 1]. A block orthogonal to e₀ never reaches it, as
    span(e₁, …) is invariant, and the iteration converges long before it exhausts A."""
    head = torch.tensor([10.0, 5.0, 4.5, 4.0, 3.0, -3.0])
    d = torch.cat([head, torch.linspace(-1.0, 1.0, 394)]).double()
    return (lambda v: v * d), d


def test_the_completeness_check_catches_a_hidden_eigenvalue():
    hvp, d = _block_operator()
    n = d.numel()
    # a warm start in span(e₁, …) that fills the whole block: no random direction reaches e₀
    g = torch.Generator().manual_seed(3)
    warm = torch.randn(n, 6, generator=g, dtype=torch.float64)
    warm[0] = 0.0
    with pytest.raises(TopKCheckError, match="completeness at the top end") as info:
        topk_eigenpairs(hvp, n, 3, "largest", block_size=6, warm_start=warm, generator=g)
    diag = info.value.diagnostics
    # the iteration itself converged and certified A's top 3; only completeness fails
    assert diag["converged"] and diag["residual_max"] <= 1e-10
    assert not diag["completeness"]["passed"]
    assert info.value.result.values.tolist() == pytest.approx([4.0, 4.5, 5.0], abs=1e-12)
    # the check stops at its first Ritz value beyond the threshold 4, which proves an
    # eigenvalue at least as large (10); max|λ| as far as the iteration knows is 5
    top = diag["completeness"]["ends"]["top"]
    assert top["threshold"] == pytest.approx(4.0) and 4.0 + 5e-10 < top["mu"] <= 10.0
    assert top["margin"] == pytest.approx((top["mu"] - 4.0) / 5.0)
    assert f"past the threshold 4 by {top['margin']:.3g}·max|λ|" in str(info.value)
    # the same warm start with one random vector more finds e₀ and passes
    ok = topk_eigenpairs(hvp, n, 3, "largest", block_size=7, warm_start=warm, generator=g)
    assert ok.values.tolist() == pytest.approx([4.5, 5.0, 10.0], abs=1e-12)
    assert ok.diagnostics["completeness"]["passed"]


def test_a_failed_certificate_names_its_residual():
    d = torch.linspace(-1.0, 1.0, 400, dtype=torch.float64)
    hvp, _ = _rotated_diagonal(d)
    with pytest.raises(TopKCheckError, match=r"residual certificate: .* did not converge") as info:
        topk_eigenpairs(hvp, 400, 5, "largest", block_size=5, max_iter=2)
    assert info.value.diagnostics["residual_max"] > 1e-10
    assert isinstance(info.value, RuntimeError)


def test_warm_start_saves_hessian_vector_products(problems):
    """Two consecutive SGD steps (lr 1e-3, as CGD's, on one batch) on the paper's CNN: the
    first step's eigenvectors as the second's first block save a quarter of the block steps
    (cold: the same block size, 20, of random vectors). The saving is bounded by the
    iteration's rate: the warm vectors' residuals (~3e-4·max|λ|) still have to fall to 1e-10."""
    p = problems("cnn-init")
    loss_fn, theta = p["loss_fn"], p["theta"]
    k = 20
    first = hessian_topk(loss_fn, theta, k, "largest", generator=torch.Generator().manual_seed(0))
    theta2 = theta - 1e-3 * grad(loss_fn)(theta)
    calls = {"n": 0}
    base = curvature.make_hvp(loss_fn, theta2)

    def counted(v):
        calls["n"] += 1
        return base(v)

    runs = {}
    for label, warm in [("cold", None), ("warm", first.vectors)]:
        calls["n"] = 0
        gen = torch.Generator().manual_seed(0)
        runs[label] = topk_eigenpairs(counted, theta2, k, "largest", warm_start=warm, generator=gen)
        assert runs[label].diagnostics["hvp_calls"] == calls["n"]
    cold, warm = runs["cold"].diagnostics, runs["warm"].diagnostics
    assert cold["block_size"] == warm["block_size"] == k
    assert warm["iterations"] <= 0.8 * cold["iterations"]
    assert warm["hvp_calls"] < cold["hvp_calls"] and warm["hvps"] < cold["hvps"]
    scale = float(runs["cold"].values.abs().max())
    assert float((runs["cold"].values - runs["warm"].values).abs().max()) <= 1e-10 * scale
    # the exact eigenvectors converge in one block step
    again = hessian_topk(loss_fn, theta, k, "largest", warm_start=first.vectors)
    assert again.diagnostics["iterations"] == 1


def test_consistent_with_cgd_projection(problems):
    """CGD's top-k projection with these pairs equals the one with the dense eigenpairs."""
    p = problems("cnn-init")
    g = grad(p["loss_fn"])(p["theta"])
    lr = 5.0 / float(p["values"].max())
    for prune_set in cgd.PRUNE_SETS:
        result = hessian_topk(p["loss_fn"], p["theta"], 5, prune_set, lr=lr)
        exact = cgd.project_gradient(
            g, p["values"], p["vectors"], lr, prune_set, "top_k", 5, null_tol=p["null_tol"]
        )
        ours = cgd.project_gradient(
            g, result.values, result.vectors, lr, prune_set, "top_k", 5, null_tol=result.null_tol
        )
        # the same eigenvalues are selected by select_pruned on either side
        idx = cgd.select_pruned(result.values, lr, prune_set, "top_k", 5, null_tol=result.null_tol)
        assert idx.tolist() == list(range(5))
        assert float((exact - ours).norm()) <= 1e-8 * float(g.norm())


def test_float32(problems):
    p = problems("cnn-init")
    theta = p["theta"].float()
    result = hessian_topk(p["loss_fn"], theta, 5, "smallest", dtype=None)
    assert result.vectors.dtype == torch.float32 and result.values.dtype == torch.float64
    assert result.diagnostics["tol"] == 1e-5 and result.diagnostics["residual_max"] <= 1e-5
    expected = p["values"][:5]
    assert float((result.values - expected).abs().max()) <= 1e-5 * p["scale"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(problems):
    p = problems("mlp-sgd")
    theta = p["theta"].cuda()
    result = hessian_topk(p["loss_fn"], theta, 20, "chaotic", lr=0.5)
    assert result.vectors.device.type == "cuda"
    idx = _reference(p, "chaotic", 20, 0.5)
    assert float((result.values.cpu() - p["values"][idx]).abs().max()) <= 1e-8 * p["scale"]


def test_bad_arguments():
    hvp, d = _block_operator()
    n = d.numel()
    with pytest.raises(ValueError, match="which must be one of"):
        topk_eigenpairs(hvp, n, 3, "top")
    with pytest.raises(ValueError, match="needs a positive finite lr"):
        topk_eigenpairs(hvp, n, 3, "chaotic")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        topk_eigenpairs(hvp, n, 0, "largest")
    with pytest.raises(ValueError, match="warm_start must be N×m"):
        topk_eigenpairs(hvp, n, 3, "largest", warm_start=torch.zeros(n + 1, 2))
    with pytest.raises(ValueError, match="max_basis"):
        topk_eigenpairs(hvp, n, 3, "largest", block_size=8, max_basis=10)


@pytest.mark.slow
def test_paper_mlp_matches_the_full_dense_eigh():
    """The paper's MLP (after SGD) against curvature.dense_hessian + torch.linalg.eigh itself
    (~25 s for the 5350×5350 eigh)."""
    model = _trained("mlp", 200)
    x, y = image_batch(8, seed=300)
    loss_fn = models.make_loss_fn(model, x, y)
    theta = models.flat_params(model).double()
    values, vectors = torch.linalg.eigh(curvature.dense_hessian(loss_fn, theta))
    scale = float(values.abs().max())
    p = {
        "values": values,
        "vectors": vectors,
        "null_tol": 1e-10 * scale,
        "singular": True,
        "scale": scale,
    }
    for which, lr in [("largest", None), ("negative", None), ("chaotic", 0.5)]:
        for k in KS:
            result = hessian_topk(loss_fn, theta, k, which, lr=lr)
            _assert_matches(result, p, _reference(p, which, k, lr or 1.0), k)
