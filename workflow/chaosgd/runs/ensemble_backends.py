"""The two interchangeable backends of the lockstep ensembles' step (``sgd_step``).

Parameters are held *parameter-major* (one M×shape tensor per parameter, as
``torch.func.stack_module_state`` lays them out); each step is one batched forward/backward for
all M members and one SGD / momentum update of all of them.

``func``
    ``torch.func.vmap(grad_and_value(functional_call(...)))``: any model of
    :func:`chaosgd.engine.models.build_model` (the CNN too).
``mlp``
    the paper's MLP written out as batched matrix products with its backward pass by hand. The
    first layer of all M members is one GEMM (the batch is shared), and the weight gradients'
    GEMMs accumulate straight into the weights (or momentum buffers), so the ensemble costs a
    small multiple of one model; ``func``'s per-operator batching overhead would not allow that
    on a CPU (``python -m chaosgd.tools.bench ensembles`` measures it).

``auto`` picks ``mlp`` for the MLP and ``func`` otherwise. Both agree with sequential training
(``torch.optim.SGD`` on an ``nn.Module``) to rounding (tests: ≤ 1e-12 in float64), and the
members' computations are independent row by row, so an ε = 0 member stays bit-identical to the
reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad_and_value, vmap

from chaosgd.engine.models import pure_call

BACKENDS = ("auto", "func", "mlp")


class FuncBackend:
    """Any model: gradients by ``vmap(grad_and_value(pure_call))`` over the members (a model
    with BatchNorm normalizes each member by its own batch statistics: the map training applies,
    :mod:`chaosgd.engine.models`)."""

    name = "func"

    def __init__(self, model: nn.Module):
        self.model = model

        def loss_fn(params, x, y):
            logits = pure_call(model, params, x)
            return F.cross_entropy(logits, y), logits

        self._grad = vmap(grad_and_value(loss_fn, has_aux=True), in_dims=(0, None, None))
        self._forward = vmap(lambda p, x: pure_call(model, p, x), in_dims=(0, None))

    def sgd_step(
        self,
        p: dict[str, Tensor],
        x: Tensor,
        y: Tensor,
        lr: float,
        momentum: float,
        buffers: dict[str, Tensor] | None,
    ):
        """One SGD / momentum update of every member in place: (loss, correct, buffers), as
        ``torch.optim.SGD``'s multi-tensor kernels (``buffers`` is ``None`` before the first
        momentum step, when v ← g)."""
        grads, (loss, logits) = self._grad(p, x, y)
        correct = (logits.argmax(-1) == y).sum(-1)
        names = list(p)
        update = [grads[n] for n in names]
        if momentum:
            if buffers is None:
                buffers = {n: g.clone() for n, g in zip(names, update)}
            else:
                torch._foreach_mul_([buffers[n] for n in names], momentum)
                torch._foreach_add_([buffers[n] for n in names], update)
            update = [buffers[n] for n in names]
        torch._foreach_add_([p[n] for n in names], update, alpha=-lr)
        return loss, correct, buffers

    def logits(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """M×B×C logits of every member on the shared batch ``x``."""
        return self._forward(params, x)


class MLPBackend:
    """The MLP (flatten, linear, activation, linear) batched over members, backward by hand.

    The first layer of all members is one GEMM with the shared batch (W1 stacked to (M·H)×I), in
    both directions; activations are kept members × features × batch for that. The second
    layer is a batched GEMM; cross-entropy's gradient is (softmax − onehot)/B. In training
    (:meth:`sgd_step`) the weight gradients are accumulated by their GEMMs straight into the
    weights or momentum buffers.
    """

    name = "mlp"

    def __init__(self, model: nn.Module):
        if not self.supports(model):
            raise ValueError(
                "the mlp backend needs Sequential(Flatten, Linear, ReLU|Sigmoid, Linear)"
            )
        names = [n for n, _ in model.named_parameters()]
        self.w1, self.b1, self.w2, self.b2 = names
        self.relu = isinstance(model[2], nn.ReLU)
        self._ones: tuple | None = None

    @staticmethod
    def supports(model: nn.Module) -> bool:
        """Whether ``model`` is the paper's MLP (flatten, linear, activation, linear)."""
        kinds = [type(m) for m in model.children()] if isinstance(model, nn.Sequential) else []
        return (
            len(kinds) == 4
            and kinds[0] is nn.Flatten
            and kinds[1] is nn.Linear
            and kinds[2] in (nn.ReLU, nn.Sigmoid)
            and kinds[3] is nn.Linear
            and model[1].bias is not None
            and model[3].bias is not None
        )

    def _forward(self, p: dict[str, Tensor], x2: Tensor) -> tuple[Tensor, Tensor]:
        w1 = p[self.w1]
        m, h, i = w1.shape
        z1 = torch.mm(w1.view(m * h, i), x2.T).view(m, h, -1)  # M×H×B
        z1.add_(p[self.b1].unsqueeze(2))
        a1 = z1.relu_() if self.relu else z1.sigmoid_()
        z2 = torch.baddbmm(p[self.b2].unsqueeze(2), p[self.w2], a1)  # M×C×B
        return a1, z2

    def _backward(self, p: dict[str, Tensor], x: Tensor, y: Tensor):
        """Everything of one step but the two weight gradients, which are outer-product GEMMs
        the caller accumulates wherever it wants them: (x2, a1, dz1, dz2, loss, correct)."""
        b = x.shape[0]
        x2 = x.reshape(b, -1)
        a1, z2 = self._forward(p, x2)
        m = z2.shape[0]
        # log-softmax over the classes (dim 1) written out: torch's kernel is slow for many
        # short rows on the CPU
        # (max also gives argmax's first-maximum index; argmax over a strided dim is slow)
        top, arg = z2.max(1, keepdim=True)
        shifted = z2 - top
        lsm = shifted - shifted.exp().sum(1, keepdim=True).log_()
        target = y.view(1, 1, b).expand(m, 1, b)
        loss = -lsm.gather(1, target).squeeze(1).mean(1)
        correct = (arg.squeeze(1) == y).sum(1)
        dz2 = lsm.exp_()
        dz2.scatter_add_(1, target, self._minus_one(m, b, dz2))
        dz2.div_(b)  # M×C×B
        dz1 = torch.bmm(p[self.w2].transpose(1, 2), dz2)  # M×H×B
        if self.relu:
            # relu'(0) = 0, as autograd's threshold_backward
            dz1 = torch.ops.aten.threshold_backward(dz1, a1, 0)
        else:
            dz1.mul_(a1 * (1 - a1))
        return x2, a1, dz1, dz2, loss, correct

    def _minus_one(self, m: int, b: int, like: Tensor) -> Tensor:
        key = (m, b, like.dtype, like.device)
        if self._ones is None or self._ones[0] != key:
            self._ones = (key, torch.full((m, 1, b), -1.0, dtype=like.dtype, device=like.device))
        return self._ones[1]

    def sgd_step(
        self,
        p: dict[str, Tensor],
        x: Tensor,
        y: Tensor,
        lr: float,
        momentum: float,
        buffers: dict[str, Tensor] | None,
    ):
        """One SGD / momentum update of every member in place: (loss, correct, buffers).

        The weight gradients are never stored: their GEMMs accumulate straight into the
        weights (plain SGD, ``θ ← θ − η·A·B`` as one ``addmm``) or into the momentum buffers
        (``v ← μv + A·B``), so the largest arrays are read and written once per step, which
        is what bounds the ensemble's cost on a CPU. ``buffers`` is ``None`` before the first
        momentum step, when ``v ← g`` as in ``torch.optim.SGD``.
        """
        x2, a1, dz1, dz2, loss, correct = self._backward(p, x, y)
        m, h, b = dz1.shape
        a1t = a1.transpose(1, 2)
        dz1 = dz1.view(m * h, b)
        db1, db2 = dz1.sum(1).view(m, h), dz2.sum(2)
        if not momentum:
            p[self.w2].baddbmm_(dz2, a1t, alpha=-lr)
            p[self.w1].view(m * h, -1).addmm_(dz1, x2, alpha=-lr)
            torch._foreach_add_([p[self.b1], p[self.b2]], [db1, db2], alpha=-lr)
            return loss, correct, None
        first = buffers is None
        if first:
            buffers = {n: torch.empty_like(v) for n, v in p.items()}
        beta = 0.0 if first else momentum  # beta = 0 ignores the buffers' content
        buffers[self.w2].baddbmm_(dz2, a1t, beta=beta)
        buffers[self.w1].view(m * h, -1).addmm_(dz1, x2, beta=beta)
        for name, g in ((self.b1, db1), (self.b2, db2)):
            if first:
                buffers[name].copy_(g)
            else:
                buffers[name].mul_(momentum).add_(g)
        torch._foreach_add_(list(p.values()), [buffers[n] for n in p], alpha=-lr)
        return loss, correct, buffers

    def logits(self, p: dict[str, Tensor], x: Tensor) -> Tensor:
        """M×B×C logits of every member on the shared batch ``x``."""
        return self._forward(p, x.reshape(x.shape[0], -1))[1].transpose(1, 2)  # M×B×C


def make_backend(model: nn.Module, name: str):
    """The backend ``name`` (``auto``: ``mlp`` where the model is the paper's MLP) for ``model``."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "auto":
        name = "mlp" if MLPBackend.supports(model) else "func"
    return MLPBackend(model) if name == "mlp" else FuncBackend(model)
