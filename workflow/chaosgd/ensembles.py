"""Ensembles stage: perturbed copies of a reference run, trained in lockstep (Fig. 3a, App. C.3/C.4).

From the reference run's final Lyapunov spectrum (``results/lyapunov/<run>/spectrum_final.pt``)
five unit directions are built (:data:`STRATEGIES`, :func:`directions`):

``max_chaos`` / ``max_convergence``
    the Lyapunov vector of the largest / smallest exponent;
``chaotic`` / ``nonchaotic``
    a Gaussian random combination of the vectors whose exponent is chaotic (λt > tol) /
    non-chaotic (λt < −tol), as classified by :func:`chaosgd.lyapunov.classify`;
``random``
    a Gaussian random direction of the whole parameter space.

Every direction scaled by every ε is added to the reference's initial parameters θ(0); all
members train with the reference's seed and batch order. Member 0 is the unperturbed reference
(ε = 0) and the one distances are measured against: ``‖θ_B(t) − θ_A(t)‖`` in float64, per
parameter tensor, and the component along the initial direction.

All members of one dtype train as one batched computation (:class:`LockstepSGD`): parameters are
held *parameter-major* (one M×shape tensor per parameter, as ``torch.func.stack_module_state``
lays them out), each step is one batched forward/backward for all M members and one SGD /
momentum update of all of them. Two interchangeable backends do the step (``sgd_step``):

``func``
    ``torch.func.vmap(grad_and_value(functional_call(...)))``: any model of
    :func:`chaosgd.models.build_model` (the CNN too).
``mlp``
    the paper's MLP written out as batched matrix products with its backward pass by hand. The
    first layer of all M members is one GEMM (the batch is shared), and the weight gradients'
    GEMMs accumulate straight into the weights (or momentum buffers), so the ensemble costs a
    small multiple of one model; ``func``'s per-operator batching overhead would not allow that
    on a CPU (``python -m chaosgd.bench ensembles`` measures it).

``auto`` picks ``mlp`` for the MLP and ``func`` otherwise. Both agree with sequential training
(``torch.optim.SGD`` on an ``nn.Module``) to rounding (tests: ≤ 1e-12 in float64), and the
members' computations are independent row by row, so an ε = 0 member stays bit-identical to the
reference.

Each configured dtype (float32, float64) is a separate lockstep ensemble with its own reference
member: the two references are different trajectories, and comparing each dtype against its own
reference is what separates round-off from dynamics for small ε (App. C.4's open question).

Writes ``distances.parquet`` (long: one row per dtype × strategy × ε × recorded step),
``members.parquet`` (one row per member, final evaluation) and an info JSON with timings: seconds
per step of the ensemble, of one model trained alone the ordinary way (``nn.Module`` +
``torch.optim.SGD``, a few hundred steps measured in the same job), and their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap
from tqdm import tqdm

from chaosgd import train
from chaosgd.fits import exact_readouts
from chaosgd.io import load_tensors, read_parquet, write_json, write_parquet
from chaosgd.lyapunov import classify
from chaosgd.models import build_model, flat_params, unflatten
from chaosgd.settings import DTYPES, RunSettings

__all__ = [
    "STRATEGIES",
    "BACKENDS",
    "directions",
    "Member",
    "plan_members",
    "initial_parameters",
    "LockstepSGD",
    "record_steps",
    "EnsembleResult",
    "run_ensemble",
    "time_single_model",
    "main",
]

STRATEGIES = ("max_chaos", "max_convergence", "chaotic", "nonchaotic", "random")
BACKENDS = ("auto", "func", "mlp")
REFERENCE = "reference"
# what this stage reads from spectrum_final.pt
SPECTRUM_KEYS = ("exponents", "vectors", "t", "neutral_tol", "theta0")
# steps between checks for non-finite losses: each check synchronizes with the device
_FINITE_CHECK_EVERY = 256


# -- directions ---------------------------------------------------------------------------------


def _unit(v: Tensor) -> Tensor:
    return v / torch.linalg.vector_norm(v)


def directions(spectrum: dict, generator: torch.Generator) -> dict[str, Tensor]:
    """The five unit perturbation directions (float64 N-vectors on the CPU), keys :data:`STRATEGIES`.

    ``spectrum`` is a ``spectrum_final.pt`` dict: ``exponents`` (N,) descending, ``vectors`` N×N
    with matching columns, ``t`` and ``neutral_tol`` (for :func:`chaosgd.lyapunov.classify`).
    The random combinations draw their Gaussian coefficients from ``generator`` in a fixed
    order (chaotic, non-chaotic, random), so a seed fixes all three. Raises ``ValueError``
    naming the strategy when its subspace is empty.
    """
    exponents = torch.as_tensor(spectrum["exponents"], dtype=torch.float64).cpu()
    vectors = torch.as_tensor(spectrum["vectors"], dtype=torch.float64).cpu()
    n = exponents.numel()
    if exponents.dim() != 1 or vectors.shape != (n, n):
        raise ValueError(
            f"spectrum: expected exponents (N,) and vectors N×N, got {tuple(exponents.shape)} "
            f"and {tuple(vectors.shape)}"
        )
    if not bool(torch.isfinite(exponents).all() and torch.isfinite(vectors).all()):
        raise ValueError("spectrum: non-finite exponents or vectors")
    if bool((exponents[1:] > exponents[:-1]).any()):
        raise ValueError("spectrum: exponents must be sorted in descending order")
    chaotic, nonchaotic = classify(
        exponents.numpy(), int(spectrum["t"]), float(spectrum["neutral_tol"])
    )
    run = spectrum.get("run_id", "?")
    out = {"max_chaos": _unit(vectors[:, 0]), "max_convergence": _unit(vectors[:, -1])}
    for name, mask in (("chaotic", chaotic), ("nonchaotic", nonchaotic)):
        basis = vectors[:, torch.from_numpy(mask)]
        if basis.shape[1] == 0:
            sign = ">" if name == "chaotic" else "<"
            raise ValueError(
                f"strategy {name!r}: the {name} Lyapunov subspace of run {run} is empty "
                f"(no exponent with lambda*t {sign} {'' if sign == '>' else '-'}"
                f"{spectrum['neutral_tol']} at t={spectrum['t']})"
            )
        coeff = torch.randn(basis.shape[1], generator=generator, dtype=torch.float64)
        out[name] = _unit(basis @ coeff)
    out["random"] = _unit(torch.randn(n, generator=generator, dtype=torch.float64))
    return {name: out[name] for name in STRATEGIES}


# -- members ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    strategy: str  # one of STRATEGIES, or "reference" for member 0
    eps: float


def plan_members(eps: list[float]) -> list[Member]:
    """Member 0 is the reference; then every strategy × ε (strategy-major)."""
    eps = [float(e) for e in eps]
    if not eps:
        raise ValueError("at least one eps is needed")
    bad = [e for e in eps if not (math.isfinite(e) and e >= 0)]
    if bad:
        raise ValueError(f"eps must be finite and non-negative, got {bad}")
    if len(set(eps)) != len(eps):
        raise ValueError(f"eps values must be distinct, got {eps}")
    return [Member(REFERENCE, 0.0)] + [Member(s, e) for s in STRATEGIES for e in eps]


def initial_parameters(
    theta0: Tensor, dirs: dict[str, Tensor], members: list[Member]
) -> tuple[Tensor, Tensor]:
    """(M×N float64 initial parameters θ0 + ε d, (M−1)×N unit directions of the perturbed members).

    The sum is formed in float64; a float32 ensemble rounds it once when cast, so its step-0
    distance is ε only up to float32's representation of θ0 + εd (that is the point of App. C.4).
    """
    theta0 = theta0.to(torch.float64).reshape(1, -1)
    d = torch.stack([dirs[m.strategy] for m in members[1:]])
    eps = torch.tensor([m.eps for m in members[1:]], dtype=torch.float64)
    thetas = torch.cat([theta0, theta0 + eps[:, None] * d])
    return thetas, d


# -- the batched trainer ------------------------------------------------------------------------


class _FuncBackend:
    """Any model: gradients by ``vmap(grad_and_value(functional_call))`` over the members."""

    name = "func"

    def __init__(self, model: nn.Module):
        self.model = model

        def loss_fn(params, x, y):
            logits = functional_call(model, params, (x,))
            return F.cross_entropy(logits, y), logits

        self._grad = vmap(grad_and_value(loss_fn, has_aux=True), in_dims=(0, None, None))
        self._forward = vmap(lambda p, x: functional_call(model, p, (x,)), in_dims=(0, None))

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
        return self._forward(params, x)


class _MLPBackend:
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
        return self._forward(p, x.reshape(x.shape[0], -1))[1].transpose(1, 2)  # M×B×C


def _backend(model: nn.Module, name: str):
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "auto":
        name = "mlp" if _MLPBackend.supports(model) else "func"
    return _MLPBackend(model) if name == "mlp" else _FuncBackend(model)


class LockstepSGD:
    """M copies of one model trained by SGD / momentum in lockstep on the same batches.

    ``thetas`` (M×N, in ``models.flat_params`` order) gives the initial parameters; they are
    cast to ``model``'s dtype and device. The update is PyTorch's (``torch.optim.SGD`` with
    dampening 0, no weight decay): v ← μv + g (v = g on the first step), θ ← θ − ηv, as
    ``train.Trainer`` does; the same in-place kernels, applied to all members at once.
    """

    def __init__(
        self,
        model: nn.Module,
        thetas: Tensor,
        lr: float,
        momentum: float = 0.0,
        backend: str = "auto",
    ):
        p0 = next(model.parameters())
        self.dtype, self.device = p0.dtype, p0.device
        self.backend = _backend(model, backend)
        self.lr, self.momentum = float(lr), float(momentum)
        if thetas.dim() != 2:
            raise ValueError(f"thetas must be M×N, got shape {tuple(thetas.shape)}")
        thetas = thetas.to(device=self.device, dtype=self.dtype)
        self.members = thetas.shape[0]
        self.params = {n: v.contiguous() for n, v in unflatten(model, thetas).items()}
        self.names = list(self.params)
        self.buffers: dict[str, Tensor] | None = None  # momentum buffers, after the first step

    def step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One update of every member on batch (x, y); returns the members' loss and accuracy
        on that batch *before* the update (M-vectors on the device, loss in the training dtype)."""
        loss, correct, self.buffers = self.backend.sgd_step(
            self.params, x, y, self.lr, self.momentum, self.buffers
        )
        return loss, correct.to(torch.float64) / x.shape[0]

    def flat(self) -> Tensor:
        """The members' parameters as one M×N tensor."""
        return torch.cat([self.params[n].reshape(self.members, -1) for n in self.names], dim=1)

    @torch.no_grad()
    def evaluate(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy and accuracy of every member over a whole split (float64 M-vectors)."""
        loss = torch.zeros(self.members, dtype=torch.float64, device=self.device)
        correct = torch.zeros(self.members, dtype=torch.float64, device=self.device)
        # bound the batched activations (members × chunk images) for the CNN's feature maps
        chunk = max(1, 16_384 // self.members)
        for start in range(0, len(y), chunk):
            logits = self.backend.logits(self.params, x[start : start + chunk])
            target = y[start : start + chunk]
            ce = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.repeat(self.members), reduction="none"
            )
            loss += ce.view(self.members, -1).to(torch.float64).sum(1)
            correct += (logits.argmax(-1) == target).sum(1).to(torch.float64)
        return loss / len(y), correct / len(y)


class _DistanceRecorder:
    """Distances of members 1..M−1 to member 0, per parameter tensor, into preallocated buffers.

    Exact float64 arithmetic: float32 members are first cast into reused float64 buffers (exact);
    ``torch.cdist`` in its direct mode then forms ‖θ_B − θ_A‖ per parameter tensor without
    materializing the differences. The component along each member's initial direction is
    ⟨θ_B, d⟩ − ⟨θ_A, d⟩, one GEMM of all members against the few distinct directions (members
    of one strategy share theirs) instead of M−1 row-wise dot products; in float64 its
    cancellation error is ~1e-16·‖θ‖, far below any recorded ε. Everything stays on the device
    until the end, and the hot loop allocates nothing large.
    """

    def __init__(self, names: list[str], sizes: list[int], dirs: Tensor, records: int, device):
        self.names = names
        k = dirs.shape[0]
        distinct, which = torch.unique(dirs, dim=0, return_inverse=True)
        self.dirs_t = [c.T.contiguous().to(device) for c in torch.split(distinct, sizes, dim=1)]
        self.which = which.to(device).view(k, 1)
        self.buffers: dict[str, Tensor] = {}
        self.dist = torch.zeros(records, k, len(names), dtype=torch.float64, device=device)
        self.along = torch.zeros(records, k, dtype=torch.float64, device=device)
        self.loss = torch.full((records, k + 1), float("nan"), dtype=torch.float64, device=device)
        self.acc = torch.full((records, k + 1), float("nan"), dtype=torch.float64, device=device)

    def _float64(self, name: str, p: Tensor) -> Tensor:
        if p.dtype == torch.float64:
            return p
        buf = self.buffers.get(name)
        if buf is None:
            buf = self.buffers[name] = torch.empty(p.shape, dtype=torch.float64, device=p.device)
        return buf.copy_(p)

    def record(self, r: int, params: dict[str, Tensor]) -> None:
        proj = None
        for j, name in enumerate(self.names):
            p = params[name]
            p = self._float64(name, p.reshape(p.shape[0], -1))
            dist = torch.cdist(p[1:], p[:1], compute_mode="donot_use_mm_for_euclid_dist")
            self.dist[r, :, j] = dist.view(-1)
            proj = p @ self.dirs_t[j] if proj is None else proj.addmm_(p, self.dirs_t[j])
        self.along[r] = (proj[1:] - proj[0]).gather(1, self.which).view(-1)

    def batch(self, r: int, loss: Tensor, acc: Tensor) -> None:
        self.loss[r] = loss
        self.acc[r] = acc


def record_steps(total: int, every: int, extra=()) -> list[int]:
    """States recorded: 0, every ``every``-th step, the ``extra`` steps within 0..total (e.g. the
    Lyapunov readout steps, where the fits stage checks the bounds) and the final state."""
    if every < 1:
        raise ValueError(f"record_every must be a positive integer, got {every}")
    extra = {int(e) for e in extra if 0 <= int(e) <= total}
    return sorted(set(range(0, total + 1, every)) | extra | {total})


@dataclass
class EnsembleResult:
    distances: pd.DataFrame  # long: one row per perturbed member × recorded step
    members: pd.DataFrame  # one row per member, reference first
    final: Tensor  # M×N final parameters (float64, CPU)
    info: dict


def _batches(n: int, settings: RunSettings, device: torch.device):
    """(step, index tensor on ``device``) of every step, in the reference's batch order."""
    per_epoch = math.ceil(n / settings.batch_size)
    for epoch in range(settings.epochs):
        order = train.epoch_order(n, settings.seed, epoch).to(device)
        for within in range(per_epoch):
            bs = settings.batch_size
            yield epoch * per_epoch + within, order[within * bs : (within + 1) * bs]


def _template(settings: RunSettings, dtype: str, device: torch.device) -> nn.Module:
    torch.manual_seed(settings.seed)
    model = build_model(settings.model, settings.activation, settings.hidden)
    return model.to(device=device, dtype=getattr(torch, dtype))


def check_reference(settings: RunSettings, spectrum: dict) -> Tensor:
    """The reference's θ(0) from the spectrum, checked against the run's settings.

    Only plain SGD (momentum allowed) is perturbed: CGD's projections depend on per-step
    eigendecompositions, which would not be those of a perturbed copy. θ(0) must equal the
    initialization ``build_model`` gives under the run's seed, else the spectrum belongs to
    another run.
    """
    if settings.parsed_variant.optimizer != "sgd":
        raise ValueError(
            f"run {settings.run_id}: ensembles need a plain SGD reference, got variant {settings.variant!r}"
        )
    missing = sorted(set(SPECTRUM_KEYS) - set(spectrum))
    if missing:
        raise ValueError(f"run {settings.run_id}: the spectrum lacks {missing}")
    if "run_id" in spectrum and spectrum["run_id"] != settings.run_id:
        raise ValueError(
            f"run {settings.run_id}: the spectrum belongs to run {spectrum['run_id']!r}"
        )
    theta0 = torch.as_tensor(spectrum["theta0"], dtype=torch.float64).cpu().reshape(-1)
    init = flat_params(_template(settings, "float32", torch.device("cpu"))).to(torch.float64)
    if theta0.numel() != init.numel():
        raise ValueError(
            f"run {settings.run_id}: the spectrum has {theta0.numel()} parameters, the model {init.numel()}"
        )
    if not torch.equal(theta0, init):
        raise ValueError(
            f"run {settings.run_id}: the spectrum's theta0 is not the initialization of seed "
            f"{settings.seed} (max difference {float((theta0 - init).abs().max()):.3g})"
        )
    return theta0


def run_ensemble(
    settings: RunSettings,
    data: train.Data,
    theta0: Tensor,
    dirs: dict[str, Tensor],
    eps: list[float],
    dtype: str,
    device: torch.device,
    record_every: int = 1,
    backend: str = "auto",
    progress: bool = False,
    extra_steps=(),
) -> EnsembleResult:
    """Train the reference and its 5·|eps| perturbed copies in ``dtype`` as one lockstep ensemble.

    ``data`` must already be in ``dtype`` on ``device`` (``train.load_data``). States are
    recorded as :func:`record_steps` says.
    """
    members = plan_members(eps)
    thetas, dmat = initial_parameters(theta0, dirs, members)
    model = _template(settings, dtype, device)
    ens = LockstepSGD(model, thetas, settings.lr, settings.momentum, backend)
    n = len(data.train_y)
    total = math.ceil(n / settings.batch_size) * settings.epochs
    steps = record_steps(total, record_every, extra_steps)
    slot = {s: r for r, s in enumerate(steps)}
    sizes = [p.numel() for p in model.parameters()]
    rec = _DistanceRecorder(ens.names, sizes, dmat, len(steps), device)
    bar = tqdm(
        total=total,
        desc=f"{settings.run_id} {dtype} x{len(members)}",
        file=sys.stderr,
        mininterval=10,
        ascii=True,
        disable=not progress,
    )
    t0 = time.perf_counter()
    with torch.no_grad():
        for step, idx in _batches(n, settings, device):
            r = slot.get(step)
            if r is not None:
                rec.record(r, ens.params)
            loss, acc = ens.step(data.train_x[idx], data.train_y[idx])
            if r is not None:
                rec.batch(r, loss, acc)
            if (step + 1) % _FINITE_CHECK_EVERY == 0 or step + 1 == total:
                # a non-finite parameter keeps every later loss of its member non-finite, so
                # checking now and then (each check waits for the device) misses nothing
                _check_finite(loss, members, dtype, step, settings.run_id)
            bar.update(1)
        rec.record(slot[total], ens.params)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    bar.close()
    final = ens.flat()
    if not bool(torch.isfinite(final).all()):
        raise train.TrainingError(
            f"run {settings.run_id}: non-finite parameters at the end ({dtype} ensemble)"
        )
    train_loss, train_acc = ens.evaluate(data.train_x, data.train_y)
    val_loss, val_acc = ens.evaluate(data.test_x, data.test_y)
    distances = _distance_table(rec, members, steps, dtype, ens.names)
    last = distances[distances["step"] == total].set_index(["strategy", "eps"])["distance"]
    final_distance = [0.0] + [float(last[(m.strategy, m.eps)]) for m in members[1:]]
    member_table = pd.DataFrame(
        {
            "dtype": dtype,
            "strategy": [m.strategy for m in members],
            "eps": np.array([m.eps for m in members], dtype=np.float64),
            "train_loss": train_loss.cpu().numpy(),
            "train_acc": train_acc.cpu().numpy(),
            "val_loss": val_loss.cpu().numpy(),
            "val_acc": val_acc.cpu().numpy(),
            "final_distance": np.array(final_distance, dtype=np.float64),
        }
    )
    info = {
        "dtype": dtype,
        "members": len(members),
        "parameters": int(thetas.shape[1]),
        "steps": total,
        "recorded_states": len(steps),
        "backend": ens.backend.name,
        "seconds": seconds,
        "seconds_per_step": seconds / total,
    }
    return EnsembleResult(distances, member_table, final.to(torch.float64).cpu(), info)


def _check_finite(loss: Tensor, members: list[Member], dtype: str, step: int, run: str) -> None:
    finite = torch.isfinite(loss)
    if bool(finite.all()):
        return
    which = [m for m, ok in zip(members, finite.tolist()) if not ok]
    named = ", ".join(f"{m.strategy} eps={m.eps:g}" for m in which)
    raise train.TrainingError(
        f"run {run}: non-finite loss in the {dtype} ensemble at or before step {step} ({named})"
    )


def _distance_table(
    rec: _DistanceRecorder, members: list[Member], steps: list[int], dtype: str, names: list[str]
) -> pd.DataFrame:
    dist = rec.dist.cpu().numpy()  # R × K × L
    r, k, _ = dist.shape
    # member-major rows: each (strategy, eps) curve is contiguous and ordered by step
    cols: dict[str, np.ndarray] = {
        "dtype": np.full(r * k, dtype, dtype=object),
        "strategy": np.repeat(np.array([m.strategy for m in members[1:]], dtype=object), r),
        "eps": np.repeat(np.array([m.eps for m in members[1:]], dtype=np.float64), r),
        "step": np.tile(np.asarray(steps, dtype=np.int64), k),
        "distance": np.sqrt(np.square(dist).sum(2)).T.reshape(-1),
        "distance_along": rec.along.cpu().numpy().T.reshape(-1),
    }
    for j, name in enumerate(names):
        cols["dist_" + name.replace(".", "_")] = dist[:, :, j].T.reshape(-1)
    cols["loss"] = rec.loss[:, 1:].cpu().numpy().T.reshape(-1)
    cols["acc"] = rec.acc[:, 1:].cpu().numpy().T.reshape(-1)
    df = pd.DataFrame(cols)
    df["dtype"] = df["dtype"].astype(str)
    df["strategy"] = df["strategy"].astype(str)
    return df


# -- the single-model baseline ------------------------------------------------------------------


def time_single_model(
    settings: RunSettings, data: train.Data, dtype: str, device: torch.device, steps: int
) -> tuple[float | None, int]:
    """(seconds per step, steps timed) of one model trained alone the ordinary way
    (``nn.Module``, cross-entropy, ``loss.backward()``, ``torch.optim.SGD``) on the reference's
    first batches: up to ``steps`` steps after a few untimed warm-up steps (allocator, caches).

    Seconds are ``None`` when the run is too short to time anything.
    """
    model = _template(settings, dtype, device)
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    total = math.ceil(len(data.train_y) / settings.batch_size) * settings.epochs
    warmup = min(10, total // 2)
    timed = min(steps, total - warmup)
    if timed < 1:
        return None, 0
    t0 = 0.0
    for step, idx in _batches(len(data.train_y), settings, device):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        if step == warmup + timed:
            break
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / timed, timed


# -- command line -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.ensembles",
        description="Perturb a reference SGD run's initialization along its Lyapunov directions "
        "and train all perturbed copies in lockstep; record their distances to the reference.",
    )
    RunSettings.add_arguments(parser)
    ens = parser.add_argument_group("ensemble")
    # not --spectrum: that is the run settings' --spectrum/--no-spectrum flag
    ens.add_argument(
        "--spectrum-file",
        required=True,
        help="the reference's results/lyapunov/<run>/spectrum_final.pt",
    )
    ens.add_argument("--eps", type=float, nargs="+", required=True, help="perturbation sizes")
    ens.add_argument(
        "--dtypes",
        nargs="+",
        choices=DTYPES,
        default=None,
        help="one lockstep ensemble per dtype (default: the reference's dtype)",
    )
    ens.add_argument(
        "--direction-seed", type=int, default=0, help="seed of the random combinations"
    )
    ens.add_argument(
        "--record-every",
        type=int,
        default=1,
        help="record every this many steps (and 0 and the last)",
    )
    ens.add_argument(
        "--exponents",
        default=None,
        help="the reference's exponents.parquet: also record its exact-readout steps, "
        "so that a thinned record still lets the fits stage check the bounds there",
    )
    ens.add_argument("--backend", choices=BACKENDS, default="auto", help="batched gradient backend")
    ens.add_argument(
        "--baseline-steps",
        type=int,
        default=300,
        help="steps of one model trained alone, timed for the cost ratio",
    )
    io = parser.add_argument_group("files")
    io.add_argument("--data", required=True, help="prepared dataset (results/datasets/<name>.pt)")
    io.add_argument("--out-distances", required=True, help="output: distances.parquet")
    io.add_argument("--out-members", required=True, help="output: members.parquet")
    io.add_argument("--out-info", required=True, help="output: info JSON (timings)")
    io.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    io.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        settings = RunSettings.from_namespace(args)
        if args.record_every < 1:
            raise ValueError(f"--record-every must be a positive integer, got {args.record_every}")
        if args.baseline_steps < 1:
            raise ValueError(
                f"--baseline-steps must be a positive integer, got {args.baseline_steps}"
            )
        dtypes = args.dtypes or [settings.dtype]
        if len(set(dtypes)) != len(dtypes):
            raise ValueError(f"--dtypes must be distinct, got {dtypes}")
        plan_members(args.eps)
        spectrum = load_tensors(args.spectrum_file)
        theta0 = check_reference(settings, spectrum)
        dirs = directions(spectrum, torch.Generator().manual_seed(args.direction_seed))
        extra = ()
        if args.exponents:
            extra = exact_readouts(read_parquet(args.exponents))["step"].tolist()
        device = train.select_device(settings.device)
        tables, member_tables, runs = [], [], []
        for dtype in dtypes:
            s = dataclasses.replace(settings, dtype=dtype)
            data = train.load_data(args.data, s, device)
            single, timed = time_single_model(s, data, dtype, device, args.baseline_steps)
            res = run_ensemble(
                s,
                data,
                theta0,
                dirs,
                args.eps,
                dtype,
                device,
                record_every=args.record_every,
                backend=args.backend,
                progress=not args.no_progress,
                extra_steps=extra,
            )
            res.info["single_seconds_per_step"] = single
            res.info["single_steps_timed"] = timed
            res.info["ratio"] = res.info["seconds_per_step"] / single if single else None
            tables.append(res.distances)
            member_tables.append(res.members)
            runs.append(res.info)
    except (train.TrainingError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_parquet(pd.concat(tables, ignore_index=True), args.out_distances)
    write_parquet(pd.concat(member_tables, ignore_index=True), args.out_members)
    write_json(
        {
            "run_id": settings.run_id,
            "eps": [float(e) for e in args.eps],
            "dtypes": dtypes,
            "strategies": list(STRATEGIES),
            "direction_seed": args.direction_seed,
            "record_every": args.record_every,
            "spectrum": {
                k: cast(spectrum[k])
                for k, cast in (
                    ("t", int),
                    ("method", str),
                    ("neutral_tol", float),
                    ("n_chaotic", int),
                    ("n_nonchaotic", int),
                )
                if k in spectrum
            },
            "ensembles": runs,
            "settings": settings.as_dict(),
            "environment": train.environment(device),
        },
        args.out_info,
    )
    for run in runs:
        single = run["single_seconds_per_step"]
        baseline = (
            f"one model {single * 1e3:.3f} ms/step: ratio {run['ratio']:.2f}"
            if single
            else "no baseline"
        )
        print(
            f"{settings.run_id} {run['dtype']}: {run['members']} members x {run['steps']} steps, "
            f"{run['seconds_per_step'] * 1e3:.3f} ms/step ({run['backend']}); {baseline}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
