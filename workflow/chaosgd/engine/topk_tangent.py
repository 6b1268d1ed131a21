"""The k leading finite-time Lyapunov exponents and vectors, matrix-free.

:class:`chaosgd.engine.tangent_map.TangentMap` holds the whole N×N tangent map Y(t) = ∂θ(t)/∂θ(0)
(Herrmann, Granz, Landgraf, "Chaotic Dynamics are Intrinsic to Neural Network Training with SGD",
NeurIPS 2022: Sec. 2.2, Eqs. 1-2) and reads out all N exponents ln σ_i(Y(t))/t, the eigenvalues
of the paper's Lyapunov matrix (Eq. 3): O(N²) memory and O(rN²) a step with the step's Hessian
eigenpairs. :class:`TopKTangent` follows only k tangent vectors, W(t) = Y(t)·Q0 (N×k, Q0 a seeded
random orthonormal block), each step by one batched Hessian-vector product of the step's
minibatch loss: O(kN) memory, k Hessian-vector products and O(k²N) a step, no eigenpairs --
the standard Benettin / Shimada-Nagashima scheme, here for the maps of SGD, of momentum SGD
(Sec. 2.3, Eq. 8) and of CGD (its pruned eigenpairs projected out), the App. C.1 exponents of
models whose Hessian is never formed.

Representation (as in TangentMap, k columns instead of N): W = Q·R with Q (N×k) orthonormal
after each re-orthonormalization and R (k×k) upper triangular, held as ``diag(exp(s))·B`` with
per-row log scales ``s`` (float64) and unit-norm rows B (:func:`chaosgd.engine.graded_svd.fold`),
so nothing overflows however long the run. Every ``reorth_every`` steps, or sooner once Q's
condition number -- measured each step from the k×k Gram matrix QᵀQ, O(k²N) -- reaches
``exp(max_log_growth)``, Q = Q'R' is refactored and R' folded in (R ← R'R); the Benettin sums
Σ ln|R'_ii| are kept alongside.

What :meth:`TopKTangent.readout` computes, at step t, with Y = Y(t) = U Σ Vᵀ (σ_1 ≥ … ≥ σ_N) and
λ_i = ln σ_i / t the exact finite-time exponents:

(b) ``exponents``: λ̂_i = ln σ_i(Y Q0)/t = ln σ_i(R)/t, i = 1..k (the graded SVD of the k×k R),
    and ``vectors`` = Q0·V_R (N×k), the right singular vectors of Y Q0 within span(Q0): the
    estimates of the top-k Lyapunov vectors (the top eigenvectors of the Lyapunov matrix YᵀY,
    directions at θ(0)).
(a) ``benettin``: λ^B_i = Σ ln|R_ii|/t, in Gram-Schmidt (column) order, and ``forward`` = Q(t)
    (N×k), the orthonormalized tangent vectors at θ(t), whose first i columns span Y Q0[:, :i].

How close they are (derivation):

* Upper bound, exact at every t: for i ≤ k, σ_i(Y Q0) ≤ σ_i(Y). By Courant-Fischer,
  σ_i(YQ0) = max over i-dimensional S ⊆ R^k of min_{x∈S, ‖x‖=1} ‖YQ0x‖, and Q0 maps S
  isometrically onto an i-dimensional subspace of R^N, over which σ_i(Y) maximizes the same
  quantity. Hence λ̂_i ≤ λ_i (to rounding), whatever Q0.
* Lower bound: let V_i be Y's top-i right singular vectors, C_i = V_iᵀQ0 (i×k) and
  β_i = −Σ_j ln σ_j(C_i) = −½ ln det(C_i C_iᵀ) ≥ 0 (minus the log of the product of the cosines
  of the principal angles between span V_i and span Q0; :func:`overlap_bound`). Take P (k×i)
  orthonormal with C_i P = L·D (the top right singular vectors of C_i). Interlacing gives
  Π_{j≤i} σ_j(YQ0) ≥ Π_{j≤i} σ_j(YQ0P) = det(MᵀΣ²M)^½ with M = VᵀQ0P (N×i), and Cauchy-Binet
  det(MᵀΣ²M) = Σ_{|S|=i} det(M_S)² Π_{j∈S} σ_j² ≥ det(C_iP)² Π_{j≤i} σ_j². So

      0 ≤ Σ_{j≤i} (λ_j − λ̂_j) ≤ β_i / t,   hence   0 ≤ λ_i − λ̂_i ≤ β_i / t   (i = 1..k).

  β_i is finite for a random Q0 with probability one, and it converges as t grows wherever the
  exponents are distinct (the right singular vectors of Y(t) settle, Oseledets), so the gap
  closes like 1/t. Sizes for a Gaussian Q0: β_1 ≈ ½ ln(N/k) (a few nats), β_k ≈ (k/2) ln N −
  ln|det G| with G a k×k standard Gaussian (tens of nats); where the exponents i−1, i, i+1 are
  well separated the individual gap is ≈ (β_i − β_{i−1})/t, the increment, not the sum.
* The Benettin partial sums obey the same with Q0's first i columns: Σ_{j≤i} ln|R_jj| =
  Σ_{j≤i} ln σ_j(YQ0[:, :i]) (a volume), so 0 ≤ Σ_{j≤i}(λ_j − λ^B_j) ≤ β^B_i / t with
  β^B_i = −ln|det(V_iᵀQ0[:, :i])| ≥ β_i (:func:`overlap_bound` of Q0[:, :i]). Since
  σ_j(YQ0[:, :i]) ≤ σ_j(YQ0), the partial sums of (b) are never below those of (a): both are
  below the exact ones, (b) is the closer in every partial sum at every t. Individual Benettin
  exponents are only bounded through differences of partial sums, and at short times they need
  not be in descending order.
* k = N: Q0 is orthogonal, σ_i(YQ0) = σ_i(Y): (b) is the exact spectrum (what TangentMap reads
  out) and ``vectors`` the exact Lyapunov vectors; (a) is the QR diagonal of YQ0, equal to
  TangentMap's ``benettin`` for Q0 = I and O(1/t) from the exact exponents otherwise.

Precision: as in TangentMap, a fold resolves Q's directions only to ~ε κ(Q); the measured κ keeps
it below ``exp(max_log_growth)``, every fold records what it resolved, and :meth:`readout` raises
:class:`chaosgd.engine.tangent_map.TangentPrecisionError` rather than return an exponent a fold
lost, one of a singular W, or an SVD whose ln σ do not add up to Σ ln|R_ii| = ln det(RᵀR)^½.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from chaosgd.engine.factored_state import FactoredState
from chaosgd.engine.graded_svd import (
    DC_ORTH,
    DC_SETTINGS,
    MARGIN,
    WINDOW,
    fold,
    orthogonality_loss,
    qr_log_cond,
    svd_readout,
)
from chaosgd.engine.tangent_map import TangentPrecisionError

__all__ = ["TopKTangent", "TopKReadout", "overlap_bound"]

# The relative rounding error of a fold's R'_ii (≈ ε ‖R'_{:,i}‖ / |R'_ii|) beyond which that
# direction counts as lost: TangentMap's threshold (fewer than three digits left).
_LOST_REL = 1e-3
# Up to this k the readout is the one-sided Jacobi SVD (relatively accurate in every value; a
# k×k matrix costs nothing next to the steps); beyond it the divide-and-conquer readout first.
_JACOBI_MAX_K = 1024

Hvp = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TopKReadout:
    """The k leading finite-time exponents and vectors at step t (numpy, float64, CPU).

    exponents: (k,) ln σ_i(Y(t)Q0)/t, descending: (b) in the module docstring; below the exact
        ln σ_i(Y(t))/t by at most :func:`overlap_bound`/t.
    vectors: (N, k) Q0·V_R, the right singular vectors of Y(t)Q0 (matching ``exponents``).
    benettin: (k,) Σ ln|R_ii|/t in Gram-Schmidt column order (a), matching ``forward``.
    forward: (N, k) Q(t), the orthonormalized tangent vectors (columns nested as Y(t)Q0's).
    t: number of steps.
    method: "svd" (one float64 window), "svd_deflated" or "qr_diagonal" (no ``vectors``).
    log_range: max − min of R's log row scales (nats).
    orthogonality_loss: max |V_RᵀV_R − I| (NaN without vectors).
    log_growth_since_reorth: ln κ(Q) measured after the last step.
    fold_log_cond: the worst fold's ln(‖R'_{:,i}‖ / |R'_ii|) (its relative error ≈ ε e^this).
    solver: "jacobi", "dc" or "dc+jacobi" ("" for "qr_diagonal").
    """

    exponents: np.ndarray
    vectors: np.ndarray | None
    benettin: np.ndarray
    forward: np.ndarray
    t: int
    method: str
    log_range: float
    orthogonality_loss: float
    log_growth_since_reorth: float
    fold_log_cond: float
    solver: str


def overlap_bound(q0, v) -> np.ndarray:
    """β_i = −Σ_j ln σ_j(V_iᵀ Q0), i = 1..min(k, m), in nats; V_i: the first i columns of ``v``.

    ``q0`` (N×k, orthonormal columns) and ``v`` (N×m): the exact right singular vectors of Y(t)
    in descending order. With them 0 ≤ Σ_{j≤i}(λ_j − λ̂_j) ≤ β_i/t for the exponents λ̂ of
    :meth:`TopKTangent.readout` (derivation in the module docstring); with ``q0[:, :i]`` the
    i-th entry bounds the Benettin partial sums the same way. inf where V_i ⟂ some direction of
    span Q0 (a Q0 of probability zero).
    """
    q0 = np.asarray(q0.cpu() if isinstance(q0, torch.Tensor) else q0, dtype=np.float64)
    v = np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64)
    if q0.ndim != 2 or v.ndim != 2 or q0.shape[0] != v.shape[0]:
        raise ValueError(f"need q0 (N×k) and v (N×m), got {q0.shape} and {v.shape}")
    m = min(q0.shape[1], v.shape[1])
    c = v[:, :m].T @ q0
    out = np.empty(m)
    with np.errstate(divide="ignore"):
        for i in range(1, m + 1):
            out[i - 1] = -np.log(np.linalg.svd(c[:i], compute_uv=False)).sum()
    return out


class TopKTangent(FactoredState):
    """k tangent vectors W(t) = Y(t)Q0 advanced by Hessian-vector products, and their exponents.

    Args:
        n: number of parameters N.
        k: number of tangent vectors (1 ≤ k ≤ N).
        dtype: dtype of the state (float64 for the accuracy claims); the log scales are float64.
        device: device of the state; the steps run there.
        reorth_every: maximum number of steps between re-orthonormalizations (each O(k²N)).
        max_log_growth: budget for ln κ(Q), measured after every step from QᵀQ (O(k²N));
            reaching it folds at once (e^8 ≈ 3000: ≲ 1e-12 relative error per fold in float64).
            ``math.inf`` leaves only ``reorth_every``.
        generator: draws Q0 (a Gaussian N×k block on the CPU, float64, orthonormalized there, so
            the same seed gives the same Q0 on every device); ``None`` is a fixed seed, 0.
        q0: an explicit start instead (N×k, orthonormal columns, e.g. the identity for k = N).
    """

    def __init__(
        self,
        n: int,
        k: int,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        reorth_every: int = 20,
        max_log_growth: float = 8.0,
        generator: torch.Generator | None = None,
        q0: torch.Tensor | None = None,
    ):
        """Start at W(0) = Q0; the arguments are described in the class docstring."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if k > n:
            raise ValueError(f"k = {k} tangent vectors exceed the n = {n} parameters")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if not isinstance(reorth_every, int) or isinstance(reorth_every, bool) or reorth_every < 1:
            raise ValueError(f"reorth_every must be a positive int, got {reorth_every!r}")
        if not (max_log_growth > 0):
            raise ValueError(f"max_log_growth must be positive, got {max_log_growth!r}")
        self.n, self.k = n, k
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.reorth_every = reorth_every
        self.max_log_growth = float(max_log_growth)
        self.q0 = self._start(q0, generator)
        # Q is held as its rows (k×N): the batched Hessian-vector product takes rows, and Qᵀ
        # of contiguous rows is the column-major block LAPACK's QR wants, without a copy
        self._rows = self.q0.T.contiguous()
        self._g: torch.Tensor | None = None  # momentum buffer's rows, G(t) = Ĝ R
        self.s = torch.zeros(k, dtype=torch.float64, device=self.device)
        self.B = torch.eye(k, dtype=dtype, device=self.device)
        self.log_diag = torch.zeros(k, dtype=torch.float64, device=self.device)
        self._t = 0
        self._since = 0
        self._growth = 0.0
        self._version = 0
        self._cache: tuple[tuple, TopKReadout] | None = None
        self._lost: tuple[int, int, float] | None = None
        self._fold_log_cond = 0.0
        self.hvp_products = 0

    @property
    def t(self) -> int:
        """Number of steps applied."""
        return self._t

    @property
    def Q(self) -> torch.Tensor:
        """The current (not yet re-orthonormalized) N×k block, W = Q·R (a view of the state)."""
        return self._rows.T

    # ----------------------------------------------------------------------------- stepping
    def step_sgd(self, lr: float, hvp: Hvp, pruned=None) -> None:
        """W ← (I − η H_kept) W: one SGD step's tangent map (the paper's Eqs. 1-2) on the block.

        ``hvp`` maps rows to rows, V (m×N) ↦ V H, for the Hessian H of this step's minibatch loss
        at this step's parameters (:func:`chaosgd.engine.curvature.make_hvp`); it is called once,
        on the k rows of Q in the tangent's dtype and device (the state itself, not a copy: it
        must not write to them). ``pruned`` = (values (p,),
        vectors (N, p)): eigenpairs CGD projected out this step; the map then uses
        H_kept = H − V_p Λ_p V_pᵀ, the Hessian restricted to the kept eigenvectors (what the CGD
        update differentiates to).
        """
        self._no_momentum("step_sgd")
        lr = self._positive(lr, "lr")
        hq = self._h_rows(hvp, pruned)
        self._rows.add_(hq, alpha=-lr)
        self._advance()

    def step_momentum(self, lr: float, momentum: float, hvp: Hvp, pruned=None) -> None:
        """One step of the momentum tangent recursion (the paper's Eq. 8, Sec. 2.3) on the block.

        PyTorch's convention (v ← μv + g; θ ← θ − ηv) makes Eq. 8 the recursion G ← μG + H W;
        W ← W − ηG from G = 0, exactly as :meth:`chaosgd.engine.tangent_map.TangentMap.step_momentum`
        carries it; G is held with W's right factor (G = Ĝ R) and takes each fold's R'^-1.
        ``hvp`` and ``pruned`` as in :meth:`step_sgd`.
        """
        lr = self._positive(lr, "lr")
        mu = self._finite(momentum, "momentum")
        if mu < 0:
            raise ValueError(f"momentum must be ≥ 0, got {mu}")
        if self._g is None:
            if self._t > 0:
                raise RuntimeError("step_momentum after plain steps: the momentum buffer is lost")
            self._g = torch.zeros_like(self._rows)
        hq = self._h_rows(hvp, pruned)
        self._g.mul_(mu).add_(hq)
        self._rows.add_(self._g, alpha=-lr)
        self._advance()

    def reorthonormalize(self) -> None:
        """Refactor Q = Q'R', fold R' into R and its diagonal into the Benettin sums (O(k²N)).

        Records how much precision the fold had left (reported by :meth:`readout`); raises
        :class:`TangentPrecisionError` if Q overflowed.
        """
        if self._since == 0:
            return
        qn, rp = torch.linalg.qr(self._rows.T)
        log_cond, col, finite = qr_log_cond(rp)
        if not finite:
            if self._lost is not None:
                raise TangentPrecisionError(self._lost[0], self._loss_message(*self._lost[1:]))
            raise TangentPrecisionError(self._t, self._overflow_message())
        self._fold_log_cond = max(self._fold_log_cond, log_cond)
        if self._lost is None and log_cond > self._lost_log_cond():
            self._lost = (self._t, col, log_cond)
        if self._g is not None:
            # columns: Ĝ ← Ĝ R'^-1, i.e. rows ← R'^-T rows
            self._g = torch.linalg.solve_triangular(rp.T, self._g, upper=False).contiguous()
        self.log_diag += torch.log(rp.diagonal().abs().to(torch.float64))
        self.s, self.B = fold(rp, self.s, self.B)
        self._rows = qn.T.contiguous()
        self._since = 0
        self._growth = 0.0

    # ------------------------------------------------------------------------------ readout
    def readout(self, method: str = "auto") -> TopKReadout:
        """The k leading exponents and vectors at the current t (module docstring: (a), (b) and
        their bounds); does not change the state.

        ``method``: "auto" (the Jacobi SVD of the k×k factor for k ≤ 1024, else preconditioned
        divide and conquer, redone by Jacobi if it loses orthogonality or the determinant check),
        "jacobi" or "qr_diagonal" (Benettin only, no vectors: ``exponents`` are then the sorted
        Benettin exponents). Raises :class:`TangentPrecisionError` when a fold lost a direction,
        W is singular to working precision, or the SVD's ln σ do not add up to Σ ln|R_ii|.
        """
        if method not in ("auto", "jacobi", "qr_diagonal"):
            raise ValueError(f"method must be 'auto', 'jacobi' or 'qr_diagonal', got {method!r}")
        if self._t == 0:
            raise RuntimeError("no steps taken yet: exponents ln σ/t are undefined at t = 0")
        key = (self._version, method)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        if self._lost is not None:
            raise TangentPrecisionError(self._lost[0], self._loss_message(*self._lost[1:]))
        qn, rq = torch.linalg.qr(self._rows.T)
        log_cond, col, finite = qr_log_cond(rq)
        if not finite:
            raise TangentPrecisionError(self._t, self._overflow_message())
        if log_cond > self._lost_log_cond():
            raise TangentPrecisionError(self._t, self._loss_message(col, log_cond))
        fold_log_cond = max(self._fold_log_cond, log_cond)
        log_diag = (self.log_diag + torch.log(rq.diagonal().abs().to(torch.float64))).cpu()
        s, B = fold(rq, self.s, self.B)
        log_diag = log_diag.numpy()
        bad = np.flatnonzero(~np.isfinite(log_diag))
        if bad.size:
            raise TangentPrecisionError(
                self._t,
                f"Y(t)Q0 is singular to working precision (ln|R_ii| = {log_diag[bad[0]]} for "
                f"i = {bad[0]}): a step was singular on the tracked vectors",
            )
        s = s.cpu().numpy()
        log_range = float(s.max() - s.min())
        benettin = log_diag / self._t
        forward = qn.to(device="cpu", dtype=torch.float64).numpy()
        exps, vectors, used, loss, solver = np.sort(benettin)[::-1], None, "qr_diagonal", np.nan, ""
        if method != "qr_diagonal":
            Bn = B.to(device="cpu", dtype=torch.float64).numpy()
            kinds = ("jacobi",)
            if method == "auto" and self.k > _JACOBI_MAX_K:
                kinds = (*DC_SETTINGS, "jacobi")
            for kind in kinds:
                try:
                    logsig, vr, windows, solver = svd_readout(kind, s, Bn, WINDOW, MARGIN)
                    loss = orthogonality_loss(vr)
                    if kind != "jacobi" and not loss <= DC_ORTH:
                        raise np.linalg.LinAlgError(f"vectors orthonormal only to {loss:.1e}")
                    self._check_svd(logsig, log_diag)
                except (np.linalg.LinAlgError, TangentPrecisionError) as err:
                    if kind != "jacobi":
                        continue
                    if isinstance(err, TangentPrecisionError):
                        raise
                    warnings.warn(
                        f"Jacobi SVD readout failed ({err}); using the QR diagonal", stacklevel=2
                    )
                    loss, solver = np.nan, ""
                else:
                    exps = logsig / self._t
                    q0 = self.q0.to(device="cpu", dtype=torch.float64)
                    vectors = (q0 @ torch.from_numpy(vr)).numpy()
                    used = "svd" if windows <= 1 else "svd_deflated"
                break
        out = TopKReadout(
            exponents=exps,
            vectors=vectors,
            benettin=benettin,
            forward=forward,
            t=self._t,
            method=used,
            log_range=log_range,
            orthogonality_loss=float(loss),
            log_growth_since_reorth=self._growth,
            fold_log_cond=fold_log_cond,
            solver=solver,
        )
        self._cache = (key, out)
        return out

    def matrix(self) -> torch.Tensor:
        """Dense W(t) = Y(t)Q0 = Q diag(e^s) B (N×k), for tests and short horizons only: the
        product whose range problems the factored form avoids (may give inf / 0)."""
        return self._rows.T @ (torch.exp(self.s).to(self.dtype)[:, None] * self.B)

    # -------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything needed to continue bit-identically; tensors only (weights_only loading)."""
        sd = {
            "q0": self.q0.clone(),
            "Q_rows": self._rows.clone(),
            **self._factor_state(),
            "hvp_products": torch.tensor(self.hvp_products, dtype=torch.int64),
        }
        if self._g is not None:
            sd["G_rows"] = self._g.clone()
        return sd

    def load_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` output (moved to this object's device and dtype); its n and
        k must match, its settings (reorth_every, max_log_growth) replace this object's."""
        n, k = self.n, self.k
        shapes = {
            "q0": (n, k),
            "Q_rows": (k, n),
            "B": (k, k),
            "s": (k,),
            "log_diag": (k,),
            "G_rows": (k, n),
        }
        for key in (*shapes, "t", "since_reorth", "log_growth", "reorth_every", "max_log_growth"):
            if key not in sd and key != "G_rows":
                raise ValueError(f"state_dict lacks {key!r}")
        for key, shape in shapes.items():
            if key in sd and tuple(sd[key].shape) != shape:
                raise ValueError(
                    f"state_dict[{key!r}] has shape {tuple(sd[key].shape)}, want {shape} "
                    f"(n = {n}, k = {k})"
                )
        self._load_factor_state(sd)
        kw = dict(dtype=self.dtype, device=self.device)
        self.q0 = sd["q0"].to(**kw).contiguous().clone()
        self._rows = sd["Q_rows"].to(**kw).contiguous().clone()
        self._g = sd["G_rows"].to(**kw).contiguous().clone() if "G_rows" in sd else None
        self.hvp_products = int(sd["hvp_products"]) if "hvp_products" in sd else 0

    # ------------------------------------------------------------------------------ helpers
    def _start(self, q0, generator) -> torch.Tensor:
        """Q0 (N×k, orthonormal) in the state's dtype and device."""
        kw = dict(dtype=self.dtype, device=self.device)
        if q0 is not None:
            if generator is not None:
                raise ValueError("pass either q0 or generator, not both")
            if not isinstance(q0, torch.Tensor) or tuple(q0.shape) != (self.n, self.k):
                shape = tuple(q0.shape) if isinstance(q0, torch.Tensor) else type(q0).__name__
                raise ValueError(f"q0 must be a tensor of shape ({self.n}, {self.k}), got {shape}")
            q = q0.detach().to(device="cpu", dtype=torch.float64)
            gram = q.T @ q
            gram.diagonal().sub_(1.0)
            # orthonormal to the dtype's rounding, or the bounds of the readout do not hold
            if not bool(torch.isfinite(q).all()) or float(gram.abs().max()) > 1e3 * (
                torch.finfo(self.dtype).eps * math.sqrt(self.n)
            ):
                raise ValueError("q0 must have orthonormal columns")
            return q0.detach().to(**kw).contiguous().clone()
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        if generator.device.type != "cpu":
            raise ValueError("generator must be a CPU generator (Q0 is drawn on the CPU)")
        z = torch.randn(self.n, self.k, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(z)
        # Haar-distributed: fix QR's sign convention by R's diagonal
        q *= torch.sign(r.diagonal())
        return q.to(**kw).contiguous()

    def _h_rows(self, hvp: Hvp, pruned) -> torch.Tensor:
        """Rows of Q H_kept (k×N): one batched Hessian-vector product, less the pruned part."""
        if not callable(hvp):
            raise ValueError(f"hvp must be callable (rows ↦ rows·H), got {type(hvp).__name__}")
        lam, vp = self._check_pruned(pruned) if pruned is not None else (None, None)
        hq = hvp(self._rows)
        if not isinstance(hq, torch.Tensor) or tuple(hq.shape) != (self.k, self.n):
            shape = tuple(hq.shape) if isinstance(hq, torch.Tensor) else type(hq).__name__
            raise ValueError(f"hvp returned {shape}, want ({self.k}, {self.n}): rows V ↦ V H")
        hq = hq.to(dtype=self.dtype, device=self.device)
        if not bool(torch.isfinite(hq).all()):
            raise ValueError(f"hvp returned non-finite entries at step {self._t}")
        self.hvp_products += self.k
        if lam is not None and lam.numel():
            hq = hq.addmm_((self._rows @ vp).mul_(lam), vp.T, alpha=-1.0)
        return hq

    def _check_pruned(self, pruned) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            values, vectors = pruned
        except (TypeError, ValueError):
            raise ValueError("pruned must be a pair (values (p,), vectors (N, p))") from None
        if not isinstance(values, torch.Tensor) or values.dim() != 1:
            raise ValueError("pruned values must be a 1-D torch.Tensor")
        p = values.shape[0]
        if not isinstance(vectors, torch.Tensor) or tuple(vectors.shape) != (self.n, p):
            shape = tuple(vectors.shape) if isinstance(vectors, torch.Tensor) else None
            raise ValueError(f"pruned vectors have shape {shape}, want ({self.n}, {p})")
        kw = dict(dtype=self.dtype, device=self.device)
        lam, vp = values.to(**kw), vectors.to(**kw)
        if not (bool(torch.isfinite(lam).all()) and bool(torch.isfinite(vp).all())):
            raise ValueError("pruned eigenpairs contain non-finite entries")
        return lam, vp

    def _advance(self) -> None:
        self._t += 1
        self._since += 1
        self._version += 1
        if self._since >= self.reorth_every:
            self.reorthonormalize()
            return
        if math.isfinite(self.max_log_growth):
            self._growth = self._log_cond()
            if self._growth >= self.max_log_growth:
                self.reorthonormalize()

    def _log_cond(self) -> float:
        """ln κ₂(Q) from the eigenvalues of QᵀQ (inf once κ² passes what they resolve, ~1/ε)."""
        mu = torch.linalg.eigvalsh(self._rows @ self._rows.T)
        lo, hi = float(mu[0]), float(mu[-1])
        if not (math.isfinite(hi) and hi > 0.0):
            return math.inf
        if not lo > hi * torch.finfo(self.dtype).eps * self.k:
            return math.inf
        return 0.5 * math.log(hi / lo)

    def _lost_log_cond(self) -> float:
        return math.log(_LOST_REL / torch.finfo(self.dtype).eps)

    def _overflow_message(self) -> str:
        return (
            "the tangent vectors overflowed between re-orthonormalizations; lower reorth_every "
            f"(now {self.reorth_every}) or max_log_growth (now {self.max_log_growth:g})"
        )

    def _loss_message(self, i: int, log_cond: float) -> str:
        size = "zero" if math.isinf(log_cond) else f"e^-{log_cond:.1f} of its column's norm"
        return (
            f"re-orthonormalizing the tangent vectors left diagonal entry {i} of the triangular "
            f"factor at {size}: the directions from {i} on are lost. Lower reorth_every (now "
            f"{self.reorth_every}) or max_log_growth (now {self.max_log_growth:g}); a single "
            "step singular on the tracked vectors cannot be resolved by either."
        )

    def _check_svd(self, logsig: np.ndarray, log_diag: np.ndarray) -> None:
        # Σ ln σ_i(R) = ln|det R| = Σ ln|R_ii| to rounding when every σ is resolved (as in
        # TangentMap._check_svd: sqrt(ε) of the total leaves room for rounding, not for a lost σ)
        total, want = float(np.sum(logsig)), float(np.sum(log_diag))
        tol = math.sqrt(np.finfo(np.float64).eps) * (logsig.size + float(np.abs(log_diag).sum()))
        if np.isfinite(logsig).all() and abs(total - want) <= tol:
            return
        raise TangentPrecisionError(
            self._t,
            f"the SVD of the k×k factor lost precision: Σ ln σ_i = {total:.6g} but "
            f"Σ ln|R_ii| = {want:.6g}; readout(method='qr_diagonal') still gives the Benettin "
            "exponents",
        )

    def _no_momentum(self, name: str) -> None:
        if self._g is not None:
            raise RuntimeError(f"{name} on a block that has taken momentum steps")

    @staticmethod
    def _finite(x, name: str) -> float:
        try:
            x = float(x)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a real scalar, got {x!r}") from None
        if not math.isfinite(x):
            raise ValueError(f"{name} must be finite, got {x}")
        return x

    @classmethod
    def _positive(cls, x, name: str) -> float:
        x = cls._finite(x, name)
        if not x > 0:
            raise ValueError(f"{name} must be positive, got {x}")
        return x
