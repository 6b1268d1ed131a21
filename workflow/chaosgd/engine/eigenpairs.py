"""What the Hessian eigensolvers return and what they are told: eigenpairs, the bases and layer
cuts a model's structure offers, and the rule that calls an eigenvalue zero.

:class:`Eigenpairs` is the result of :func:`chaosgd.engine.curvature.hessian_eigenpairs`, used by
CGD (:mod:`chaosgd.engine.cgd`), the spectrum counts and the tangent map. :class:`BlockBasis` (a
basis known to hold the Hessian's range, the MLP's) and :class:`LayerBlocks` (a sequential
model's layers, the CNN's) come from :func:`chaosgd.engine.models.hessian_structure` and let the
solvers do less work.

Null tolerance (shared by both methods)
---------------------------------------
An eigenvalue counts as zero iff |λ| ≤ ``null_tol`` = ``rtol``·max|λ| (``rtol`` = 1e-10 in
float64, 1e-5 in lower precision, where the low-rank method is best effort). Measured in float64:
the dense solver's numerically-null eigenvalues of the MLP and the CNN sit below ~1e-14·max|λ|;
the MLP's smallest genuine ones lie above ~1e-8·max|λ|, while the CNN at initialisation has a
few genuine ones between 1e-13 and 1e-10 (they carry ~1e-7 of the gradient's norm). The rule puts
those in the null space for both methods alike, so dense and low-rank classify the same
eigenpairs; downstream code (CGD prune sets, spectrum counts) must use :attr:`Eigenpairs.null_tol`
(or :meth:`Eigenpairs.nonzero_mask`). The acceptance checks use the same tolerance: whatever the
low-rank result could misrepresent is below what the rule calls zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

__all__ = ["Eigenpairs", "BlockBasis", "LayerBlocks", "default_rtol", "null_tolerance"]

LossFn = Callable[[Tensor], Tensor]


@dataclass
class Eigenpairs:
    """Eigenpairs of a symmetric Hessian.

    ``values`` ascending (float64), ``vectors`` N×r with orthonormal columns (``vectors[:, i]``
    belongs to ``values[i]``). Dense results hold all N pairs; low-rank results hold exactly the
    pairs with |λ| > ``null_tol``. ``rank`` counts |λ| > ``null_tol`` in both cases.
    """

    values: Tensor
    vectors: Tensor
    rank: int
    method: str
    null_tol: float
    diagnostics: dict = field(default_factory=dict)
    # from a Rayleigh-Ritz on a basis: vectors = S·coords (S the basis, coords d×r), which lets
    # the tangent map apply H = S (coords Λ coordsᵀ) Sᵀ without N-dimensional vectors
    basis: "BlockBasis | None" = None
    coords: Tensor | None = None

    @property
    def n_params(self) -> int:
        """N, the number of parameters (rows of ``vectors``)."""
        return int(self.vectors.shape[0])

    def nonzero_mask(self) -> Tensor:
        """Boolean mask of the eigenpairs with a nonzero eigenvalue (|λ| > ``null_tol``)."""
        return self.values.abs() > self.null_tol

    def nonzero(self) -> "Eigenpairs":
        """The same result restricted to nonzero eigenvalues (what ``lowrank`` returns)."""
        mask = self.nonzero_mask()
        if bool(mask.all()):
            return self
        return Eigenpairs(
            self.values[mask],
            self.vectors[:, mask],
            self.rank,
            self.method,
            self.null_tol,
            dict(self.diagnostics),
            self.basis,
            None if self.coords is None else self.coords[:, mask],
        )

    def matrix(self) -> Tensor:
        """V diag(λ) Vᵀ (N×N): the Hessian restricted to the held eigenpairs (tests, small N)."""
        v = self.vectors
        return (v * self.values.to(v.dtype)) @ v.T


@dataclass(frozen=True)
class BlockBasis:
    """An orthonormal basis S (N×d) of a subspace known to contain the range of the Hessian,
    held by blocks of the flat parameter vector rather than as an N×d matrix.

    Each block ``(start, rows, cols, q)`` covers the ``rows·cols`` parameters from ``start`` on,
    read as a row-major rows×cols matrix P; its basis vectors are P = e_i q_kᵀ for the
    orthonormal columns q_k of ``q`` (cols×k), or every entry of P when ``q`` is ``None``.
    Parameters outside every block are outside the subspace. For the paper's MLP the range of a
    minibatch Hessian lies in such a subspace (:func:`chaosgd.engine.models.hessian_range_basis`): its
    first layer's rows only ever move within the span of the batch's inputs, which cuts N = 5350
    to d ≈ 390 for batch 8 and makes a random sketch, its QR and its rank certification
    unnecessary.
    """

    n: int
    blocks: tuple[tuple[int, int, int, Tensor | None], ...]
    # θ ↦ SᵀH(θ)S computed without N-dimensional work (e.g. as the Hessian of the model
    # rewritten in the basis' coordinates); None: from Hessian-vector products of S's columns
    reduced_hessian: Callable[[Tensor], Tensor] | None = None

    @property
    def dim(self) -> int:
        """d, the dimension of the subspace."""
        return sum(r * (c if q is None else q.shape[1]) for _, r, c, q in self.blocks)

    def project(self, z: Tensor) -> Tensor:
        """Coordinates in the basis of the rows of ``z`` (m×N ↦ m×d): Z S."""
        out = []
        for start, rows, cols, q in self.blocks:
            zb = z[:, start : start + rows * cols]
            if q is None:
                out.append(zb)
            else:
                out.append((zb.reshape(-1, rows, cols) @ q.to(z.dtype)).reshape(z.shape[0], -1))
        return torch.cat(out, dim=1)

    def rows_project(self, a: Tensor) -> Tensor:
        """Sᵀ A: the coordinates of the columns of a tall ``a`` (N×m ↦ d×m), without copying it."""
        out = []
        for start, rows, cols, q in self.blocks:
            ab = a[start : start + rows * cols]
            if q is None:
                out.append(ab)
            else:
                coords = q.to(a.dtype).T @ ab.reshape(rows, cols, -1)  # rows×k×m
                out.append(coords.reshape(-1, a.shape[1]))
        return torch.cat(out)

    def rows_expand_add_(self, a: Tensor, c: Tensor, alpha: float = 1.0) -> None:
        """A += alpha · S C in place, for coordinates ``c`` (d×m) and a contiguous tall ``a``."""
        offset = 0
        for start, rows, cols, q in self.blocks:
            k = cols if q is None else q.shape[1]
            cb = c[offset : offset + rows * k]
            ab = a[start : start + rows * cols]
            if q is None:
                ab.add_(cb, alpha=alpha)
            else:
                q3 = q.to(a.dtype).expand(rows, cols, k)
                ab.view(rows, cols, -1).baddbmm_(q3, cb.reshape(rows, k, -1), alpha=alpha)
            offset += rows * k

    def apply_cost(self) -> int:
        """Multiply-adds per column of S C or Sᵀ A (an identity block counts one per entry)."""
        return sum(r * c * (1 if q is None else q.shape[1]) for _, r, c, q in self.blocks)

    def expand(self, c: Tensor) -> Tensor:
        """Vectors of the given coordinates (m×d ↦ m×N): C Sᵀ."""
        out = c.new_zeros(c.shape[0], self.n)
        offset = 0
        for start, rows, cols, q in self.blocks:
            k = cols if q is None else q.shape[1]
            cb = c[:, offset : offset + rows * k]
            if q is None:
                out[:, start : start + rows * cols] = cb
            else:
                block = cb.reshape(-1, rows, k) @ q.to(c.dtype).T
                out[:, start : start + rows * cols] = block.reshape(c.shape[0], -1)
            offset += rows * k
        return out


@dataclass(frozen=True)
class LayerBlocks:
    """The flat θ of a sequential model cut into its layers (forward order), for forming and
    decomposing its dense Hessian with less work than N Hessian-vector products and an N×N eigh.

    *Forming.* A tangent in layer b moves nothing before layer b, and only the rows of the
    layers from b on are needed (the others follow by symmetry): the Hessian's columns of layer b
    are Hessian-vector products of ``tail_loss(θ, b)``, the loss as a function of the parameters
    of layers b, b+1, … with the earlier ones held fixed, whose forward pass before layer b carries
    no tangents and whose backward pass stops at layer b. For the paper's CNN the expensive
    16×16 and 8×8 convolutions then see 188 of the 1158 tangents.

    *Linear layer.* In a network of linear layers, convolutions, ReLUs and max-pools the logits
    are linear in each layer's own parameters (the activation pattern and the pooling choices
    fixed), so the diagonal block of one layer ``linear`` is its Gauss-Newton part J_Uᵀ A J_U
    (``gauss_newton``: θ ↦ that block); its columns are then needed only for the rows of the
    later layers, which the later layers' columns give by symmetry (layers after ``linear``
    compute their rows from ``linear`` on).

    *Decomposing.* range(H) lies in the direct sum of the layers' row ranges P_l·range(H),
    whatever the model; the paper's CNN has rank ≈ N/2 and these ranges add up to the rank
    exactly, so a Rayleigh-Ritz on a basis of each layer's row range replaces the N×N eigh.
    """

    bounds: tuple[int, ...]  # layer l holds θ[bounds[l]:bounds[l + 1]]; bounds[-1] = N
    tail_loss: Callable[[Tensor, int], LossFn]
    linear: int | None = None
    gauss_newton: Callable[[Tensor], Tensor] | None = None

    def __post_init__(self):
        b = self.bounds
        if len(b) < 2 or b[0] != 0 or any(lo >= hi for lo, hi in zip(b, b[1:])):
            raise ValueError(f"layer bounds must rise strictly from 0, got {b}")
        if (self.linear is None) != (self.gauss_newton is None):
            raise ValueError("a Gauss-Newton layer needs both `linear` and `gauss_newton`")
        if self.linear is not None and not 0 <= self.linear < len(b) - 1:
            raise ValueError(f"linear layer {self.linear} outside the {len(b) - 1} layers")


def default_rtol(dtype: torch.dtype) -> float:
    """Relative null tolerance of the shared rule: 1e-10 in float64, 1e-5 in lower precision."""
    return 1e-10 if dtype == torch.float64 else 1e-5


def null_tolerance(values: Tensor, rtol: float | None = None) -> float:
    """The shared null threshold ``rtol``·max|λ| (0 for an empty or all-zero spectrum)."""
    if rtol is None:
        rtol = default_rtol(values.dtype)
    if values.numel() == 0:
        return 0.0
    return float(rtol) * float(values.abs().max())
