"""Agreement of two results of one computation on identical inputs: the relative difference of two
tensors, and the ``gpu`` benchmark's checks of eigenpairs and CGD projected gradients."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from chaosgd.engine.cgd import project_gradient
from chaosgd.engine.eigenpairs import Eigenpairs
from chaosgd.planning.vocab import PRUNE_SETS

__all__ = ["TOL", "Check", "max_rel_diff", "full_spectrum", "compare_eigenpairs"]

# the agreement tolerance of the issue: float64 round-off on identical inputs is ~1e-15, and the
# engine's own null rule counts |λ| ≤ 1e-10·max|λ| as zero, so anything above is a real difference
TOL = 1e-10


@dataclass
class Check:
    """One agreement check: ``value`` (a relative or log difference) against ``tol``."""

    part: str
    what: str
    value: float
    tol: float = TOL

    def __post_init__(self) -> None:
        self.value, self.tol = float(self.value), float(self.tol)

    @property
    def ok(self) -> bool:
        """Within tolerance (NaN and inf fail)."""
        return bool(math.isfinite(self.value) and self.value <= self.tol)


def max_rel_diff(a: torch.Tensor, ref: torch.Tensor) -> float:
    """max |a − ref| / max |ref|, on the CPU: ``a`` and ``ref`` may live on different devices."""
    a, ref = a.detach().cpu(), ref.detach().cpu()
    return float((a - ref).abs().max()) / (float(ref.abs().max()) or 1.0)


def full_spectrum(eig: Eigenpairs) -> torch.Tensor:
    """All N eigenvalues, ascending, float64 on the CPU, with those the null rule calls zero set
    to 0: a dense and a low-rank result of one Hessian give the same vector."""
    values = eig.values.detach().to("cpu", torch.float64)
    kept = values[eig.nonzero_mask().cpu()]
    zeros = torch.zeros(eig.n_params - kept.numel(), dtype=torch.float64)
    return torch.sort(torch.cat([kept, zeros])).values


def compare_eigenpairs(
    ref: Eigenpairs,
    ref_grad: torch.Tensor,
    other: Eigenpairs,
    other_grad: torch.Tensor,
    lr: float,
    part: str,
    tol: float = TOL,
) -> list[Check]:
    """The eigenvalue check (max |Δλ| / max |λ| over the whole spectrum) and, for each prune set
    (chaotic, negative, positive, all of it), the CGD projected gradient check
    ‖g̃_other − g̃_ref‖ / ‖g_ref‖, each side projecting its own gradient with its own eigenpairs
    on its own device (as training does); ``other`` may live on another device than ``ref``."""
    a, b = full_spectrum(ref), full_spectrum(other)
    scale = float(a.abs().max()) or 1.0
    eig = float((a - b).abs().max()) / scale if a.shape == b.shape else math.inf
    rank = f"rank {ref.rank} / {other.rank}"
    checks = [Check(part, f"eigenvalues, max|dλ|/max|λ| ({rank})", eig, tol)]
    gnorm = float(ref_grad.norm()) or 1.0
    for prune_set in PRUNE_SETS:
        g_ref = project_gradient(
            ref_grad, ref.values, ref.vectors, lr, prune_set, null_tol=ref.null_tol
        )
        g_other = project_gradient(
            other_grad, other.values, other.vectors, lr, prune_set, null_tol=other.null_tol
        )
        diff = float((g_other.detach().cpu() - g_ref.detach().cpu()).norm()) / gnorm
        checks.append(Check(part, f"CGD-{prune_set} projected gradient, |dg|/|g|", diff, tol))
    return checks
