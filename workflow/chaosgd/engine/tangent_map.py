"""Tangent map of (momentum) SGD and its finite-time Lyapunov exponents.

The tangent map Y(t) = ∂θ(t)/∂θ(0) (Herrmann, Granz, Landgraf, "Chaotic Dynamics are Intrinsic
to Neural Network Training with SGD", NeurIPS 2022: Sec. 2.2, Eqs. 1-2; for SGD with and without
momentum Sec. 2.3, Eq. 8) is the product of thousands of per-step Jacobians, and the finite-time
Lyapunov exponents are ln σ_i(Y(t))/t, the eigenvalues of the paper's Lyapunov matrix (Eq. 3).
Multiplying it out and eigendecomposing YᵀY -- what the reference code did -- only resolves
exponents within ≈ ln(1/ε)/t of the top one (≈ 18/t through YᵀY); everything below is noise or
a NaN logarithm. Here Y is never formed:

* ``Y = Q · R``. ``Q`` (N×N, on the device of the state) takes the per-step updates; every
  ``reorth_every`` steps, or sooner when a cheap bound says Q's condition number may have grown
  past ``exp(max_log_growth)``, it is re-orthonormalized, ``Q = Q'R'``, and R' is folded into
  the accumulated upper-triangular factor, ``R ← R'R``.
* R's rows scale like exp(λ_i t) and its spread leaves float64 after a few hundred to a few
  thousand steps, so R is held as ``diag(exp(s)) · B``: ``s`` are per-row log scales (float64) and
  B has unit-norm rows. The fold ``R'R`` is done with the scaling in log space
  (:func:`chaosgd.engine.graded_svd.fold`), so nothing ever overflows or underflows except terms
  that are below ε relative to their own row.
* Alongside, the Benettin sums Σ ln|R'_ii| (exponents from the accumulated QR diagonal) are kept.

Precision: a fold resolves the small directions of Q only to ~ε κ(Q) relative to the large ones,
so the steps keep ln κ(Q) below ``max_log_growth``: ``step_sgd`` from the eigenvalues alone,
``step_linear`` from J's singular values (and it rescales J by a power of two, so uniformly
contracting maps never underflow). ``step_momentum`` has no such bound. Every fold measures what
it actually resolved (column norm over diagonal of R'). :meth:`TangentMap.readout` raises
:class:`TangentPrecisionError`, naming the step, instead of returning -inf or noise when a fold
left a diagonal entry with a relative rounding error above ``_LOST_REL``, when Y(t) is singular
to working precision, or when the SVD's ln σ do not add up to ln|det Y| = Σ ln|R_ii|.

Readout (O(N³), only at checkpoints; on CPU through LAPACK): the exponents are ln σ_i(R)/t and
the Lyapunov vectors the right singular vectors of R (Q is orthonormal after folding in the
current Q). R is row-graded: its singular values span hundreds of nats, and every one of them
must keep *relative* accuracy: :mod:`chaosgd.engine.graded_svd` reads it out, in one float64
window or several deflated ones (``LyapunovReadout.method``), each by the Jacobi SVD or by
preconditioned divide and conquer (``LyapunovReadout.solver``).

While CGD prunes, the tangent map uses the Hessian restricted to the kept eigenvectors: the caller
passes only the kept eigenpairs to :meth:`TangentMap.step_sgd` / :meth:`TangentMap.step_momentum`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from chaosgd.engine.factored_state import FactoredState
from chaosgd.engine.graded_svd import (
    DC_ORTH,
    DC_SETTINGS,
    MARGIN,
    WINDOW,
    LyapunovReadout,
    fold,
    orthogonality_loss,
    qr_log_cond,
    svd_readout,
)
from chaosgd.engine.top_singular import TOP_MAX_ITER, TOP_TOL, TopSingular, factored_top

__all__ = ["TangentMap", "TangentPrecisionError"]

# A fold whose worst diagonal entry R'_ii may be off by more than this (relative; rounding error
# ≈ ε ‖R'_{:,i}‖ / |R'_ii|) has lost that direction: fewer than three digits of its contribution
# to ln σ are left, and with accumulated step errors on top it can be pure noise. For float64 it
# means ln κ(Q) ≳ 29 nats, far beyond the default budget of 8 (guarded steps never get there);
# for a float32 map ≳ 9 nats, so there the budget should be lowered with the dtype.
_LOST_REL = 1e-3
_LN2 = math.log(2.0)


class TangentPrecisionError(FloatingPointError):
    """The tangent map can no longer resolve some Lyapunov exponents (see the message).

    Raised by :meth:`TangentMap.readout` when a re-orthonormalization lost a direction (Q's
    condition number grew past what the dtype carries), Y(t) is singular to working precision, or
    the SVD of the accumulated factor lost precision; and by the steps when Q overflowed. ``step``
    is the step t at which it happened.
    """

    def __init__(self, step: int, message: str):
        """Record ``step`` and prefix it to ``message``."""
        super().__init__(f"tangent map at step {step}: {message}")
        self.step = step


def _pow2_scale(x: torch.Tensor, p: int) -> torch.Tensor:
    """x · 2^p, exact while the entries stay normal (2^p itself is formed in range)."""
    if p == 0:
        return x
    if abs(p) < 126:  # 2^p is a normal float32 and float64
        return x * 2.0**p
    h = p // 2
    return x * 2.0**h * 2.0 ** (p - h)


class TangentMap(FactoredState):
    """Accumulates the tangent map Y(t) = J(t-1)···J(0), Y(0) = I, in factored form.

    Args:
        n: number of parameters N.
        dtype: dtype of the per-step state (float64 for the accuracy claims).
        device: device of the state; the per-step updates run there in torch.
        reorth_every: maximum number of steps between re-orthonormalizations of Q. Too rare and
            Q's columns collapse onto the top direction (the small exponents lose ~ln κ(Q)
            digits per fold) or overflow; too often and the O(N³) QR dominates the O(rN²) steps.
        max_log_growth: budget for a bound on ln κ(Q) since the last re-orthonormalization:
            ``step_sgd`` tracks Σ ln(max|1-ηλ| / min|1-ηλ|) from the eigenvalues alone and
            folds once it reaches the budget; ``step_linear`` tracks Σ ln κ(J) and folds before a
            step that would exceed it (e^8 ≈ 3000, i.e. ≤ ~1e-12 relative error per fold in
            float64). ``math.inf`` turns both off.
    """

    def __init__(
        self,
        n: int,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        reorth_every: int = 20,
        max_log_growth: float = 8.0,
    ):
        """Start at Y(0) = I; the arguments are described in the class docstring."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if not isinstance(reorth_every, int) or reorth_every < 1:
            raise ValueError(f"reorth_every must be a positive int, got {reorth_every!r}")
        if not (max_log_growth > 0):
            raise ValueError(f"max_log_growth must be positive, got {max_log_growth!r}")
        self.n = n
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.reorth_every = reorth_every
        self.max_log_growth = float(max_log_growth)
        kw = dict(dtype=dtype, device=self.device)
        self.Q = torch.eye(n, **kw)
        self.B = torch.eye(n, **kw)
        self.s = torch.zeros(n, dtype=torch.float64, device=self.device)
        self.log_diag = torch.zeros(n, dtype=torch.float64, device=self.device)
        self.G: torch.Tensor | None = None  # momentum buffer Ĝ, G(t) = Ĝ R
        self._t = 0
        self._since = 0
        self._growth = 0.0
        self._version = 0
        self._cache: tuple[int, LyapunovReadout] | None = None
        # the first fold that lost a direction: (t, column, ln cond); and the worst fold so far
        self._lost: tuple[int, int, float] | None = None
        self._fold_log_cond = 0.0

    @property
    def t(self) -> int:
        """Number of steps applied."""
        return self._t

    # ----------------------------------------------------------------------------- stepping
    def step_linear(self, J: torch.Tensor) -> None:
        """Y ← J Y for an arbitrary dense N×N Jacobian (O(N³); tests and custom maps).

        Nothing bounds an arbitrary J's growth in advance, so each step pays for J's singular
        values (one more O(N³) LAPACK call): ln κ(J) goes into the ``max_log_growth`` budget, and
        Q is re-orthonormalized *before* a step that would exceed it, so between folds κ(Q) stays
        within the budget unless a single J alone exceeds it. J is also rescaled by the power of
        two that centres its singular values on 1 -- exactly, the factor goes into the log
        scales -- so uniformly contracting or expanding maps never under- or overflow Q.
        """
        self._no_momentum("step_linear")
        J = self._check_matrix(J, "J", (self.n, self.n))
        growth, p = self._linear_growth(J)
        if self._since and self._growth + growth > self.max_log_growth:
            self.reorthonormalize()
        if p:
            J = _pow2_scale(J, p)
            # Y = J Q R = (2^p J) Q (2^-p R): the row scales and the diagonal take the factor
            self.s -= p * _LN2
            self.log_diag -= p * _LN2
        self.Q = J @ self.Q
        self._advance(growth)

    def step_sgd(
        self, lr: float, values: torch.Tensor, vectors: torch.Tensor, basis=None, coords=None
    ) -> None:
        """Y ← (I − η V diag(λ) Vᵀ) Y, O(rN²): one VᵀQ product and one rank-r update in place.

        ``values`` (r,) and ``vectors`` (N, r) are the eigenpairs of the minibatch Hessian that
        act on the dynamics -- under CGD only the kept ones (H restricted to the kept
        eigenvectors). Eigenpairs left out act as λ = 0.

        With ``basis`` (a :class:`chaosgd.engine.eigenpairs.BlockBasis` S) and ``coords``
        (d×r, V = S·coords, as the Rayleigh-Ritz paths return them) the update is applied as
        S K Sᵀ Q with K = coords Λ coordsᵀ (d×d) whenever that costs less: for the MLP's range
        basis (d ≈ 390, its first layer held by the span of 8 inputs) about a tenth of the two
        r×N×N products.
        """
        self._no_momentum("step_sgd")
        lr = self._check_scalar(lr, "lr")
        lam, V = self._check_eig(values, vectors)
        if self._structured(basis, coords, lam):
            basis.rows_expand_add_(
                self.Q, self._reduced_h(lam, coords) @ basis.rows_project(self.Q), -lr
            )
        else:
            M = (V.T @ self.Q).mul_(lam[:, None])
            self.Q.addmm_(V, M, alpha=-lr)
        self._advance(self._sgd_growth(lr, lam))

    def step_momentum(
        self,
        lr: float,
        momentum: float,
        values: torch.Tensor,
        vectors: torch.Tensor,
        basis=None,
        coords=None,
    ) -> None:
        """One step of the momentum tangent recursion (the paper's Eq. 8, Sec. 2.3).

        With momentum in PyTorch's convention (v ← μv + g; θ ← θ − ηv), Eq. 8's
        Y(t+1) = Y(t) − η Σ_s μ^{t−s} H(s) Y(s) is carried as a recursion:
        G(t) = μ G(t−1) + H(t) Y(t), G(−1) = 0; Y(t+1) = Y(t) − η G(t), with H = V diag(λ) Vᵀ
        from the (kept) eigenpairs as in :meth:`step_sgd`. G is carried as Ĝ with the same right
        factor as Y (G = Ĝ R), so Ĝ ← μĜ + HQ; Q ← Q − ηĜ, and Ĝ ← Ĝ R'^-1 at each fold.
        ``basis`` and ``coords`` as in :meth:`step_sgd`.
        Costs one extra N×N buffer. Re-orthonormalization here follows ``reorth_every`` only
        (no cheap bound exists for the 2N-dimensional recursion); a fold that lost precision
        anyway makes :meth:`readout` raise :class:`TangentPrecisionError`.
        """
        lr = self._check_scalar(lr, "lr")
        mu = self._check_scalar(momentum, "momentum")
        lam, V = self._check_eig(values, vectors)
        if self.G is None:
            if self._t > 0:
                raise RuntimeError("step_momentum after plain steps: the momentum buffer is lost")
            self.G = torch.zeros_like(self.Q)
        if self._structured(basis, coords, lam):
            self.G.mul_(mu)
            basis.rows_expand_add_(
                self.G, self._reduced_h(lam, coords) @ basis.rows_project(self.Q)
            )
        else:
            M = (V.T @ self.Q).mul_(lam[:, None])
            self.G.mul_(mu).addmm_(V, M)
        self.Q.add_(self.G, alpha=-lr)
        self._advance(0.0)

    def reorthonormalize(self) -> None:
        """Fold Q's triangular factor into the accumulated factor now (O(N³)).

        Also measures how much precision the fold had left (O(N²)); a loss is recorded and
        reported by :meth:`readout`. Raises :class:`TangentPrecisionError` if Q overflowed.
        """
        if self._since == 0:
            return
        Qn, Rp = torch.linalg.qr(self.Q)
        log_cond, col, finite = qr_log_cond(Rp)
        if not finite:
            if self._lost is not None:  # the overflow is a consequence: report the cause
                raise TangentPrecisionError(self._lost[0], self._loss_message(*self._lost[1:]))
            raise TangentPrecisionError(self._t, self._overflow_message())
        self._fold_log_cond = max(self._fold_log_cond, log_cond)
        if self._lost is None and log_cond > self._lost_log_cond():
            self._lost = (self._t, col, log_cond)
        if self.G is not None:
            self.G = torch.linalg.solve_triangular(Rp, self.G, upper=True, left=False)
        self.log_diag += torch.log(Rp.diagonal().abs().to(torch.float64))
        self.s, self.B = fold(Rp, self.s, self.B)
        self.Q = Qn
        self._since = 0
        self._growth = 0.0

    # ------------------------------------------------------------------------------ readout
    def readout(
        self, method: str = "auto", window: float = WINDOW, margin: float = MARGIN
    ) -> LyapunovReadout:
        """Finite-time Lyapunov exponents and vectors at the current t; does not change state.

        ``method``: "auto" (the divide-and-conquer readout, redone by the Jacobi SVD with a warning
        if its vectors are not orthonormal to ``DC_ORTH`` or its ln σ fail the determinant
        check; Benettin fallback with a warning if LAPACK fails), "jacobi" (the Jacobi SVD alone:
        the reference, ~10x slower) or "qr_diagonal". ``window``/``margin`` (nats) are exposed
        for tests. Raises :class:`TangentPrecisionError` rather than return a non-finite or
        undetermined exponent: when a fold lost precision (see the module docstring), when Y(t)
        is singular to working precision, or when the SVD's ln σ do not add up to
        ln|det Y| = Σ ln|R_ii|.
        """
        if method not in ("auto", "jacobi", "qr_diagonal"):
            raise ValueError(f"method must be 'auto', 'jacobi' or 'qr_diagonal', got {method!r}")
        if self._t == 0:
            raise RuntimeError("no steps taken yet: exponents ln σ/t are undefined at t = 0")
        if not window > 2 * margin > 0:
            raise ValueError("need window > 2 * margin > 0")
        key = (self._version, method, window, margin)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        if self._lost is not None:
            raise TangentPrecisionError(self._lost[0], self._loss_message(*self._lost[1:]))
        Rq = torch.linalg.qr(self.Q, mode="r")[1]
        log_cond, col, finite = qr_log_cond(Rq)
        if not finite:
            raise TangentPrecisionError(self._t, self._overflow_message())
        if log_cond > self._lost_log_cond():
            raise TangentPrecisionError(self._t, self._loss_message(col, log_cond))
        fold_log_cond = max(self._fold_log_cond, log_cond)
        log_diag = self.log_diag + torch.log(Rq.diagonal().abs().to(torch.float64))
        s, B = fold(Rq, self.s, self.B)
        del Rq
        s = s.cpu().numpy()
        log_diag = log_diag.cpu().numpy()
        singular = np.flatnonzero(~np.isfinite(log_diag))
        if singular.size:
            raise TangentPrecisionError(
                self._t,
                f"Y(t) is singular to working precision (ln|R_ii| of its triangular factor is "
                f"{log_diag[singular[0]]} for i = {singular[0]}): a step was singular, and "
                "exponents of -inf are not read out",
            )
        benettin = np.sort(log_diag)[::-1] / self._t
        finite = s[np.isfinite(s)]
        log_range = float(finite.max() - finite.min()) if finite.size else 0.0
        vectors, windows, loss, solver = None, 0, float("nan"), ""
        exps = benettin.copy()
        used = "qr_diagonal"
        if method != "qr_diagonal":
            Bn = B.to(device="cpu", dtype=torch.float64).numpy()
            del B
            kinds = (*DC_SETTINGS, "jacobi") if method == "auto" else ("jacobi",)
            for kind in kinds:
                try:
                    logsig, vectors, windows, solver = svd_readout(kind, s, Bn, window, margin)
                    loss = orthogonality_loss(vectors)
                    if kind != "jacobi" and not loss <= DC_ORTH:
                        raise np.linalg.LinAlgError(f"vectors orthonormal only to {loss:.1e}")
                    self._check_svd(logsig, log_diag)
                except (np.linalg.LinAlgError, TangentPrecisionError) as err:
                    vectors, windows, loss, solver = None, 0, float("nan"), ""
                    if kind == DC_SETTINGS[-1]:
                        warnings.warn(
                            f"fast readout lost precision ({err}); redone by the Jacobi SVD",
                            stacklevel=2,
                        )
                    if kind != "jacobi":
                        continue
                    if isinstance(err, TangentPrecisionError):
                        raise
                    warnings.warn(
                        f"Jacobi SVD readout failed ({err}); using QR diagonal", stacklevel=2
                    )
                else:
                    exps = logsig / self._t
                    used = "svd" if windows <= 1 else "svd_deflated"
                break
        out = LyapunovReadout(
            exponents=exps,
            vectors=vectors,
            t=self._t,
            method=used,
            benettin=benettin,
            log_range=log_range,
            windows=windows,
            orthogonality_loss=loss,
            log_growth_since_reorth=self._growth,
            fold_log_cond=fold_log_cond,
            solver=solver,
        )
        self._cache = (key, out)
        return out

    def top_singular(
        self, v0: torch.Tensor | None = None, tol: float = TOP_TOL, max_iter: int = TOP_MAX_ITER
    ) -> TopSingular:
        """ln σ1(Y(t)) = ln ‖Y‖₂ by Lanczos on YᵀY, O(N²) a product, from ``v0`` (the previous
        value's vector; a fixed random start if None); no state change
        (:func:`chaosgd.engine.top_singular.factored_top`)."""
        v0 = None if v0 is None else self._check_matrix(v0, "v0", (self.n,))
        out = factored_top(self.Q, self.B, self.s, v0, tol, max_iter, identity=self._t == 0)
        if not math.isfinite(out.log_sigma):
            raise TangentPrecisionError(
                self._t, "Lanczos on YᵀY gave no positive finite σ1² (Q overflowed or Y vanished)"
            )
        return out

    def exponents(self) -> np.ndarray:
        """Finite-time Lyapunov exponents, descending (see :meth:`readout`)."""
        return self.readout().exponents

    def vectors(self) -> np.ndarray:
        """Lyapunov vectors as columns matching :meth:`exponents` (see :meth:`readout`)."""
        v = self.readout().vectors
        if v is None:
            raise RuntimeError("readout fell back to the QR diagonal: no Lyapunov vectors")
        return v

    def matrix(self) -> torch.Tensor:
        """Dense Y(t) = Q diag(e^s) B, only for small N and short horizons.

        It is exactly the product whose float64 range problems the factored form avoids (may
        give inf / 0).
        """
        return self.Q @ (torch.exp(self.s).to(self.dtype)[:, None] * self.B)

    # -------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything needed to continue bit-identically; tensors only (weights_only loading)."""
        sd = {"Q": self.Q.clone(), **self._factor_state()}
        if self.G is not None:
            sd["G"] = self.G.clone()
        return sd

    def load_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` output (moved to this map's device and dtype)."""
        n = self.n
        shapes = {"Q": (n, n), "B": (n, n), "s": (n,), "log_diag": (n,), "G": (n, n)}
        for key in ("Q", "B", "s", "log_diag", "t", "since_reorth", "log_growth"):
            if key not in sd:
                raise ValueError(f"state_dict lacks {key!r}")
        for key, shape in shapes.items():
            if key in sd and tuple(sd[key].shape) != shape:
                raise ValueError(
                    f"state_dict[{key!r}] has shape {tuple(sd[key].shape)}, want {shape}"
                )
        self._load_factor_state(sd)
        kw = dict(dtype=self.dtype, device=self.device)
        self.Q = sd["Q"].to(**kw).clone()
        self.G = sd["G"].to(**kw).clone() if "G" in sd else None

    # ------------------------------------------------------------------------------ helpers
    def _structured(self, basis, coords, lam: torch.Tensor) -> bool:
        """Whether H = S K Sᵀ is applied through the basis: given, and fewer multiply-adds than
        the two r×N×N products (by a factor two: its passes over Q are more, and smaller)."""
        if basis is None or coords is None:
            return False
        d, r = basis.dim, lam.shape[0]
        if basis.n != self.n or tuple(coords.shape) != (d, r):
            raise ValueError(
                f"basis and coords must describe the {self.n}×{r} vectors: basis of "
                f"{basis.n} parameters, dimension {d}; coords {tuple(coords.shape)}"
            )
        return 2 * (2 * basis.apply_cost() + d * d) < 2 * r * self.n

    def _reduced_h(self, lam: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """K = W Λ Wᵀ (d×d) in the map's dtype, for W = ``coords``."""
        w = coords.to(device=self.device, dtype=self.dtype)
        return (w * lam) @ w.T

    def _advance(self, growth: float) -> None:
        self._t += 1
        self._since += 1
        self._growth += growth
        self._version += 1
        if self._since >= self.reorth_every or self._growth >= self.max_log_growth:
            self.reorthonormalize()

    def _linear_growth(self, J: torch.Tensor) -> tuple[float, int]:
        """ln κ₂(J) (inf if singular to working precision) and the power of two p for J.

        2^p J has its singular values centred on 1: their geometric mean, or for a singular J the
        largest one.
        """
        p0 = 0
        hi, lo = torch.linalg.svdvals(J)[[0, -1]].tolist()
        if not math.isfinite(hi):
            # ‖J‖ beyond float range though its entries are not: normalize them first (exact)
            p0 = -math.frexp(float(J.abs().amax()))[1]
            hi, lo = torch.linalg.svdvals(_pow2_scale(J, p0))[[0, -1]].tolist()
        if hi == 0.0:
            return math.inf, 0
        if lo > 0.0:
            return math.log(hi / lo), p0 - round(0.5 * (math.log2(hi) + math.log2(lo)))
        return math.inf, p0 - round(math.log2(hi))

    def _lost_log_cond(self) -> float:
        return math.log(_LOST_REL / torch.finfo(self.dtype).eps)

    def _settings(self) -> str:
        out = f"reorth_every (now {self.reorth_every})"
        if self.G is None:  # momentum steps do not use the growth budget
            out += f" or max_log_growth (now {self.max_log_growth:g})"
        return out

    def _overflow_message(self) -> str:
        return (
            "Q overflowed between re-orthonormalizations, so every direction is lost; "
            f"lower {self._settings()}"
        )

    def _loss_message(self, i: int, log_cond: float) -> str:
        err = torch.finfo(self.dtype).eps * math.exp(min(log_cond, 700.0))
        size = "zero" if math.isinf(log_cond) else f"e^-{log_cond:.1f} of its column's norm"
        return (
            f"re-orthonormalizing Q left diagonal entry {i} of its triangular factor at {size} "
            f"(relative rounding error ~{err:.0e} > {_LOST_REL:g}): Q's condition number grew "
            f"past what {self.dtype} resolves, so the directions from {i} on (the smallest "
            f"exponents) are lost. Lower {self._settings()}. If a single step's Jacobian is "
            "singular to working precision, Y itself is singular: its lowest exponents are -inf "
            "and cannot be read out."
        )

    def _check_svd(self, logsig: np.ndarray, log_diag: np.ndarray) -> None:
        # Σ ln σ_i(R) = ln|det R| = Σ ln|R_ii| holds to rounding (~1e-15 relative in trials) when
        # every σ is resolved; the Jacobi SVD only promises that while the row-normalized factor B
        # is well conditioned. sqrt(ε) leaves ample room for rounding, and catches a lost σ.
        total, want = float(np.sum(logsig)), float(np.sum(log_diag))
        tol = math.sqrt(np.finfo(np.float64).eps) * (logsig.size + float(np.abs(log_diag).sum()))
        if np.isfinite(logsig).all() and abs(total - want) <= tol:
            return
        raise TangentPrecisionError(
            self._t,
            f"the Jacobi SVD of the accumulated factor lost precision: Σ ln σ_i = {total:.6g} "
            f"but ln|det Y| = Σ ln|R_ii| = {want:.6g}. Its rows are too ill-conditioned relative "
            "to each other, as when the map keeps its directions ordered against them (e.g. an "
            "exactly triangular Jacobian acting on Y(0) = I); no setting of TangentMap helps. "
            "The QR-diagonal (Benettin) exponents are still determined: "
            "readout(method='qr_diagonal').",
        )

    @staticmethod
    def _sgd_growth(lr: float, lam: torch.Tensor) -> float:
        # κ(I − ηH) ≤ max(1, max|1−ηλ|) / min(1, min|1−ηλ|): directions outside V keep factor 1.
        if lam.numel() == 0:
            return 0.0
        a = (1.0 - lr * lam.to(torch.float64)).abs()
        hi = max(1.0, float(a.max()))
        lo = min(1.0, float(a.min()))
        return math.inf if lo == 0.0 else math.log(hi / lo)

    def _no_momentum(self, name: str) -> None:
        if self.G is not None:
            raise RuntimeError(f"{name} on a map that has taken momentum steps")

    @staticmethod
    def _check_scalar(x, name: str) -> float:
        try:
            x = float(x)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a real scalar, got {x!r}") from None
        if not math.isfinite(x):
            raise ValueError(f"{name} must be finite, got {x}")
        return x

    def _check_matrix(self, x, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if tuple(x.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)}, want {shape}")
        x = x.to(dtype=self.dtype, device=self.device)
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains non-finite entries")
        return x

    def _check_eig(self, values, vectors) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(values, torch.Tensor) or values.dim() != 1:
            raise ValueError("values must be a 1-D torch.Tensor")
        r = values.shape[0]
        if r > self.n:
            raise ValueError(f"values has {r} entries, more than n = {self.n}")
        V = self._check_matrix(vectors, "vectors", (self.n, r))
        lam = self._check_matrix(values, "values", (r,))
        return lam, V
