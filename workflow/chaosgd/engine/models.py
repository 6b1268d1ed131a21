"""Models of the paper and beyond, and a functional view of them on one flat parameter vector.

Everything curvature-related (Hessians, tangent maps, CGD projections) works on a flat 1-D
parameter vector θ laid out in ``model.named_parameters()`` order. This module builds the two
architectures of the paper (Sec. 3 and App. B.1), and a ResNet family with BatchNorm and skip
connections, which the paper did not study (Discussion), and converts between the module and
that flat view:

* :func:`build_model` -- MLP side²→h→10 (256→h→10 on the paper's 16×16 images, 784→h→10 on
  28×28), the small CNN, or ResNet-(6n+2); PyTorch default initialisation.
* :func:`flat_params` / :func:`unflatten` / :func:`assign_flat_params` -- module ⇄ θ.
* :func:`make_loss_fn` -- θ ↦ mean cross-entropy of one batch (for torch.func transforms).
* :func:`make_forward` / :func:`batched_forward` / :func:`make_batched_loss_fn` -- forward passes
  over a stack of parameter vectors with ``torch.func.vmap`` (ensembles, perturbed copies).
* :func:`pure_call` -- the module as a pure function of a name → tensor dict of parameters.

BatchNorm. θ holds parameters only (BatchNorm's scale and shift among them); the running
statistics are buffers, outside θ. The functional view computes every BatchNorm with the
statistics of the batch it is given, whatever the module's train/eval mode, and never reads or
writes the module's running statistics: the Hessian and tangent map treat BatchNorm as a
function of the parameters with the statistics of the current batch; running statistics are not
state of the map. That is the map training applies: a training step (module in train mode)
normalises by the batch's own statistics, and the running statistics it updates as a side
effect enter no gradient; they serve evaluation in eval mode only (``chaosgd.runs.trainer``).
:func:`pure_call` passes ``None`` for the BatchNorm buffers through
``torch.func.functional_call``, with which ``nn.BatchNorm2d`` normalises by the batch and updates
nothing. The alternatives torch.func's BatchNorm notes offer do worse here: eval mode
normalises by the running statistics, a different map from the one training applies;
``replace_all_batch_norm_modules_`` strips the running statistics from the module itself,
which evaluation needs; and copies of the buffers would make every call update them, which
``vmap`` refuses (per-θ statistics written into one unbatched buffer) and which would make the
statistics state of the map.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from chaosgd.engine.curvature import dense_hessian
from chaosgd.engine.eigenpairs import BlockBasis, LayerBlocks
from chaosgd.planning.vocab import ACTIVATIONS, ARCHITECTURES, IMAGE_SIDE, N_CLASSES, Layer

__all__ = [
    "ARCHITECTURES",
    "ACTIVATIONS",
    "build_model",
    "num_params",
    "param_shapes",
    "flat_params",
    "unflatten",
    "assign_flat_params",
    "make_forward",
    "make_loss_fn",
    "batched_forward",
    "make_batched_loss_fn",
    "pure_call",
]


def _activation(activation: str) -> nn.Module:
    if activation == "relu":
        return nn.ReLU()
    if activation == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


class ResidualBlock(nn.Module):
    """A ``resblock`` layer: activation(branch(x) + shortcut(x)), an empty shortcut being the
    identity (:attr:`chaosgd.planning.vocab.Layer.branch` and ``.shortcut`` describe both)."""

    def __init__(self, layer: Layer, activation: str) -> None:
        super().__init__()
        self.branch = nn.Sequential(*(_layer(sub, activation) for sub in layer.branch))
        self.shortcut = nn.Sequential(*(_layer(sub, activation) for sub in layer.shortcut))
        self.act = _activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        """The block's output for the N×C×H×W input ``x``."""
        return self.act(self.branch(x) + self.shortcut(x))


class GlobalAvgPool(nn.Module):
    """Mean over the spatial dimensions: N×C×H×W → N×C, so the ResNet takes any image side."""

    def forward(self, x: Tensor) -> Tensor:
        """The channel means of the N×C×H×W input ``x``."""
        return x.mean(dim=(-2, -1))


def _layer(layer: Layer, activation: str) -> nn.Module:
    if layer.kind == "linear":
        return nn.Linear(layer.n_in, layer.n_out)
    if layer.kind == "conv":
        k = layer.kernel
        return nn.Conv2d(
            layer.n_in, layer.n_out, k, stride=layer.stride, padding=k // 2, bias=layer.bias
        )
    if layer.kind == "bn":
        return nn.BatchNorm2d(layer.n_out)
    if layer.kind == "resblock":
        return ResidualBlock(layer, activation)
    if layer.kind == "avgpool":
        return GlobalAvgPool()
    if layer.kind == "act":
        return _activation(activation)
    if layer.kind == "pool":
        return nn.MaxPool2d(2)
    if layer.kind == "flatten":
        return nn.Flatten()
    raise ValueError(f"unknown layer kind {layer.kind!r}")


def build_model(
    arch: str,
    activation: str = "relu",
    hidden: int = 20,
    n_classes: int = N_CLASSES,
    *,
    image_side: int = IMAGE_SIDE,
    depth: int | None = None,
) -> nn.Module:
    """Build a model for N×1×``image_side``×``image_side`` inputs from its layers
    (:data:`chaosgd.planning.vocab.ARCHITECTURES`).

    ``mlp``: flatten, linear side²→``hidden``, activation, linear ``hidden``→``n_classes``
    (5350 parameters with the defaults, the paper's 256-20-10; 15910 for the 784-20-10 of
    28×28 images). ``cnn``: conv3×3(1→4), act; maxpool2, conv3×3(4→4), act; maxpool2,
    conv3×3(4→8), act; maxpool2, conv3×3(8→8), act; maxpool2; flatten; linear
    8·(side/16)²→``n_classes``, padding 1 everywhere (1158 parameters on 16×16 and 28×28).
    ``resnet``: ResNet-``depth`` (6n+2, default 20) of base width ``hidden``: conv3×3 stem, BN,
    act; three stages of n basic blocks at widths h, 2h, 4h (the first block of stages 2 and 3
    with stride 2 and a 1×1 convolution + BN shortcut); global average pooling; linear
    (272,186 parameters at width 16, depth 20). ``hidden`` is ignored by the CNN, ``depth`` by
    the MLP and CNN. Parameters get PyTorch's default initialisation (BatchNorm: scale 1,
    shift 0), so seed torch before calling.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {tuple(ARCHITECTURES)}, got {arch!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if int(hidden) < 1:
        raise ValueError(f"hidden must be a positive integer, got {hidden!r}")
    if int(n_classes) < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes!r}")
    layers = ARCHITECTURES[arch].layers(int(hidden), int(n_classes), int(image_side), depth)
    return nn.Sequential(*(_layer(layer, activation) for layer in layers))


_BATCH_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _batch_statistics(model: nn.Module) -> dict[str, None]:
    """``None`` for every BatchNorm buffer of ``model``, as :func:`pure_call` passes them."""
    out = {}
    for prefix, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for name, buf in module.named_buffers(recurse=False):
                if name in _BATCH_NORM_STATS and buf is not None:
                    out[f"{prefix}.{name}" if prefix else name] = None
    return out


def pure_call(model: nn.Module, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """``model(x)`` with the parameters ``params`` (name → tensor, all of them), as a pure
    function: every BatchNorm normalises by the statistics of ``x`` and its running statistics
    are neither read nor written (the module docstring says why), so it composes with
    ``torch.func.grad``, ``jvp`` and ``vmap``. It equals ``model(x)`` in train mode, and for
    models without BatchNorm in either mode."""
    return functional_call(model, {**params, **_batch_statistics(model)}, (x,))


def param_shapes(model: nn.Module) -> dict[str, torch.Size]:
    """Name → shape of every parameter, in ``named_parameters()`` (= flat θ) order."""
    return {name: p.shape for name, p in model.named_parameters()}


def num_params(model: nn.Module) -> int:
    """Length N of the flat parameter vector."""
    return sum(p.numel() for p in model.parameters())


def flat_params(model: nn.Module) -> Tensor:
    """A detached copy of all parameters as one 1-D tensor, in ``named_parameters()`` order."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()


def unflatten(model: nn.Module, theta: Tensor) -> dict[str, Tensor]:
    """Split flat ``theta`` into a name → tensor dict of views shaped like ``model``'s parameters.

    Works on batched tensors inside ``torch.func.vmap`` too (the views slice the last dim).
    """
    names, shapes, sizes = [], [], []
    for name, p in model.named_parameters():
        names.append(name)
        shapes.append(p.shape)
        sizes.append(p.numel())
    if sum(sizes) != theta.shape[-1]:
        raise ValueError(f"theta has {theta.shape[-1]} entries, model has {sum(sizes)} parameters")
    # split (not slicing): its backward is one concatenation, whereas each slice's backward
    # materialises a zero-filled N-vector, which dominates batched Hessian-vector products
    chunks = torch.split(theta, sizes, dim=-1)
    return {n: c.view(*c.shape[:-1], *s) for n, c, s in zip(names, chunks, shapes)}


@torch.no_grad()
def assign_flat_params(model: nn.Module, theta: Tensor) -> nn.Module:
    """Copy flat ``theta`` into ``model``'s parameters in place (casting to their dtype)."""
    for p, v in zip(model.parameters(), unflatten(model, theta).values()):
        p.copy_(v)
    return model


def make_forward(model: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """Return ``f(theta, x) -> logits``, a pure function of flat θ (``x`` cast to θ's dtype);
    BatchNorm by the statistics of ``x`` (:func:`pure_call`)."""

    stats = _batch_statistics(model)  # as pure_call, found once

    def forward(theta: Tensor, x: Tensor) -> Tensor:
        x = x.to(dtype=theta.dtype, device=theta.device)
        return functional_call(model, {**unflatten(model, theta), **stats}, (x,))

    return forward


def make_loss_fn(model: nn.Module, x: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
    """Return θ ↦ mean cross-entropy of batch ``(x, y)``, for ``torch.func`` transforms.

    ``x`` is cast to θ's dtype and device on every call, so a float32-trained model can be
    evaluated (and differentiated) in float64 by passing a float64 θ. BatchNorm normalises by
    the batch's statistics (:func:`pure_call`): the loss a training step differentiates.
    """
    forward = make_forward(model)

    def loss_fn(theta: Tensor) -> Tensor:
        logits = forward(theta, x)
        return nn.functional.cross_entropy(logits, y.to(device=theta.device))

    return loss_fn


def batched_forward(model: nn.Module, thetas: Tensor, x: Tensor, same_batch: bool = True) -> Tensor:
    """Logits of ``model`` for each row of ``thetas`` (M×N) with ``torch.func.vmap``.

    ``same_batch=True``: one batch ``x`` (B×…) for all M models → M×B×C. ``False``: ``x`` is
    M×B×…, one batch per model (ensembles that see different data). Each model's BatchNorm
    normalises by the statistics of its batch (the B images), as one model's training step does.
    """
    forward = make_forward(model)
    return vmap(forward, in_dims=(0, None if same_batch else 0))(thetas, x)


def make_batched_loss_fn(model: nn.Module, x: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
    """Return Θ (M×N) ↦ the M per-model mean cross-entropies on one shared batch.

    ``torch.func.grad`` of the single-model loss vmapped this way gives M gradients in one call:
    ``vmap(grad(make_loss_fn(model, x, y)))(thetas)``.
    """
    loss_fn = make_loss_fn(model, x, y)
    return vmap(loss_fn)


def hessian_range_basis(model: nn.Module, x: Tensor, y: Tensor | None = None, rtol: float = 1e-12):
    """A :class:`chaosgd.engine.eigenpairs.BlockBasis` holding the range of the minibatch loss Hessian
    of ``model`` on inputs ``x``, or ``None`` where no such structure is known (the CNN).

    For the MLP (flatten, linear W1 b1, activation, linear W2 b2) every gradient with respect to
    W1 is Σ_b u_b x_bᵀ over the batch's flattened inputs x_b, whatever the parameters, so every
    derivative of it, and with it every row and column of the Hessian, has its W1 part in
    R^h ⊗ span(x_1, …, x_B). An orthonormal basis Q of that span (an SVD of the B inputs, at most
    B vectors of the side² input dimensions) and the identity on b1, W2 and b2 give the subspace:
    d = h·B + h + 10·h + 10 ≤ 390 for the paper's MLP with batch 8, instead of N = 5350.

    With the labels ``y``, the basis also computes SᵀHS directly: since W1 x_b = (W1 Q)(Qᵀx_b),
    the MLP in the basis' coordinates is the same MLP with first layer W1 Q (h×k) on the inputs
    Qᵀx_b (k ≤ B dimensions), and SᵀHS is its loss Hessian (mean cross-entropy, as
    :func:`make_loss_fn`), formed with d small Hessian-vector products instead of d full ones.
    """
    kinds = [type(m) for m in model.children()] if isinstance(model, nn.Sequential) else []
    if not (
        len(kinds) == 4
        and kinds[0] is nn.Flatten
        and kinds[1] is nn.Linear
        and kinds[3] is nn.Linear
        and model[1].bias is not None
        and model[3].bias is not None
    ):
        return None
    w1 = model[1].weight
    xs = x.reshape(x.shape[0], -1).to(dtype=torch.float64, device=w1.device)
    u, sv, _ = torch.linalg.svd(xs.T, full_matrices=False)
    q = u[:, sv > rtol * float(sv.max())] if sv.numel() and float(sv.max()) > 0 else u[:, :0]
    hidden, inputs = w1.shape
    blocks, start = [], 0
    for p in model.parameters():
        blocks.append((start, hidden, inputs, q) if p is w1 else (start, 1, p.numel(), None))
        start += p.numel()
    if y is None:
        return BlockBasis(start, tuple(blocks))
    act, out = model[2], model[3].weight.shape[0]
    xi = xs @ q  # B×k: the inputs in the basis' coordinates
    k = q.shape[1]
    sizes = [hidden * k, hidden, out * hidden, out]

    def reduced_hessian(theta: Tensor) -> Tensor:
        w1_, b1, w2, b2 = unflatten(model, theta).values()
        coords = torch.cat([(w1_ @ q.to(theta.dtype)).reshape(-1), b1, w2.reshape(-1), b2])
        inputs_ = xi.to(theta.dtype)
        target = y.to(theta.device)

        def loss(c: Tensor) -> Tensor:
            c1, cb1, c2, cb2 = torch.split(c, sizes)
            hid = act(inputs_ @ c1.view(hidden, k).T + cb1)
            logits = hid @ c2.view(out, hidden).T + cb2
            return nn.functional.cross_entropy(logits, target)

        return dense_hessian(loss, coords, chunk_size=None)

    return BlockBasis(start, tuple(blocks), reduced_hessian)


# modules in which the logits are piecewise linear in every layer's own parameters
_PIECEWISE_LINEAR = (nn.Linear, nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Flatten)


def hessian_layer_blocks(model: nn.Module, x: Tensor, y: Tensor) -> LayerBlocks | None:
    """The :class:`chaosgd.engine.eigenpairs.LayerBlocks` of a sequential ``model`` on the batch
    ``(x, y)`` (mean cross-entropy, as :func:`make_loss_fn`), or ``None`` when its parameters
    are not its children's own, in order, or the model has BatchNorm (the ResNet: its
    residual blocks hold several layers each, and the layers' split assumes none).

    For a network of linear layers, convolutions, ReLUs and max-pools (the paper's ReLU CNN and
    MLP) the largest layer is also given as the Gauss-Newton layer: its block of the Hessian is
    J_Uᵀ A J_U, with J_U the logits' Jacobian in that layer and A = (diag p − p pᵀ)/B per image
    the cross-entropy's Hessian in the logits (softmax p, batch mean). Any other activation (a
    sigmoid has curvature of its own) gets the layers alone.
    """
    if _has_batch_norm(model):
        return None
    children = list(model.children()) if isinstance(model, nn.Sequential) else []
    bounds, owners, start = [0], [], 0
    for i, m in enumerate(children):
        size = sum(p.numel() for p in m.parameters(recurse=False))
        if size:
            start += size
            bounds.append(start)
            owners.append(i)
    if not owners or start != num_params(model):
        return None
    names = [name for name, _ in model.named_parameters()]
    sizes = [p.numel() for p in model.parameters()]
    shapes = [p.shape for p in model.parameters()]
    child_names = [name for name, _ in model.named_children()]
    first_param = {}  # a child's first parameter's index in named_parameters()
    for j, name in enumerate(names):
        first_param.setdefault(child_names.index(name.split(".")[0]), j)
    forward = make_forward(model)

    def tail_loss(theta: Tensor, layer: int) -> Callable[[Tensor], Tensor]:
        # the earlier layers' parameters enter as constants (no tangents, no gradients)
        cut = first_param[owners[layer]]
        head = torch.split(theta[: bounds[layer]].detach(), sizes[:cut])
        fixed = {n: c.view(s) for n, c, s in zip(names[:cut], head, shapes[:cut])}
        inputs = x.to(dtype=theta.dtype, device=theta.device)
        target = y.to(device=theta.device)

        def loss(tail: Tensor) -> Tensor:
            parts = torch.split(tail, sizes[cut:])
            params = dict(fixed)
            params.update({n: c.view(s) for n, c, s in zip(names[cut:], parts, shapes[cut:])})
            logits = functional_call(model, params, (inputs,))
            return nn.functional.cross_entropy(logits, target)

        return loss

    if not all(isinstance(m, _PIECEWISE_LINEAR) for m in children):
        return LayerBlocks(tuple(bounds), tail_loss)
    linear = max(range(len(owners)), key=lambda i: (bounds[i + 1] - bounds[i], -i))
    lo, hi = bounds[linear], bounds[linear + 1]

    def gauss_newton(theta: Tensor) -> Tensor:
        def logits_in_block(block: Tensor) -> Tensor:
            return forward(torch.cat([theta[:lo], block, theta[hi:]]), x)

        jac = torch.func.jacrev(logits_in_block)(theta[lo:hi])  # B×C×u
        p = torch.softmax(forward(theta, x), dim=-1)
        a = (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]) / x.shape[0]
        return torch.einsum("bcu,bcd,bdv->uv", jac, a, jac)

    return LayerBlocks(tuple(bounds), tail_loss, linear, gauss_newton)


def hessian_structure(model: nn.Module, x: Tensor, y: Tensor) -> dict:
    """The structure :func:`chaosgd.engine.curvature.hessian_eigenpairs` can use for this model and
    batch, as keyword arguments: the MLP's range basis, the sequential models' layers.

    Both are for the paper's sequential models; a model with BatchNorm (the ResNet) gets
    neither (``None``: no structure, the generic paths): the range basis is the plain MLP's,
    and the layer blocks need every parameter owned by one child of a sequence, which a
    residual block (several layers and a skip) is not.
    """
    if _has_batch_norm(model):
        return {"range_basis": None, "layer_blocks": None}
    return {
        "range_basis": hessian_range_basis(model, x, y),
        "layer_blocks": hessian_layer_blocks(model, x, y),
    }


def init_bounds(model: nn.Module) -> list[tuple[int, float]]:
    """(count, bound) per parameter tensor of PyTorch's default initialization U(−b, b).

    Linear and convolution layers draw their weights by Kaiming-uniform with a = √5, which is
    U(−1/√k, 1/√k) for fan-in k, and their biases from the same interval (the paper's App. A.8,
    after LeCun et al. 2012). BatchNorm starts from the constants scale 1 and shift 0: bound 0,
    the same in every initialization.
    """
    out = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
            out += [(module.weight.numel(), 0.0), (module.bias.numel(), 0.0)]
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
            bound = 1.0 / fan_in**0.5
            out.append((module.weight.numel(), bound))
            if module.bias is not None:
                out.append((module.bias.numel(), bound))
    if sum(n for n, _ in out) != num_params(model):
        raise ValueError("init_bounds: the model has parameters outside linear/conv layers")
    return out


def init_distance(model: nn.Module) -> float:
    """√E‖θ₁ − θ₂‖² for two independent default initializations of ``model`` (App. A.8).

    Each coordinate is the difference of two U(−b, b) draws (BatchNorm's: b = 0), of variance
    2b²/3, so E‖θ₁ − θ₂‖² = Σ 2b²/3 over the parameters. With thousands of parameters ‖θ₁ − θ₂‖
    concentrates at this value (its expectation is below it by a relative O(1/N)): 4.51 for the
    paper's MLP 256-20-10, the scale against which Fig. 3a's distances are read. (The paper
    quotes ≈ 6.38; that is √2 times this value, as if each coordinate's variance were counted
    twice.)
    """
    return sum(n * 2.0 * b * b / 3.0 for n, b in init_bounds(model)) ** 0.5
