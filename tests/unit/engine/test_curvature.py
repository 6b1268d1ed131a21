"""Hessian eigenpairs (chaosgd.engine.curvature): dense reference, exact low-rank method, auto."""

import math

import pytest
import torch
from torch.func import grad

from chaosgd.engine import cgd, curvature, eigenpairs, models
from chaosgd.engine.curvature import hessian_eigenpairs

from support.engine import image_batch

LR = 1e-3


pytestmark = pytest.mark.usefixtures("one_thread")


def _problem(arch, hidden, data_seed):
    """(loss_fn, θ) of a freshly initialized model (global seed 0) on 8 random images."""
    torch.manual_seed(0)
    model = models.build_model(arch, hidden=hidden)
    x, y = image_batch(8, seed=data_seed)
    return models.make_loss_fn(model, x, y), models.flat_params(model)


def _trained(arch, activation, hidden, steps):
    """A model after ``steps`` plain SGD steps (batch 8, lr 0.05) on a fixed random data set."""
    torch.manual_seed(11)
    model = models.build_model(arch, activation, hidden=hidden)
    x, y = image_batch(64, seed=5)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(6)
    for _ in range(steps):
        idx = torch.randint(0, 64, (8,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model


# (arch, activation, SGD steps before, MLP hidden width): the paper's MLP (hidden 20, N = 5350)
# once, narrower MLPs (N = 1612) for the other cases to keep the dense reference cheap
# the paper's MLP is in the slow tier: its dense reference takes ~25 s on 2 cores
PAPER_MLP = pytest.param(("mlp", "relu", 200, 20), marks=pytest.mark.slow, id="mlp20-relu-200steps")
CASES = [
    ("mlp", "relu", 0, 6),
    PAPER_MLP,
    ("mlp", "sigmoid", 200, 6),
    ("cnn", "relu", 0, None),
    ("cnn", "relu", 200, None),
]


@pytest.fixture(
    scope="module",
    params=CASES,
    ids=lambda c: f"{c[0]}{c[3] or ''}-{c[1]}-{c[2]}steps",
)
def pair(request):
    """Dense and low-rank eigenpairs of one minibatch Hessian (batch 8), with its gradient."""
    arch, activation, steps, hidden = request.param
    model = _trained(arch, activation, hidden=hidden or 20, steps=steps)
    x, y = image_batch(8, seed=100 + steps)
    loss_fn = models.make_loss_fn(model, x, y)
    theta = models.flat_params(model).double()
    dense = hessian_eigenpairs(loss_fn, theta, "dense")
    gen = torch.Generator().manual_seed(0)
    # the MLP's sketch grows from scratch; the CNN (rank ≈ N/2) starts from a hint, as in training
    hint = dense.rank if arch == "cnn" else None
    low = hessian_eigenpairs(loss_fn, theta, "lowrank", generator=gen, sketch_hint=hint)
    return dict(dense=dense, low=low, grad=grad(loss_fn)(theta), arch=arch)


def _rel(a, b, scale):
    return float((a - b).norm() / scale.norm())


def test_lowrank_spectrum_matches_dense(pair):
    dense, low = pair["dense"], pair["low"]
    assert dense.method == "dense" and low.method == "lowrank"
    assert dense.values.numel() == dense.vectors.shape[0] == dense.vectors.shape[1]
    assert 0 < low.rank == dense.rank < dense.n_params
    assert low.values.numel() == low.vectors.shape[1] == low.rank
    assert math.isclose(low.null_tol, dense.null_tol, rel_tol=1e-9)
    assert bool((low.values[1:] >= low.values[:-1]).all())
    lam = dense.values[dense.nonzero_mask()]
    assert float((lam - low.values).abs().max()) <= 1e-12 * float(lam.abs().max())
    eye = torch.eye(low.rank, dtype=low.vectors.dtype)
    assert float((low.vectors.T @ low.vectors - eye).abs().max()) < 1e-12
    # the gradient's part outside the nonzero eigenspace is the same for both methods, and for
    # the MLP it vanishes: the gradient lies in the Hessian's range (the CNN at init has a few
    # eigenvalues below null_tol that carry ~1e-7 of the gradient's norm)
    g = pair["grad"]
    v = low.vectors
    vd = dense.vectors[:, dense.nonzero_mask()]
    outside_low, outside_dense = g - v @ (v.T @ g), g - vd @ (vd.T @ g)
    assert _rel(outside_low, outside_dense, g) <= 1e-10
    if pair["arch"] == "mlp":
        assert float(outside_low.norm()) < 1e-9 * float(g.norm())


@pytest.mark.parametrize("prune_set", cgd.PRUNE_SETS)
@pytest.mark.parametrize(
    "selection, k", [("all", None), ("top_k", 5), ("top_k", 20), ("random_k", 7)]
)
def test_projected_gradients_agree(pair, prune_set, selection, k):
    dense, low, g = pair["dense"], pair["low"], pair["grad"]
    out, pruned = {}, {}
    for name, ep in [("dense", dense), ("low", low)]:
        gen = torch.Generator().manual_seed(42)  # random_k: same picks among the same set
        out[name], idx = cgd.project_gradient(
            g, ep.values, ep.vectors, LR, prune_set, selection, k, gen,
            null_tol=ep.null_tol, return_indices=True,
        )  # fmt: skip
        pruned[name] = ep.values[idx]
    # the same eigenpairs are pruned (never null ones) ...
    assert pruned["dense"].numel() == pruned["low"].numel() > 0
    scale = float(dense.values.abs().max())
    assert torch.allclose(pruned["dense"], pruned["low"], rtol=0, atol=1e-12 * scale)
    # ... and the projected gradients agree to round-off, relative to the gradient
    assert _rel(out["dense"], out["low"], g) <= 1e-10
    assert float((out["dense"] - g).norm()) > 1e-6 * float(g.norm())  # something was removed


def test_dense_hessian_matches_finite_differences():
    """Dense H·v against central differences of the autograd gradient (smooth model, float64)."""
    for arch in ("mlp", "cnn"):
        torch.manual_seed(0)
        model = models.build_model(arch, "sigmoid", hidden=4)
        x, y = image_batch(8, seed=1)
        loss_fn = models.make_loss_fn(model, x, y)
        theta = models.flat_params(model).double()
        h = curvature.dense_hessian(loss_fn, theta)
        assert torch.allclose(h, h.T, rtol=0, atol=1e-14 * float(h.abs().max()))

        def autograd_grad(t):
            t = t.clone().requires_grad_(True)
            return torch.autograd.grad(loss_fn(t), t)[0]

        gen = torch.Generator().manual_seed(2)
        for _ in range(3):
            v = torch.randn(theta.numel(), generator=gen, dtype=torch.float64)
            v /= v.norm()
            eps = 1e-4
            fd = (autograd_grad(theta + eps * v) - autograd_grad(theta - eps * v)) / (2 * eps)
            hv = h @ v
            assert float((fd - hv).norm()) <= 1e-7 * float(hv.norm())


def test_lowrank_exact_on_known_low_rank_quadratic():
    """Rotated quadratic with prescribed eigenvalues (repeated ones included) and a null space."""
    gen = torch.Generator().manual_seed(3)
    n = 300
    basis, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    eig = torch.cat(
        [
            torch.tensor([-4.0, -4.0, -1e-3, 1e-6, 0.5, 2.0, 2.0, 2500.0]),
            torch.linspace(0.1, 3.0, 30),
        ]
    ).double()
    r = eig.numel()
    h = (basis[:, :r] * eig) @ basis[:, :r].T

    def loss_fn(t):
        return 0.5 * t @ (h @ t)

    theta = torch.randn(n, generator=gen, dtype=torch.float64)
    res = hessian_eigenpairs(loss_fn, theta, "lowrank", generator=gen)
    assert res.rank == r
    assert torch.allclose(res.values, torch.sort(eig).values, rtol=0, atol=1e-12 * 2500)
    assert torch.allclose(res.matrix(), h, rtol=0, atol=1e-11)
    auto = hessian_eigenpairs(loss_fn, theta, "auto", generator=gen)
    assert auto.method == "lowrank" and auto.rank == r


def test_sketch_hint_small_or_exact_gives_the_same_result():
    loss_fn, theta = _problem("mlp", hidden=6, data_seed=9)
    ref = hessian_eigenpairs(loss_fn, theta, "lowrank", generator=torch.Generator().manual_seed(1))
    for hint in (0, 10, ref.rank):
        res = hessian_eigenpairs(
            loss_fn, theta, "lowrank", generator=torch.Generator().manual_seed(2), sketch_hint=hint
        )
        assert res.rank == ref.rank
        assert float((res.matrix() - ref.matrix()).abs().max()) < 1e-12 * float(
            ref.values.abs().max()
        )
        assert res.diagnostics["sketch_size"] > res.rank
    assert res.diagnostics["rounds"] == 1  # hint = rank: no growth
    assert ref.values.dtype == torch.float64 and ref.vectors.dtype == torch.float64


def test_lowrank_is_deterministic_given_a_generator():
    loss_fn, theta = _problem("mlp", hidden=6, data_seed=4)
    runs = [
        hessian_eigenpairs(loss_fn, theta, "lowrank", generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert torch.equal(runs[0].values, runs[1].values)
    assert torch.equal(runs[0].vectors, runs[1].vectors)


def test_auto_picks_lowrank_for_the_mlp_and_dense_for_the_cnn():
    loss_fn, theta = _problem("mlp", hidden=4, data_seed=12)
    res = hessian_eigenpairs(loss_fn, theta, "auto")
    assert res.method == "lowrank" and "fallback" not in res.diagnostics
    # a sketch that would outgrow the crossover falls back to dense
    res = hessian_eigenpairs(loss_fn, theta, "auto", max_rank_fraction=0.02)
    assert res.method == "dense" and "crossover" in res.diagnostics["fallback"]

    loss_fn, theta = _problem("cnn", hidden=20, data_seed=12)
    res = hessian_eigenpairs(loss_fn, theta, "auto", sketch_hint=int(0.45 * theta.numel()))
    assert res.method == "dense" and "crossover" in res.diagnostics["fallback"]
    assert res.rank > 0.3 * theta.numel()  # the CNN's rank is indeed past the crossover


def test_failed_check_falls_back_to_dense_or_raises():
    loss_fn, theta = _problem("mlp", hidden=3, data_seed=13)
    # an unattainable tolerance makes the (genuine) residual check fail
    res = hessian_eigenpairs(loss_fn, theta, "auto", residual_tol=0.0)
    assert res.method == "dense" and "residual" in res.diagnostics["fallback"]
    with pytest.raises(curvature.LowRankCheckError, match="residual") as info:
        hessian_eigenpairs(loss_fn, theta, "lowrank", residual_tol=0.0)
    assert info.value.diagnostics["residual"] > 0


def test_bad_arguments():
    theta = torch.zeros(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="method"):
        hessian_eigenpairs(lambda t: (t**2).sum(), theta, "eig")
    with pytest.raises(ValueError, match="theta"):
        hessian_eigenpairs(lambda t: (t**2).sum(), torch.zeros(2, 2), "dense")
    with pytest.raises(ValueError, match="theta"):
        hessian_eigenpairs(lambda t: (t**2).sum(), torch.tensor([1.0, float("nan")]), "dense")
    for method in ("dense", "lowrank", "auto"):
        # |t|^1.5 has an infinite second derivative at 0
        with pytest.raises(ValueError, match="Hessian"):
            hessian_eigenpairs(lambda t: (t.abs() ** 1.5).sum(), theta, method)


def test_zero_hessian():
    theta = torch.ones(50, dtype=torch.float64)
    res = hessian_eigenpairs(lambda t: t.sum(), theta, "lowrank")
    assert res.rank == 0 and res.values.numel() == 0 and res.vectors.shape == (50, 0)
    dense = hessian_eigenpairs(lambda t: t.sum(), theta, "dense")
    assert dense.rank == 0 and dense.null_tol == 0.0


# -- the MLP's range basis -------------------------------------------------------------------


@pytest.mark.parametrize(
    "activation, steps, hidden, batch, duplicate",
    [
        ("relu", 0, 6, 8, False),
        pytest.param("relu", 200, 20, 8, False, marks=pytest.mark.slow),  # the paper's MLP
        ("sigmoid", 200, 6, 5, True),
    ],
)
def test_range_basis_eigenpairs_match_dense(activation, steps, hidden, batch, duplicate):
    """Rayleigh-Ritz on the MLP's range basis (with its reduced-model Hessian, and from full
    Hessian-vector products) gives the dense eigenpairs; a repeated image (rank-deficient
    inputs) shrinks the basis and changes nothing."""
    model = _trained("mlp", activation, hidden=hidden, steps=steps)
    x, y = image_batch(batch, seed=7)
    if duplicate:
        x[1] = x[0]
    loss_fn = models.make_loss_fn(model, x, y)
    theta = models.flat_params(model).double()
    dense = hessian_eigenpairs(loss_fn, theta, "dense").nonzero()
    g = grad(loss_fn)(theta)
    inputs = batch - int(duplicate)
    for basis in (models.hessian_range_basis(model, x, y), models.hessian_range_basis(model, x)):
        assert basis.dim == hidden * inputs + hidden + 10 * hidden + 10
        low = hessian_eigenpairs(
            loss_fn, theta, "lowrank", generator=torch.Generator().manual_seed(0), range_basis=basis
        )
        assert low.rank == dense.rank and low.method == "lowrank"
        scale = float(dense.values.abs().max())
        assert float((low.values - dense.values).abs().max()) <= 1e-12 * scale
        assert low.diagnostics["residual"] <= 1e-12 and low.diagnostics["probe_ratio"] <= 1e-12
        for prune_set in cgd.PRUNE_SETS:
            a = cgd.project_gradient(g, dense.values, dense.vectors, LR, prune_set)
            b = cgd.project_gradient(g, low.values, low.vectors, LR, prune_set)
            assert _rel(a, b, g) <= 1e-10, prune_set


def test_reduced_hessian_is_the_dense_hessian_in_the_basis():
    """SᵀHS from the reduced model equals the dense Hessian projected with an explicit S."""
    model = _trained("mlp", "relu", hidden=6, steps=50)
    x, y = image_batch(8, seed=3)
    theta = models.flat_params(model).double()
    basis = models.hessian_range_basis(model, x, y)
    s = basis.expand(torch.eye(basis.dim, dtype=torch.float64))  # d×N, orthonormal rows
    assert torch.allclose(s @ s.T, torch.eye(basis.dim, dtype=torch.float64), atol=1e-13)
    h = curvature.dense_hessian(models.make_loss_fn(model, x, y), theta)
    reference = s @ h @ s.T
    assert torch.allclose(basis.reduced_hessian(theta), reference, rtol=0, atol=1e-13)
    # and H = S (SᵀHS) Sᵀ: the basis holds the whole range
    assert float((h - s.T @ reference @ s).abs().max()) <= 1e-13 * float(h.abs().max())


def test_a_basis_missing_part_of_the_range_fails_its_checks():
    model = _trained("mlp", "relu", hidden=6, steps=50)
    x, y = image_batch(8, seed=3)
    loss_fn = models.make_loss_fn(model, x, y)
    theta = models.flat_params(model).double()
    good = models.hessian_range_basis(model, x, y)
    start, rows, cols, q = good.blocks[0]
    short = eigenpairs.BlockBasis(good.n, ((start, rows, cols, q[:, :-1]),) + good.blocks[1:])
    with pytest.raises(curvature.LowRankCheckError, match="probe ratio"):
        hessian_eigenpairs(loss_fn, theta, "lowrank", range_basis=short)
    auto = hessian_eigenpairs(loss_fn, theta, "auto", range_basis=short)
    assert auto.method == "dense" and "probe ratio" in auto.diagnostics["fallback"]
    # a reduced Hessian that is not the model's (another batch's labels) fails the residual
    wrong = models.hessian_range_basis(model, x, (y + 1) % 10)
    with pytest.raises(curvature.LowRankCheckError, match="residual"):
        hessian_eigenpairs(loss_fn, theta, "lowrank", range_basis=wrong)


def test_only_the_mlp_has_a_range_basis():
    x, y = image_batch(8, seed=0)
    assert models.hessian_range_basis(models.build_model("cnn"), x, y) is None
    assert models.hessian_range_basis(models.build_model("mlp"), x, y).dim == 390


# -- the layers: forming the dense Hessian by layers, decomposing it on their row ranges --------


def _layered(arch, activation, steps):
    model = _trained(arch, activation, hidden=6, steps=steps)
    x, y = image_batch(8, seed=9)
    loss_fn = models.make_loss_fn(model, x, y)
    return model, x, y, loss_fn, models.flat_params(model).double()


@pytest.mark.parametrize(
    "arch, activation, steps",
    [("cnn", "relu", 0), ("cnn", "relu", 200), ("mlp", "relu", 50), ("cnn", "sigmoid", 50)],
)
def test_the_hessian_formed_by_layers_is_the_full_one(arch, activation, steps):
    """Each layer's columns from the loss of the layers from it on (plus, in a ReLU network, the
    largest layer's Gauss-Newton block): the same matrix entry by entry, fewer products."""
    model, x, y, loss_fn, theta = _layered(arch, activation, steps)
    layers = models.hessian_layer_blocks(model, x, y)
    sizes = [sum(p.numel() for p in m.parameters()) for m in model.children()]
    sizes = [s for s in sizes if s]
    assert list(layers.bounds) == [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    n = theta.numel()
    full = curvature.dense_hessian(loss_fn, theta)
    h, hvps = curvature._dense_by_layers(loss_fn, theta, layers, None, check=2)
    assert float((h - full).abs().max()) <= 1e-13 * float(full.abs().max())
    if activation == "relu":
        assert layers.linear == sizes.index(max(sizes))
        assert hvps == n - max(sizes) + 2
    else:
        assert layers.linear is None and hvps == n + 2
    ref = hessian_eigenpairs(loss_fn, theta, "dense")
    fast = hessian_eigenpairs(loss_fn, theta, "dense", layer_blocks=layers)
    assert fast.diagnostics["formed"] == "by layers"
    assert fast.vectors.shape == (n, n)  # ``dense`` still gives all N pairs
    scale = float(ref.values.abs().max())
    assert float((ref.values - fast.values).abs().max()) <= 1e-13 * scale


@pytest.mark.parametrize(
    "arch, activation, steps", [("cnn", "relu", 0), ("cnn", "relu", 200), ("cnn", "sigmoid", 50)]
)
def test_auto_decomposes_on_the_layers_row_ranges_exactly(arch, activation, steps):
    """``auto`` with the layers: the nonzero eigenpairs of the dense reference (eigenvalues to
    1e-13 of max|λ|, every CGD projection to 1e-10) from a Rayleigh-Ritz on the layers' row
    ranges, whose dimension is the rank here, not N."""
    model, x, y, loss_fn, theta = _layered(arch, activation, steps)
    ref = hessian_eigenpairs(loss_fn, theta, "dense")
    gen = torch.Generator().manual_seed(0)
    res = hessian_eigenpairs(
        loss_fn, theta, "auto", generator=gen, **models.hessian_structure(model, x, y)
    )
    assert res.method == "dense" and res.diagnostics["decomposed"] == "by layer ranges"
    assert res.rank == ref.rank < theta.numel() and res.values.numel() == ref.rank
    assert res.diagnostics["basis_size"] < 0.8 * theta.numel()
    scale = float(ref.values.abs().max())
    assert float((ref.nonzero().values - res.values).abs().max()) <= 1e-13 * scale
    assert res.diagnostics["residual"] <= 1e-10 and res.diagnostics["probe_ratio"] <= 1e-10
    g = grad(loss_fn)(theta)
    for prune_set in cgd.PRUNE_SETS:
        a = cgd.project_gradient(g, ref.values, ref.vectors, LR, prune_set)
        b = cgd.project_gradient(g, res.values, res.vectors, LR, prune_set)
        assert _rel(a, b, g) <= 1e-10, prune_set


def test_a_layer_range_that_misses_a_direction_falls_back_to_the_full_eigh(monkeypatch):
    """The row-range basis is checked like every low-rank result: one direction taken out of
    the largest layer's range fails the probe check, and the same matrix is decomposed in full."""
    model, x, y, loss_fn, theta = _layered("cnn", "relu", 200)
    structure = models.hessian_structure(model, x, y)
    ok = hessian_eigenpairs(loss_fn, theta, "auto", **structure)
    assert ok.diagnostics["decomposed"] == "by layer ranges"
    exact = curvature._layer_range_basis

    def short(h, bounds, *args):
        basis = exact(h, bounds, *args)
        blocks = list(basis.blocks)
        i = max(range(len(blocks)), key=lambda j: blocks[j][2])
        start, rows, cols, q = blocks[i]
        assert q is not None and q.shape[1] > 1
        blocks[i] = (start, rows, cols, q[:, 1:])
        plain = eigenpairs.BlockBasis(basis.n, tuple(blocks))
        return eigenpairs.BlockBasis(
            basis.n, plain.blocks, lambda t: plain.project(plain.project(h).T)
        )

    monkeypatch.setattr(curvature, "_layer_range_basis", short)
    res = hessian_eigenpairs(loss_fn, theta, "auto", **structure)
    assert res.diagnostics["decomposed"].startswith("full (low-rank check on the range basis")
    assert res.vectors.shape == (theta.numel(), theta.numel())
    scale = float(ok.values.abs().max())
    assert float((res.nonzero().values - ok.values).abs().max()) <= 1e-13 * scale


def test_layer_blocks_reject_bad_bounds_and_name_the_problem():
    with pytest.raises(ValueError, match="rise strictly"):
        eigenpairs.LayerBlocks((0, 5, 5), lambda t, i: None)
    with pytest.raises(ValueError, match="both"):
        eigenpairs.LayerBlocks((0, 5), lambda t, i: None, linear=0)
    with pytest.raises(ValueError, match="outside"):
        eigenpairs.LayerBlocks((0, 5), lambda t, i: None, 1, lambda t: t)
    model, x, y, loss_fn, theta = _layered("cnn", "relu", 0)
    layers = models.hessian_layer_blocks(model, x, y)
    with pytest.raises(ValueError, match="cover 1158 parameters, theta has 1157"):
        curvature._dense_by_layers(loss_fn, theta[:-1], layers, None, 2)


def test_layers_of_a_named_sequential_and_of_a_model_without_them():
    named = torch.nn.Sequential(
        __import__("collections").OrderedDict(
            [
                ("flat", torch.nn.Flatten()),
                ("fc1", torch.nn.Linear(256, 7)),
                ("act", torch.nn.ReLU()),
                ("fc2", torch.nn.Linear(7, 10)),
            ]
        )
    ).double()
    x, y = image_batch(8, seed=2)
    loss_fn = models.make_loss_fn(named, x, y)
    theta = models.flat_params(named)
    layers = models.hessian_layer_blocks(named, x, y)
    assert layers.bounds == (0, 256 * 7 + 7, 256 * 7 + 7 + 80) and layers.linear == 0
    h, _ = curvature._dense_by_layers(loss_fn, theta, layers, None, 2)
    full = curvature.dense_hessian(loss_fn, theta)
    assert float((h - full).abs().max()) <= 1e-13 * float(full.abs().max())

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = named

        def forward(self, x):
            return self.inner(x)

    assert models.hessian_layer_blocks(Wrapped(), x, y) is None


def test_a_wrong_gauss_newton_layer_is_caught_and_the_hessian_formed_in_full():
    """A sigmoid has curvature of its own: its layers come without a Gauss-Newton layer, and a
    ReLU network's layers forced on it fail their check, so the Hessian is formed in full."""
    x, y = image_batch(8, seed=9)
    torch.manual_seed(0)
    sigmoid = models.build_model("cnn", "sigmoid")
    assert models.hessian_layer_blocks(sigmoid, x, y).linear is None
    torch.manual_seed(0)
    relu = models.build_model("cnn", "relu")
    forced = models.hessian_layer_blocks(relu, x, y)
    loss_fn = models.make_loss_fn(sigmoid, x, y)
    theta = models.flat_params(sigmoid).double()
    res = hessian_eigenpairs(loss_fn, theta, "dense", layer_blocks=forced)
    assert res.diagnostics["formed"] == "full (the layer-block check failed)"
    ref = hessian_eigenpairs(loss_fn, theta, "dense")
    assert torch.equal(res.values, ref.values)


def test_a_zero_hessian_by_layers_has_rank_zero():
    """Every layer's row range empty: the full eigh of the (zero) matrix, rank 0, no error."""
    layers = eigenpairs.LayerBlocks((0, 10, 20), lambda th, i: (lambda tail: (tail * 0).sum()))
    res = hessian_eigenpairs(
        lambda t: (t * 0).sum(), torch.zeros(20, dtype=torch.float64), "auto", layer_blocks=layers
    )
    assert res.rank == 0 and res.diagnostics["formed"] == "by layers"
    assert res.diagnostics["decomposed"].startswith("full (every layer's row range is empty")
