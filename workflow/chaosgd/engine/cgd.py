"""Chaos-sensitive gradient descent (CGD, Theorem 2.2) and per-step spectrum diagnostics.

CGD removes from the gradient its components along a *prune set* of Hessian eigenvectors and
then takes the ordinary SGD / momentum step with what is left, g̃ = g − V_p V_pᵀ g.

Prune sets (always among eigenpairs with |λ| > ``null_tol``, see :mod:`chaosgd.engine.eigenpairs`):

* ``chaotic``: locally chaotic directions of Theorem 2.1, |1 − η λ| > 1 (λ < 0 or λ > 2/η);
* ``negative``: λ < 0;  ``positive``: λ > 0.

Selection within the set: ``all``; ``top_k``, the k largest |λ| (for ``chaotic`` the k largest
(1 − ηλ)², i.e. the largest local Lyapunov exponents); ``random_k``, k distinct eigenpairs drawn
uniformly from the set.

Why ``random_k`` differs from the reference code
------------------------------------------------
The reference drew its random picks (with replacement) among *all* N dense eigenpairs of the set,
classifying by the raw sign of λ. The Hessian has rank ≈ 200 of N = 5350, and the ≈ 5100
numerically-null eigenvalues come out of a dense eigensolver as ±1e-18-sized round-off, split
roughly half and half between "negative" and "positive" (and the negative half is "chaotic",
since (1 − ηλ)² > 1 for any λ < 0). So most of its random picks were arbitrary directions of the
null space, along which the gradient has no component: pruning them was nearly a no-op. Here
null eigenpairs (|λ| ≤ ``null_tol``) belong to no prune set, so ``random_k`` removes k genuine
curvature directions; results with ``random_k`` are therefore not comparable one-to-one with the
reference's. ``all`` and ``top_k`` select the same directions as the reference (up to null
directions, which carry no gradient).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import Tensor

from chaosgd.engine.eigenpairs import Eigenpairs, null_tolerance
from chaosgd.planning.vocab import PRUNE_SETS as _PRUNE_SETS
from chaosgd.planning.vocab import SELECTIONS as _SELECTIONS

__all__ = [
    "PRUNE_SETS",
    "SELECTIONS",
    "prune_mask",
    "select_pruned",
    "project_gradient",
    "spectrum_diagnostics",
    "topk_diagnostics",
    "CGD",
]

PRUNE_SETS = tuple(_PRUNE_SETS)
SELECTIONS = tuple(_SELECTIONS.values())

# which eigenvalues λ each prune set holds, for learning rate η (chaosgd.planning.vocab.PRUNE_SETS)
_RULES: dict[str, Callable[[Tensor, float], Tensor]] = {
    "chaotic": lambda values, lr: (1.0 - lr * values).abs() > 1.0,  # Theorem 2.1
    "negative": lambda values, lr: values < 0,
    "positive": lambda values, lr: values > 0,
}
if set(_RULES) != set(PRUNE_SETS):
    raise RuntimeError(
        f"chaosgd.engine.cgd: prune rules {sorted(_RULES)} != prune sets {PRUNE_SETS}"
    )


def _validate(prune_set: str, selection: str, k: int | None) -> int | None:
    if prune_set not in PRUNE_SETS:
        raise ValueError(f"prune_set must be one of {PRUNE_SETS}, got {prune_set!r}")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if selection == "all":
        if k is not None:
            raise ValueError(f"k is only used with selection top_k/random_k, got k={k!r}")
        return None
    if k is None:
        raise ValueError(f"k is required with selection {selection!r}")
    if isinstance(k, bool) or int(k) != k or int(k) < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _validate_lr(lr: float) -> float:
    lr = float(lr)
    if not (lr > 0 and lr < float("inf")):
        raise ValueError(f"lr must be positive and finite, got {lr!r}")
    return lr


def _check_values(values: Tensor) -> None:
    if values.dim() != 1:
        raise ValueError("values must be a 1-D tensor of eigenvalues")
    if not bool(torch.isfinite(values).all()):
        raise ValueError("values (Hessian eigenvalues) contain non-finite entries")


def prune_mask(values: Tensor, lr: float, prune_set: str, null_tol: float | None = None) -> Tensor:
    """Boolean mask of the eigenvalues in ``prune_set`` (null ones, |λ| ≤ ``null_tol``, never)."""
    _validate(prune_set, "all", None)
    lr = _validate_lr(lr)
    _check_values(values)
    if null_tol is None:
        null_tol = null_tolerance(values)
    nonzero = values.abs() > null_tol
    return nonzero & _RULES[prune_set](values, lr)


def select_pruned(
    values: Tensor,
    lr: float,
    prune_set: str,
    selection: str = "all",
    k: int | None = None,
    generator: torch.Generator | None = None,
    null_tol: float | None = None,
) -> Tensor:
    """Indices (ascending, int64, on ``values``' device) of the eigenpairs to prune.

    ``top_k`` / ``random_k`` with fewer than k eligible eigenpairs prune all of them.
    ``random_k`` draws with ``torch.randperm`` from ``generator`` (global RNG when ``None``).
    """
    k = _validate(prune_set, selection, k)
    mask = prune_mask(values, lr, prune_set, null_tol)
    idx = torch.nonzero(mask).flatten()
    if selection == "all" or idx.numel() <= k:
        return idx
    if selection == "top_k":
        sub = values[idx]
        score = (1.0 - lr * sub) ** 2 if prune_set == "chaotic" else sub.abs()
        order = torch.sort(score, descending=True, stable=True).indices[:k]
        return torch.sort(idx[order]).values
    device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(idx.numel(), generator=generator, device=device)[:k]
    return torch.sort(idx[perm.to(idx.device)]).values


def project_gradient(
    grad: Tensor,
    values: Tensor,
    vectors: Tensor,
    lr: float,
    prune_set: str,
    selection: str = "all",
    k: int | None = None,
    generator: torch.Generator | None = None,
    *,
    null_tol: float | None = None,
    noise: bool = False,
    noise_scale: float | None = None,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Remove from flat ``grad`` its components along the pruned eigenvectors.

    g̃ = g − V_p V_pᵀ g with V_p the columns of ``vectors`` chosen by :func:`select_pruned`
    (computed in ``vectors``' dtype, returned in ``grad``'s). ``null_tol`` defaults to the shared
    rule of :func:`chaosgd.engine.eigenpairs.null_tolerance`; pass ``Eigenpairs.null_tol``.

    ``noise=True`` replaces the removed components by independent Gaussian ones,
    g̃ += V_p ξ, ξ ~ N(0, σ²) with σ = ``noise_scale`` or, as in the reference code, the mean
    absolute entry of ``grad``. ``generator`` also drives this noise.
    With ``return_indices`` the pruned indices are returned too.
    """
    k = _validate(prune_set, selection, k)
    if grad.dim() != 1 or vectors.dim() != 2 or vectors.shape[0] != grad.numel():
        raise ValueError(
            f"grad must be 1-D of length vectors.shape[0]; got grad {tuple(grad.shape)}, "
            f"vectors {tuple(vectors.shape)}"
        )
    if values.dim() != 1 or values.numel() != vectors.shape[1]:
        raise ValueError("values must hold one eigenvalue per column of vectors")
    if noise_scale is not None and not (float(noise_scale) >= 0):
        raise ValueError(f"noise_scale must be non-negative, got {noise_scale!r}")
    idx = select_pruned(values, lr, prune_set, selection, k, generator, null_tol)
    if idx.numel() == 0:
        out = grad.clone()
    else:
        g = grad.to(vectors.dtype)
        vp = vectors[:, idx.to(vectors.device)]
        out = g - vp @ (vp.T @ g)
        if noise:
            sigma = float(grad.abs().mean()) if noise_scale is None else float(noise_scale)
            device = generator.device if generator is not None else vectors.device
            xi = torch.randn(idx.numel(), generator=generator, device=device, dtype=vectors.dtype)
            out = out + vp @ (sigma * xi.to(vectors.device))
        out = out.to(grad.dtype)
    return (out, idx) if return_indices else out


def spectrum_diagnostics(grad: Tensor, eigenpairs: Eigenpairs, lr: float) -> dict:
    """Per-step spectrum counts and gradient overlaps (App. B.2), as plain Python numbers.

    Counts of nonzero eigenvalues that are negative, positive, positive-chaotic (λ > 2/η) and
    chaotic (|1 − ηλ| > 1); ``rank``; ``lambda_min`` / ``lambda_max`` of the whole spectrum (0
    joins the nonzero eigenvalues whenever the rank is below N); and the fractions of ‖g‖² in
    the positive, negative and null eigenspaces (``grad_frac_*``; they sum to 1).

    The reference code's convention (``ref_*``) too: it counted the signs of all N eigenvalues
    of a dense float32 Hessian, so its N − rank numerically null ones fell to either side by
    their rounding sign; here they are split evenly, as rounding splits them on average
    (``ref_n_negative``, ``ref_n_positive``). Its gradient overlap was the mean over the positive
    (negative) eigenvectors of |cos(g, vᵢ)|, null ones included (g lies in the range, so they
    add zeros): ``ref_cos_positive``, ``ref_cos_negative``; and |cos| with the eigenvectors of
    λ_max and λ_min (``cos_lambda_max``, ``cos_lambda_min``).
    """
    lr = _validate_lr(lr)
    values = eigenpairs.values
    _check_values(values)
    nz = eigenpairs.nonzero_mask()
    neg = nz & (values < 0)
    pos = nz & (values > 0)
    chaotic = nz & ((1.0 - lr * values).abs() > 1.0)
    pos_chaotic = pos & (values > 2.0 / lr)
    lam = values[nz]
    rank = int(nz.sum())
    has_null = rank < eigenpairs.n_params
    lam_min = float(lam.min()) if rank else 0.0
    lam_max = float(lam.max()) if rank else 0.0
    if has_null:
        lam_min, lam_max = min(lam_min, 0.0), max(lam_max, 0.0)
    v = eigenpairs.vectors
    g = grad.reshape(-1).to(v.dtype)
    gsq = float(g @ g)
    coeff_sq = (v.T @ g) ** 2
    frac_pos = float(coeff_sq[pos].sum()) / gsq if gsq > 0 else 0.0
    frac_neg = float(coeff_sq[neg].sum()) / gsq if gsq > 0 else 0.0
    frac_chaotic = float(coeff_sq[chaotic].sum()) / gsq if gsq > 0 else 0.0
    half_null = (eigenpairs.n_params - rank) / 2.0
    cos = coeff_sq.sqrt() / math.sqrt(gsq) if gsq > 0 else torch.zeros_like(coeff_sq)
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    ref_pos, ref_neg = n_pos + half_null, n_neg + half_null
    top = int(torch.argmax(torch.where(nz, values, -math.inf))) if rank else None
    bottom = int(torch.argmin(torch.where(nz, values, math.inf))) if rank else None
    return {
        "n_negative": int(neg.sum()),
        "n_positive": int(pos.sum()),
        "n_positive_chaotic": int(pos_chaotic.sum()),
        "n_chaotic": int(chaotic.sum()),
        "rank": rank,
        "lambda_min": lam_min,
        "lambda_max": lam_max,
        "grad_frac_positive": frac_pos,
        "grad_frac_negative": frac_neg,
        "grad_frac_null": max(0.0, 1.0 - frac_pos - frac_neg) if gsq > 0 else 0.0,
        "grad_frac_chaotic": frac_chaotic,
        "null_tol": float(eigenpairs.null_tol),
        "ref_n_negative": ref_neg,
        "ref_n_positive": ref_pos,
        "ref_cos_positive": float(cos[pos].sum()) / ref_pos if ref_pos > 0 else 0.0,
        "ref_cos_negative": float(cos[neg].sum()) / ref_neg if ref_neg > 0 else 0.0,
        "cos_lambda_max": float(cos[top]) if top is not None and values[top] > 0 else 0.0,
        "cos_lambda_min": float(cos[bottom]) if bottom is not None and values[bottom] < 0 else 0.0,
    }


def topk_diagnostics(grad: Tensor, eigenpairs: Eigenpairs, lr: float) -> dict:
    """Per-step diagnostics of a top-k result (:mod:`chaosgd.engine.topk_curvature`), which
    holds k eigenpairs of one prune set, not the spectrum: the extreme eigenvalues of the whole
    spectrum (``lambda_min`` / ``lambda_max``, the Lanczos iteration's extreme Ritz values,
    stopped at a residual of 1e-6·max|λ|: within ~1e-5·max|λ| of the exact ones, tested),
    ``null_tol``, the fraction of ‖g‖² along the k returned
    eigenvectors (``grad_frac_topk``), their largest residual relative to max|λ|
    (``topk_residual``) and the Hessian-vector products the step took (``topk_hvps``). The
    counts and overlaps of :func:`spectrum_diagnostics` need every eigenpair and are left out."""
    _validate_lr(lr)
    diag = eigenpairs.diagnostics
    v = eigenpairs.vectors
    g = grad.reshape(-1).to(v.dtype)
    gsq = float(g @ g)
    along = float(((v.T @ g) ** 2).sum()) / gsq if gsq > 0 and v.shape[1] else 0.0
    return {
        "lambda_min": float(diag["lambda_min"]),
        "lambda_max": float(diag["lambda_max"]),
        "null_tol": float(eigenpairs.null_tol),
        "grad_frac_topk": along,
        "topk_residual": float(diag["residual_max"]),
        "topk_hvps": int(diag["hvps"]),
    }


class CGD(torch.optim.SGD):
    """SGD / momentum (PyTorch convention) on the gradient with a prune set projected out.

    ``step(eigenpairs)`` takes the Hessian eigenpairs at the current parameters, laid out like
    :func:`chaosgd.engine.models.flat_params` (all parameter groups concatenated in order). From step
    ``prune_start`` on (steps counted from 0) it overwrites each ``p.grad`` with its part of the
    projected gradient and then runs ``torch.optim.SGD.step`` unchanged; before ``prune_start``,
    with ``prune_set=None`` or with an empty selection it leaves the gradients alone, so it is
    exactly ``torch.optim.SGD`` (momentum included). ``last_pruned`` holds the indices pruned by
    the latest step (``None`` when not pruning); the tangent-map stage needs them for
    ``random_k``. ``generator`` drives ``random_k`` and the noise.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.0,
        prune_set: str | None = "chaotic",
        selection: str = "all",
        k: int | None = None,
        prune_start: int = 0,
        noise: bool = False,
        noise_scale: float | None = None,
        generator: torch.Generator | None = None,
    ):
        if prune_set is not None:
            k = _validate(prune_set, selection, k)
        elif selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        if int(prune_start) != prune_start or prune_start < 0:
            raise ValueError(f"prune_start must be a non-negative integer, got {prune_start!r}")
        if noise_scale is not None and not (float(noise_scale) >= 0):
            raise ValueError(f"noise_scale must be non-negative, got {noise_scale!r}")
        _validate_lr(lr)
        super().__init__(params, lr=lr, momentum=momentum)
        self.prune_set = prune_set
        self.selection = selection
        self.k = k
        self.prune_start = int(prune_start)
        self.noise = bool(noise)
        self.noise_scale = noise_scale
        self.generator = generator
        self.state["cgd"] = {"step": 0}
        self.last_pruned: Tensor | None = None

    @property
    def steps_taken(self) -> int:
        """Number of optimizer steps taken so far (the index of the next step, counted from 0)."""
        return int(self.state["cgd"]["step"])

    def is_pruning(self) -> bool:
        """Whether the next step projects the gradient."""
        return self.prune_set is not None and self.steps_taken >= self.prune_start

    @torch.no_grad()
    def step(self, eigenpairs: Eigenpairs | None = None, closure: Callable | None = None):
        """One SGD / momentum step with the prune set projected out of the gradient when pruning.

        ``eigenpairs`` (those of the Hessian at the current parameters) are required from step
        ``prune_start`` on; ``closure``, if given, re-evaluates the loss, which is returned.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.last_pruned = None
        if self.is_pruning():
            if eigenpairs is None:
                raise ValueError(
                    f"eigenpairs are required from step prune_start={self.prune_start} on"
                )
            self._project(eigenpairs)
        super().step()
        self.state["cgd"]["step"] = self.steps_taken + 1
        return loss

    def _project(self, eigenpairs: Eigenpairs) -> None:
        params = [p for group in self.param_groups for p in group["params"]]
        lrs = {group["lr"] for group in self.param_groups}
        if len(lrs) != 1:
            raise ValueError("CGD needs one learning rate shared by all parameter groups")
        if any(p.grad is None for p in params):
            raise ValueError("every parameter needs a gradient to project it")
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        new, idx = project_gradient(
            flat,
            eigenpairs.values,
            eigenpairs.vectors,
            lrs.pop(),
            self.prune_set,
            self.selection,
            self.k,
            self.generator,
            null_tol=eigenpairs.null_tol,
            noise=self.noise,
            noise_scale=self.noise_scale,
            return_indices=True,
        )
        self.last_pruned = idx
        if idx.numel() == 0:
            return
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(new[offset : offset + n].view_as(p.grad))
            offset += n
