"""Models and their flat-parameter functional view (chaosgd.engine.models)."""

import pytest
import torch
from torch import nn
from torch.func import grad, vmap

from chaosgd.engine import models
from chaosgd.planning.vocab import ARCHITECTURES


def _batch(n=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 16, 16, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_output_shape_and_activation(arch, activation):
    torch.manual_seed(0)
    model = models.build_model(arch, activation)
    x, _ = _batch(5)
    assert model(x).shape == (5, 10)
    act = nn.ReLU if activation == "relu" else nn.Sigmoid
    other = nn.Sigmoid if activation == "relu" else nn.ReLU
    assert any(isinstance(m, act) for m in model.modules())
    assert not any(isinstance(m, other) for m in model.modules())


def test_mlp_layout_and_size():
    model = models.build_model("mlp")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(256, 20), (20, 10)]
    assert models.num_params(model) == 5350
    wide = models.build_model("mlp", hidden=7, n_classes=3)
    assert models.num_params(wide) == 256 * 7 + 7 + 7 * 3 + 3


def test_cnn_matches_notes():
    model = models.build_model("cnn")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 4), (4, 4), (4, 8), (8, 8)]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d"] * 4 + ["Flatten", "Linear"]
    assert (model[-1].in_features, model[-1].out_features) == (8, 10)
    assert models.num_params(model) == sum(p.numel() for p in model.parameters())


def test_default_initialisation_follows_torch_seed():
    torch.manual_seed(3)
    a = models.build_model("mlp")
    torch.manual_seed(3)
    ref = nn.Linear(256, 20)
    assert torch.equal(a[1].weight, ref.weight) and torch.equal(a[1].bias, ref.bias)
    torch.manual_seed(3)
    b = models.build_model("mlp")
    assert torch.equal(models.flat_params(a), models.flat_params(b))


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(arch="vgg"), "arch"),
        (dict(arch="mlp", activation="tanh"), "activation"),
        (dict(arch="resnet", depth=10), "depth must be 6n"),
        (dict(arch="resnet", depth=2), "depth must be 6n"),
        (dict(arch="cnn", image_side=8), "at least 16"),
        (dict(arch="mlp", image_side=0), "side"),
    ],
)
def test_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        models.build_model(**kwargs)


def test_flat_params_order_copy_and_unflatten_views():
    torch.manual_seed(0)
    model = models.build_model("cnn")
    theta = models.flat_params(model)
    assert theta.dim() == 1 and theta.numel() == models.num_params(model)
    expected = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])
    assert torch.equal(theta, expected)
    theta.add_(1.0)  # a copy: the model is untouched
    assert torch.equal(models.flat_params(model), expected)

    parts = models.unflatten(model, theta)
    assert list(parts) == [n for n, _ in model.named_parameters()]
    for (name, p), v in zip(model.named_parameters(), parts.values()):
        assert v.shape == p.shape
    theta.zero_()  # views: they follow theta
    assert all(float(v.abs().sum()) == 0.0 for v in parts.values())
    with pytest.raises(ValueError, match="theta"):
        models.unflatten(model, theta[:-1])


def test_assign_flat_params_round_trip():
    torch.manual_seed(0)
    model = models.build_model("mlp", hidden=5)
    theta = torch.randn(models.num_params(model))
    models.assign_flat_params(model, theta)
    assert torch.equal(models.flat_params(model), theta)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_loss_fn_matches_module_and_casts_to_theta_dtype(arch):
    torch.manual_seed(1)
    model = models.build_model(arch)
    x, y = _batch()
    loss_fn = models.make_loss_fn(model, x, y)
    theta = models.flat_params(model)
    ref = nn.functional.cross_entropy(model(x), y)
    assert torch.allclose(loss_fn(theta), ref, rtol=1e-6, atol=0)

    # float64 θ through the float32 model: equals a float64 copy of the module
    loss64 = loss_fn(theta.double())
    assert loss64.dtype == torch.float64
    ref64 = nn.functional.cross_entropy(model.double()(x.double()), y)
    assert torch.allclose(loss64, ref64, rtol=1e-14, atol=0)


def test_batched_forward_and_batched_grads_match_loops():
    torch.manual_seed(2)
    model = models.build_model("mlp", hidden=6)
    x, y = _batch()
    thetas = torch.randn(3, models.num_params(model), dtype=torch.float64) * 0.1
    logits = models.batched_forward(model, thetas, x)
    forward = models.make_forward(model)
    assert logits.shape == (3, 8, 10)
    for i in range(3):
        assert torch.allclose(logits[i], forward(thetas[i], x), rtol=1e-12, atol=1e-14)

    xs = torch.stack([_batch(seed=s)[0] for s in range(3)])
    per_model = models.batched_forward(model, thetas, xs, same_batch=False)
    for i in range(3):
        assert torch.allclose(per_model[i], forward(thetas[i], xs[i]), rtol=1e-12, atol=1e-14)

    losses = models.make_batched_loss_fn(model, x, y)(thetas)
    loss_fn = models.make_loss_fn(model, x, y)
    grads = vmap(grad(loss_fn))(thetas)
    for i in range(3):
        assert torch.allclose(losses[i], loss_fn(thetas[i]), rtol=1e-13, atol=0)
        assert torch.allclose(grads[i], grad(loss_fn)(thetas[i]), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_init_distance_from_the_fan_ins_matches_sampling(arch):
    """App. A.8: √E‖θ₁ − θ₂‖² from the fan-ins against 120 pairs of real initializations."""
    expected = models.init_distance(models.build_model(arch))
    dists = []
    for s in range(120):
        torch.manual_seed(10_000 + 2 * s)
        a = models.flat_params(models.build_model(arch))
        torch.manual_seed(10_001 + 2 * s)
        b = models.flat_params(models.build_model(arch))
        dists.append(float((a - b).norm()))
    d = torch.tensor(dists, dtype=torch.float64)
    rms = float(d.square().mean().sqrt())
    stderr = float(d.std() / len(dists) ** 0.5)
    assert abs(rms - expected) <= 4 * stderr
    assert abs(float(d.mean()) - expected) <= 4 * stderr + 0.01 * expected
    # every parameter lies inside its bound, and the bounds are tight
    torch.manual_seed(0)
    model = models.build_model(arch)
    for (count, bound), p in zip(models.init_bounds(model), model.parameters()):
        assert count == p.numel()
        top = float(p.detach().abs().max())
        # tight: of 30 or more uniform draws, the largest is above half the bound (1 − 2⁻³⁰)
        assert top <= bound and (p.numel() < 30 or top >= 0.5 * bound)


def test_init_distance_of_the_paper_mlp():
    # W1: 5120·2/(3·256), b1: 20·2/(3·256), W2: 200·2/(3·20), b2: 10·2/(3·20)
    exact = (5120 * 2 / 768 + 20 * 2 / 768 + 200 * 2 / 60 + 10 * 2 / 60) ** 0.5
    assert models.init_distance(models.build_model("mlp")) == pytest.approx(exact, rel=1e-12)
    assert exact == pytest.approx(4.515, abs=1e-3)
    assert exact * 2**0.5 == pytest.approx(6.38, abs=0.01)  # the value App. A.8 quotes


def _paper_cnn(act):
    """App. B.1's CNN written out by hand, as the reference code builds it."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), act(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 4, 3, padding=1), act(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 8, 3, padding=1), act(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 3, padding=1), act(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(8, 10),
    )  # fmt: skip


def _paper_mlp(act, hidden):
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(256, hidden), act(), torch.nn.Linear(hidden, 10)
    )


@pytest.mark.parametrize("arch, activation, hidden", [("mlp", "relu", 20), ("mlp", "sigmoid", 7),
                                                      ("cnn", "relu", 20), ("cnn", "sigmoid", 3)])  # fmt: skip
def test_models_built_from_their_layers_are_the_papers_under_the_same_seed(
    arch, activation, hidden
):
    """The layer registry builds the very modules, in the same order, so a seed gives the same
    initialization as the paper's hand-written networks, and the planner's count is theirs."""
    act = torch.nn.ReLU if activation == "relu" else torch.nn.Sigmoid
    torch.manual_seed(5)
    ref = _paper_mlp(act, hidden) if arch == "mlp" else _paper_cnn(act)
    torch.manual_seed(5)
    built = models.build_model(arch, activation, hidden)
    assert [type(m) for m in built] == [type(m) for m in ref]
    assert built.state_dict().keys() == ref.state_dict().keys()
    for key, value in ref.state_dict().items():
        assert torch.equal(built.state_dict()[key], value), key
    count = sum(p.numel() for p in ref.parameters())
    assert models.num_params(built) == count == ARCHITECTURES[arch].n_params(hidden)


# -- beyond the paper: the ResNet (BatchNorm, skip connections) and the MLP on 28×28 images ------
# The paper studies neither BatchNorm nor skip connections (Discussion); its MLP is 256-20-10 on
# 16×16 images (Sec. 3), its text names 784-20-10 on FashionMNIST at full resolution.


def _images(n, side, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, side, side, generator=g, dtype=dtype)
    return x, torch.randint(0, 10, (n,), generator=g)


def _tiny_resnet(activation="relu", width=3, side=8, seed=0):
    torch.manual_seed(seed)
    return models.build_model("resnet", activation, width, depth=8, image_side=side).double()


def _buffers(model):
    return {name: b.clone() for name, b in model.named_buffers()}


def _same_buffers(model, before):
    now = dict(model.named_buffers())
    return now.keys() == before.keys() and all(torch.equal(now[k], before[k]) for k in before)


# ResNet-(6n+2) at widths 4, 8, 16: the stem 9w + 2w, per stage n blocks of two conv3×3 and two
# BNs, a 1×1 projection + BN entering stages 2 and 3, linear 4w·10 + 10
RESNET_N = {(8, 4): 5142, (8, 8): 19810, (8, 16): 77754,
            (20, 4): 17462, (20, 8): 68642, (20, 16): 272186}  # fmt: skip


@pytest.mark.parametrize("depth, width", sorted(RESNET_N))
def test_resnet_parameter_count_is_the_layers_and_does_not_depend_on_the_side(depth, width):
    arch = ARCHITECTURES["resnet"]
    for side in (16, 28):
        assert arch.n_params(width, side=side, depth=depth) == RESNET_N[depth, width]
    if width == 8:
        return  # the widths 4 and 16 are built; 8 is the formula's
    for side in (16, 28):
        model = models.build_model("resnet", hidden=width, depth=depth, image_side=side)
        assert models.num_params(model) == RESNET_N[depth, width]
        buffers = sum(b.numel() for _, b in model.named_buffers())
        assert buffers > 0 and models.flat_params(model).numel() == RESNET_N[depth, width]


def test_resnet20_of_width_16_is_the_cifar_count_less_the_two_missing_input_channels():
    # He et al.'s 0.27M has 3 input channels and the stem's 3×3 conv sees 2 fewer here
    assert ARCHITECTURES["resnet"].n_params(16, depth=20) + 2 * 9 * 16 == 272474
    assert ARCHITECTURES["resnet"].depth == 20 and ARCHITECTURES["resnet"].uses_depth
    assert not ARCHITECTURES["mlp"].uses_depth and not ARCHITECTURES["cnn"].uses_depth


@pytest.mark.parametrize("arch, side, expected", [("mlp", 28, 15910), ("mlp", 16, 5350),
                                                  ("cnn", 16, 1158), ("cnn", 28, 1158)])  # fmt: skip
def test_the_paper_models_on_either_side(arch, side, expected):
    assert expected == ARCHITECTURES[arch].n_params(20, side=side)
    assert ARCHITECTURES[arch].n_params(20, side=side, depth=14) == expected  # depth: ignored
    model = models.build_model(arch, image_side=side)
    assert models.num_params(model) == expected
    assert model(torch.zeros(2, 1, side, side)).shape == (2, 10)
    if arch == "mlp":
        assert 784 * 20 + 20 + 20 * 10 + 10 == ARCHITECTURES["mlp"].n_params(20, side=28)
        assert (model[1].in_features, model[1].out_features) == (side * side, 20)


def test_resnet_layout():
    model = models.build_model("resnet", hidden=4, depth=14)  # n = 2 blocks a stage
    blocks = [m for m in model if isinstance(m, models.ResidualBlock)]
    assert len(blocks) == 6
    first = [b.branch[0] for b in blocks]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in first] == [
        (4, 4, 1), (4, 4, 1), (4, 8, 2), (8, 8, 1), (8, 16, 2), (16, 16, 1)
    ]  # fmt: skip
    # projections where the width or resolution changes, the identity elsewhere
    assert [len(b.shortcut) for b in blocks] == [0, 0, 2, 0, 2, 0]
    assert all(c.bias is None for c in model.modules() if isinstance(c, nn.Conv2d))
    assert (model[-1].in_features, model[-1].out_features) == (16, 10)
    for side in (5, 8, 16, 28):  # global pooling: any side
        assert model(torch.randn(3, 1, side, side)).shape == (3, 10)


def test_resnet_has_no_hessian_structure():
    """The range basis and layer blocks are for the paper's sequential models."""
    model = _tiny_resnet()
    x, y = _images(8, 8)
    assert models.hessian_structure(model, x, y) == {"range_basis": None, "layer_blocks": None}
    assert models.hessian_range_basis(model, x, y) is None
    assert models.hessian_layer_blocks(model, x, y) is None
    # the MLP on 28×28 keeps its range basis: h·B + h + 10·h + 10 with B = 8 images
    x28, y28 = _images(8, 28, dtype=torch.float32)
    mlp = models.build_model("mlp", image_side=28)
    assert models.hessian_range_basis(mlp, x28, y28).dim == 390


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_resnet_loss_of_theta_is_the_train_mode_loss_and_leaves_the_buffers(mode):
    model = _tiny_resnet()
    x, y = _images(8, 8)
    theta = models.flat_params(model)
    getattr(model, mode)()
    before = _buffers(model)
    loss_fn = models.make_loss_fn(model, x, y)
    value = loss_fn(theta)
    g = grad(loss_fn)(theta)
    v = torch.randn(3, theta.numel(), dtype=torch.float64)
    hvps = vmap(lambda t: torch.func.jvp(grad(loss_fn), (theta,), (t,))[1])(v)
    models.make_batched_loss_fn(model, x, y)(theta + 0.01 * v)
    models.batched_forward(model, theta + 0.01 * v, x)
    # nothing of the functional view touched the running statistics or the module's mode
    assert _same_buffers(model, before) and model.training == (mode == "train")
    assert int(model[1].num_batches_tracked) == 0

    # the module in train mode: the same loss and gradient (it updates its buffers meanwhile)
    model.train()
    model.zero_grad()
    ref = nn.functional.cross_entropy(model(x), y)
    ref.backward()
    ref_grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    assert torch.allclose(value, ref, rtol=1e-13, atol=0)
    assert torch.allclose(g, ref_grad, rtol=1e-11, atol=1e-13)
    assert int(model[1].num_batches_tracked) == 1  # the buffers were restored, not lost
    assert not torch.equal(model[1].running_mean, before["1.running_mean"])
    # the eval-mode module (running statistics) is another function
    model.eval()
    with torch.no_grad():
        assert abs(float(nn.functional.cross_entropy(model(x), y)) - float(value)) > 1e-3
    assert torch.isfinite(hvps).all()


def _sgd_step(model, theta, x, y, lr):
    """θ ↦ θ' as the trainer steps (chaosgd.runs.trainer.Trainer.train_step, SGD): module in
    train mode, backward of the batch loss, the CGD optimizer without a prune set."""
    from chaosgd.engine.cgd import CGD

    models.assign_flat_params(model, theta)
    model.train()
    optimizer = CGD(model.parameters(), prune_set=None, lr=lr, momentum=0.0)
    optimizer.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step(eigenpairs=None)
    return models.flat_params(model)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_resnet_tangent_map_is_the_one_training_applies(activation):
    """J v = v − ηHv, H by torch.func through make_loss_fn, against central differences of the
    step the trainer takes (θ ± εv, each stepped), all in float64.

    The central difference d(ε) = (F(θ+εv) − F(θ−εv))/2ε errs by the truncation
    ε²/6 · D³F[v,v,v] + O(ε⁴) plus the rounding of the two steps over 2ε. Truncation:
    d(2ε) − d(ε) is 3× the truncation at ε up to O(ε⁴), so twice its estimate ‖d(2ε) − d(ε)‖/3
    bounds it. Rounding: a stepped coordinate θ'_i = fl(θ_i − ηg_i) errs by ≤ u|θ'_i| (u = 2⁻⁵³)
    plus η times the gradient's own error, ≲ 30u|g_i| (accumulated over sums of ~10³ terms,
    √10³ ≈ 30 as a random walk); two steps over 2ε give R = 4u(‖θ'‖ + 30η‖g‖)/ε, 5-8e-10
    here against a measured 5e-11. So |d(ε) − Jv| ≤ 2‖d(2ε) − d(ε)‖/3 + R, ≈ 1e-8 of ‖ηHv‖.
    ε = 1e-5 keeps ReLU kinks off the segment (of ~5e3 activations each lies within O(ε) of
    its kink with probability O(ε); at ε = 1e-3 one is crossed and d errs by 20% of ηHv).
    """
    model = _tiny_resnet(activation)
    x, y = _images(8, 8, seed=3)
    lr, eps = 0.1, 1e-5
    theta = models.flat_params(model)
    g = torch.Generator().manual_seed(7)
    v = torch.randn(theta.numel(), generator=g, dtype=torch.float64)
    v /= v.norm()
    loss_fn = models.make_loss_fn(model, x, y)
    hv = torch.func.jvp(grad(loss_fn), (theta,), (v,))[1]
    jv = v - lr * hv

    def central(e):
        return (_sgd_step(model, theta + e * v, x, y, lr) - _sgd_step(model, theta - e * v, x, y, lr)) / (2 * e)  # fmt: skip

    d1, d2 = central(eps), central(2 * eps)
    stepped = _sgd_step(model, theta, x, y, lr)
    gnorm = float(grad(loss_fn)(theta).norm())
    rounding = 4 * 2.0**-53 * (float(stepped.norm()) + 30 * lr * gnorm) / eps
    tol = 2 * float((d2 - d1).norm()) / 3 + rounding
    err = float((d1 - jv).norm())
    assert err <= tol, (err, tol)
    scale = float((lr * hv).norm())
    assert tol < 1e-7 * scale  # sharp: it pins ηHv down to 1e-7 of itself

    # the map with the running statistics (eval mode) is not the one training applies
    model.eval()
    before = _buffers(model)
    params = {n: p.detach() for n, p in model.named_parameters()}

    def eval_loss(t):
        return nn.functional.cross_entropy(
            torch.func.functional_call(model, {**models.unflatten(model, t), **before}, (x,)), y
        )

    hv_eval = torch.func.jvp(grad(eval_loss), (theta,), (v,))[1]
    assert float((d1 - (v - lr * hv_eval)).norm()) > 100 * tol
    assert params.keys() == dict(model.named_parameters()).keys()


def test_resnet_batched_forward_and_grads_match_per_theta():
    """vmap over θ with BatchNorm: each model normalises by its own batch statistics."""
    model = _tiny_resnet(width=2, side=8)
    x, y = _images(8, 8, seed=1)
    theta = models.flat_params(model)
    g = torch.Generator().manual_seed(2)
    thetas = theta + 0.05 * torch.randn(3, theta.numel(), generator=g, dtype=torch.float64)
    before = _buffers(model)
    forward = models.make_forward(model)
    logits = models.batched_forward(model, thetas, x)
    xs = torch.stack([_images(8, 8, seed=s)[0] for s in range(3)])
    per_model = models.batched_forward(model, thetas, xs, same_batch=False)
    loss_fn = models.make_loss_fn(model, x, y)
    losses = models.make_batched_loss_fn(model, x, y)(thetas)
    grads = vmap(grad(loss_fn))(thetas)
    assert _same_buffers(model, before)
    probe = models.assign_flat_params(_tiny_resnet(width=2, side=8), thetas[0]).train()
    assert torch.allclose(logits[0], probe(x), rtol=1e-12, atol=1e-13)  # the train-mode module
    for i in range(3):
        assert torch.allclose(logits[i], forward(thetas[i], x), rtol=1e-12, atol=1e-13)
        assert torch.allclose(per_model[i], forward(thetas[i], xs[i]), rtol=1e-12, atol=1e-13)
        assert torch.allclose(losses[i], loss_fn(thetas[i]), rtol=1e-13, atol=0)
        assert torch.allclose(grads[i], grad(loss_fn)(thetas[i]), rtol=1e-11, atol=1e-13)


def test_resnet_initialization_bounds_and_distance():
    """App. A.8's expected distance of two initializations, BatchNorm counting zero."""
    torch.manual_seed(0)
    model = models.build_model("resnet", hidden=4, depth=8)
    bounds = models.init_bounds(model)
    assert sum(n for n, _ in bounds) == models.num_params(model)
    for (count, bound), (name, p) in zip(bounds, model.named_parameters()):
        assert count == p.numel()
        if bound == 0.0:  # BatchNorm: scale 1, shift 0 in every initialization
            assert torch.equal(p, torch.ones_like(p) if name.endswith("weight") else 0 * p)
        else:
            assert float(p.detach().abs().max()) <= bound
    expected = models.init_distance(model)
    dists = []
    for s in range(30):
        torch.manual_seed(20_000 + 2 * s)
        a = models.flat_params(models.build_model("resnet", hidden=4, depth=8))
        torch.manual_seed(20_001 + 2 * s)
        b = models.flat_params(models.build_model("resnet", hidden=4, depth=8))
        dists.append(float((a - b).norm()))
    d = torch.tensor(dists, dtype=torch.float64)
    assert abs(float(d.square().mean().sqrt()) - expected) <= 4 * float(d.std()) / 30**0.5
