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
        (dict(arch="resnet"), "arch"),
        (dict(arch="mlp", activation="tanh"), "activation"),
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
