"""Thick-restart block Lanczos with full reorthogonalisation, on any operator given as a
batched product of row blocks: the Krylov engine of :mod:`chaosgd.engine.topk_curvature`, whose
docstring says why this method and how its stopping rule and certificates use it."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["BlockLanczos", "gaussian", "project_out"]

Hvp = Callable[[Tensor], Tensor]


def gaussian(rows: int, n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """rows×N standard normal rows on ``like``'s device and dtype, drawn in float32 on the
    generator's device (the same draws whatever the working precision)."""
    device = generator.device if generator is not None else like.device
    g = torch.randn(rows, n, generator=generator, device=device, dtype=torch.float32)
    return g.to(device=like.device, dtype=like.dtype)


def project_out(x: Tensor, basis: Tensor) -> Tensor:
    """x minus its components along the orthonormal rows of ``basis``, twice (CGS2)."""
    if basis.shape[0] == 0:
        return x
    for _ in range(2):
        x = x - (x @ basis.T) @ basis
    return x


class BlockLanczos:
    """Thick-restart block Lanczos with full reorthogonalisation on an operator of row blocks.

    Invariant after each :meth:`expand`: ``apply(U) = T U + C R`` with U (m×N) orthonormal
    rows, T = U H Uᵀ (m×m), R (b×N) orthogonal to U and C zero except on the newest block, so
    the Ritz pair (θ, yᵀU) of T has residual ‖y_newᵀ R‖ = ‖S y_new‖ for Rᵀ = Q S.
    """

    def __init__(self, apply: Hvp, start: Tensor, capacity: int, generator, drop: float = 0.0):
        self.apply = apply
        self.generator = generator
        self.drop = drop  # residual directions below this norm are noise
        n = start.shape[1]
        # the basis lives in one preallocated buffer: no copy of it per block step
        self.buffer = start.new_empty(min(n, max(capacity, start.shape[0])), n)
        self.size = 0
        self.t = torch.zeros(0, 0, dtype=torch.float64, device=start.device)
        self.pending = self._orthonormal(start, self.u)
        self.s = None  # R factor of the newest residual block (b×b, float64)
        # rows [lo, hi) of the basis whose products have components along the pending block,
        # and those components (H u_j)·p_i (pending × hi − lo)
        self.coupled, self.coupling = (0, 0), None
        self.width = 0  # size of the newest block
        self.calls = self.vectors = self.restarts = 0

    @property
    def u(self) -> Tensor:
        """The basis, m×N orthonormal rows."""
        return self.buffer[: self.size]

    def _orthonormal(self, x: Tensor, basis: Tensor) -> Tensor:
        """Orthonormal rows spanning x's part outside ``basis``; rows that vanish there are
        replaced by random directions (nothing is lost: x's part in them was noise)."""
        n = x.shape[1]
        room = n - basis.shape[0]
        x = project_out(x[:room], basis)
        q, r = torch.linalg.qr(x.T)
        diag = torch.diagonal(r).abs()
        scale = float(x.norm(dim=1).max()) if x.shape[0] else 0.0
        weak = diag <= 1e-8 * scale if scale > 0 else torch.ones_like(diag, dtype=torch.bool)
        if bool(weak.any()):
            q = q.T
            good = q[~weak]
            fill = gaussian(int(weak.sum()), n, x, self.generator)
            fill = project_out(fill, torch.cat([basis, good]))
            return torch.cat([good, torch.linalg.qr(fill.T)[0].T])
        q = q.T
        # a second pass for a block of poorly conditioned directions
        if diag.numel() and float(diag.min()) < 1e-4 * float(diag.max()):
            q = torch.linalg.qr(project_out(q, basis).T)[0].T
        return q

    def expand(self) -> None:
        """One block step: the product of the pending block, appended to the basis and T."""
        q = self.pending
        hq = self.apply(q)
        self.calls += 1
        self.vectors += q.shape[0]
        m, b = self.size, q.shape[0]
        if m + b > self.buffer.shape[0]:
            grown = self.buffer.new_empty(min(self.buffer.shape[1], m + b), self.buffer.shape[1])
            grown[:m] = self.u
            self.buffer = grown
        self.buffer[m : m + b] = q
        u = self.buffer[: m + b]
        # the block recurrence: in exact arithmetic Hq has components only along q itself and
        # the rows that couple to it (the previous block, or the kept Ritz vectors after a
        # restart), with known coefficients; one full pass against the whole basis then
        # restores the orthogonality that round-off loses, and a second one only where that
        # pass cancelled much (Kahan-Parlett "twice is enough")
        diag = hq @ q.T
        r = hq - diag @ q
        coef = torch.zeros(b, m + b, dtype=hq.dtype, device=hq.device)
        coef[:, m:] = diag
        lo, hi = self.coupled
        if hi > lo:
            r = r - self.coupling @ self.buffer[lo:hi]
            coef[:, lo:hi] = self.coupling
        for _ in range(2):
            before = r.norm(dim=1)
            extra = r @ u.T
            r = r - extra @ u
            coef = coef + extra
            if not bool((r.norm(dim=1) < 0.5 * before).any()):
                break
        coef = coef.to(torch.float64)
        t = torch.zeros(m + b, m + b, dtype=torch.float64, device=self.t.device)
        t[:m, :m] = self.t
        t[m:, :m] = coef[:, :m]
        t[:m, m:] = coef[:, :m].T
        t[m:, m:] = 0.5 * (coef[:, m:] + coef[:, m:].T)
        self.t, self.size, self.width = t, m + b, b
        n = u.shape[1]
        if u.shape[0] >= n:
            self.s = torch.zeros(b, b, dtype=torch.float64, device=t.device)
            self.pending = u.new_zeros(0, n)
            self.coupled, self.coupling = (0, 0), None
            return
        qr, s = torch.linalg.qr(r.T)
        self.s = s.to(torch.float64)
        nxt = qr.T
        diag = torch.diagonal(s).abs()
        # directions of a (nearly) vanished residual are noise, not orthogonal to the basis:
        # orthonormalise the whole block again (its span keeps all of R)
        if float(diag.min()) <= max(self.drop, 1e-4 * float(diag.max())) or b > n - u.shape[0]:
            nxt = self._orthonormal(nxt, u)
        self.pending = nxt
        # (H q)·p = r·p for the next block p: how the newest rows couple to it
        self.coupled, self.coupling = (m, m + b), nxt @ r.T

    def ritz(self) -> tuple[Tensor, Tensor, Tensor]:
        """Ritz values (ascending, float64), their coordinates Y (m×m) and residual norms."""
        theta, y = torch.linalg.eigh(self.t)
        res = (self.s @ y[-self.width :]).norm(dim=0)
        return theta, y, res

    def combine(self, y: Tensor) -> Tensor:
        """Rows yᵀU of the Ritz coordinates ``y`` (m×p)."""
        return y.T.to(self.u.dtype) @ self.u

    def restart(self, theta: Tensor, y: Tensor, keep: Tensor) -> None:
        """Shrink the basis to the Ritz vectors ``keep`` (indices into ``theta``), T to their
        values, keeping the invariant (a thick restart)."""
        kept = self.combine(y[:, keep])
        self.buffer[: kept.shape[0]] = kept
        self.size = kept.shape[0]
        self.t = torch.diag(theta[keep])
        # a kept Ritz vector couples to the next block through its newest-block coordinates
        last = y[-self.width :, keep].to(self.coupling.dtype)
        self.coupled, self.coupling = (0, kept.shape[0]), self.coupling @ last
        self.restarts += 1
