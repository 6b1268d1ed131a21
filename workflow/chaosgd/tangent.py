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
  B has unit-norm rows. The fold ``R'R`` is done with the scaling in log space, so nothing ever
  overflows or underflows except terms that are below ε relative to their own row.
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
must keep *relative* accuracy. Methods, reported in ``LyapunovReadout.method``:

* ``"svd"``: R's dynamic range fits one float64 window; one SVD of the whole factor.
* ``"svd_deflated"``: the range is wider (long horizons, strong chaos). The top of the spectrum
  comes from the rows within a window of the largest scale; the rest from the exactly deflated
  factor R_{S2} W, where W spans the null space of the large rows S1 (the row scales cancel in
  that null space, so it is computed without loss). Repeated until the remainder fits. Each
  accepted value keeps a margin of ``_MARGIN`` nats from the neglected part (error ~e^{-margin}).
* ``"qr_diagonal"``: only if the SVD fails (or on request): Benettin exponents, no vectors.

The SVD of a window (``LyapunovReadout.solver``):

* ``"jacobi"`` (``readout(method="jacobi")``, the reference): the one-sided Jacobi SVD
  (``dgejsv``), relatively accurate in every singular value, however small, as long as B is well
  conditioned (checked: see above); but level-1 BLAS, ≈ 15 min at the MLP's N = 5350.
* ``"dc"`` (the default): LAPACK's divide-and-conquer SVD (``gesdd``) resolves values only to
  ~ε·σ_max, relatively only within ~15-20 nats of the largest. So the window's factor is first
  preconditioned by two QR factorizations (columns sorted by norm), after which its rows are
  nearly orthogonal wherever their scales differ (cosines fall like e^{-2Δs}: the preconditioning
  of Drmač's Jacobi SVD, ``dgejsv``), and it is read out in sub-windows of rows at most ~20 nats
  deep, one ``gesdd`` each, deflated exactly like the windows above with a margin
  (``_DC_SETTINGS``). A dense bulk of similar exponents costs one ``gesdd``. Values agree with the
  Jacobi SVD to ~1e-13 nats and subspaces to ~1e-10 in the tests. A readout whose vectors come
  out less than orthonormal to ``_DC_ORTH`` (the symptom of a margin too narrow for B's
  conditioning) is redone with wider margins, then by the Jacobi SVD.

While CGD prunes, the tangent map uses the Hessian restricted to the kept eigenvectors: the caller
passes only the kept eigenpairs to :meth:`TangentMap.step_sgd` / :meth:`TangentMap.step_momentum`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from scipy.linalg import lapack

__all__ = ["TangentMap", "LyapunovReadout", "TangentPrecisionError"]

# Width (natural log) of one float64 window of the graded factor: e^-600 ≈ 3e-261 leaves ~108
# nats above the smallest normal number (e^-708) for B's own small entries and LAPACK's scaling.
_WINDOW = 600.0
# Distance (nats) kept between an accepted singular value and anything neglected next to it:
# the relative error from the neglected part is ~ sqrt(N) κ(B) e^-margin.
_MARGIN = 60.0
# A fold whose worst diagonal entry R'_ii may be off by more than this (relative; rounding error
# ≈ ε ‖R'_{:,i}‖ / |R'_ii|) has lost that direction: fewer than three digits of its contribution
# to ln σ are left, and with accumulated step errors on top it can be pure noise. For float64 it
# means ln κ(Q) ≳ 29 nats, far beyond the default budget of 8 (guarded steps never get there);
# for a float32 map ≳ 9 nats, so there the budget should be lowered with the dtype.
_LOST_REL = 1e-3
_LN2 = math.log(2.0)
# Divide-and-conquer readout (see the module docstring): (depth, margin) of the sub-windows, in
# nats, tried in turn. gesdd's error is ~ε·σ_max absolute, i.e. ≲ 1e-9 relative within ``depth``
# of a window's top on the preconditioned factor (trials: values stay exact to ~25 nats, vectors
# to ~1e-10 at 20). ``margin`` is kept between accepted values and rows left out below, and
# between deflated rows and the values accepted after them; on a preconditioned factor with a
# well-conditioned B the coupling across it is ~e^-2·margin on top of the margin itself (trials:
# 6 keeps 1e-10, 3 loses 1e-6 in the vectors). A B with κ ~ 1e9 (a nearly singular step) couples
# more and needs the second, wider setting. A dense bulk wider than depth - 2 margin is solved
# in depth / (depth - 2 margin) overlapping sub-windows.
_DC_SETTINGS = ((20.0, 6.0), (24.0, 10.0))
# Column log-norm range up to which a direct solve is tried first (nearly isometric maps, e.g.
# early in training): by the Gram matrix's eigendecomposition if the values span at most
# _DC_GRAM nats (it loses ≲ κ² ε ≤ e^{2·_DC_GRAM} ε, and costs half a gesdd), else one gesdd.
_DC_DIRECT = 6.0
_DC_GRAM = 4.0
# A fast readout whose vectors are less orthonormal than this is redone by the Jacobi SVD.
_DC_ORTH = 1e-8


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


@dataclass(frozen=True)
class LyapunovReadout:
    """Finite-time Lyapunov spectrum of Y(t) (numpy, float64, CPU).

    exponents: (N,) ln σ_i(Y)/t, descending.
    vectors: (N, N) right singular vectors of Y (columns, matching ``exponents``; the
        eigenvectors of the Lyapunov matrix), or None for ``method == "qr_diagonal"``.
    t: number of steps.
    method: "svd", "svd_deflated" or "qr_diagonal" (see the module docstring).
    benettin: (N,) exponents from the accumulated QR diagonal, sorted descending; they agree
        with ``exponents`` up to O(1/t) and serve as a cross-check.
    log_range: max − min of the factor's log row scales (nats); > ``_WINDOW`` means deflation.
    windows: number of float64 windows (SVDs of the deflation) used (1 for "svd").
    orthogonality_loss: max |VᵀV − I| of the returned vectors (NaN without vectors).
    log_growth_since_reorth: bound on ln κ(Q) accumulated since the last re-orthonormalization.
    fold_log_cond: max over all folds (and this readout's) of ln(‖R'_{:,i}‖ / |R'_ii|), the
        digits (in nats) the worst fold lost: its relative rounding error is ≈ ε e^fold_log_cond.
    solver: the SVD of the windows, "dc" (preconditioned divide and conquer) or "jacobi"; "" for
        ``method == "qr_diagonal"``.
    """

    exponents: np.ndarray
    vectors: np.ndarray | None
    t: int
    method: str
    benettin: np.ndarray
    log_range: float
    windows: int
    orthogonality_loss: float
    log_growth_since_reorth: float
    fold_log_cond: float = 0.0
    solver: str = "jacobi"


def _pow2_scale(x: torch.Tensor, p: int) -> torch.Tensor:
    """x · 2^p, exact while the entries stay normal (2^p itself is formed in range)."""
    if p == 0:
        return x
    if abs(p) < 126:  # 2^p is a normal float32 and float64
        return x * 2.0**p
    h = p // 2
    return x * 2.0**h * 2.0 ** (p - h)


def _qr_log_cond(Rp: torch.Tensor):
    """(max_i ln(‖Rp_{:,i}‖ / |Rp_ii|), its i, Rp all finite) with one host sync.

    Householder QR gets R'_ii to ≈ ε ‖R'_{:,i}‖ absolute, so this is the relative precision the fold
    lost in its worst direction (a lower bound on ln κ(Q); inf for a zero diagonal entry).
    """
    # one pass over Rp (a fold's only O(N²) extra): finite norms imply finite entries
    norms = torch.linalg.vector_norm(Rp, dim=0)
    ok = torch.isfinite(norms).all()
    worst, i, ok = _max_log_ratio(norms, Rp.diagonal().abs(), ok)
    if ok:
        return worst, i, True
    if not bool(torch.isfinite(Rp).all()):
        return worst, i, False
    # entries beyond sqrt(overflow): Q far from unit norm; scale each column by its largest entry
    c = Rp.abs().amax(dim=0)
    norms = torch.linalg.vector_norm(Rp / c, dim=0)
    worst, i, _ = _max_log_ratio(norms, Rp.diagonal().abs() / c, torch.ones(()))
    return worst, i, True


def _max_log_ratio(num: torch.Tensor, den: torch.Tensor, flag: torch.Tensor):
    lr = torch.log(num.to(torch.float64)) - torch.log(den.to(torch.float64))
    lr = torch.nan_to_num(lr, nan=math.inf)  # an all-zero column: nothing of it survived
    worst, i = lr.max(dim=0)
    worst, i, flag = torch.stack([worst, i.to(torch.float64), flag.to(torch.float64)]).tolist()
    return worst, int(i), bool(flag)


def _triu_matmul(E: torch.Tensor, B: torch.Tensor, block: int = 512) -> torch.Tensor:
    """E·B for upper-triangular E and B (N×N) by blocks of the triangular product: block (i, j)
    sums over k in [i, j] only, about 1/6 of a full GEMM's work (measured at N = 5350, one
    thread: 1.7 s against 6.5 s). The terms left out are exact zeros, so the result is exactly
    upper triangular and equal to the full product up to the order of its sums."""
    n = E.shape[0]
    if n <= block:
        return E @ B
    out = torch.zeros_like(B)
    for i in range(0, n, block):
        rows = slice(i, i + block)
        for j in range(i, n, block):
            inner = slice(i, j + block)
            out[rows, j : j + block] = E[rows, inner] @ B[inner, j : j + block]
    return out


def _fold(Rp: torch.Tensor, s: torch.Tensor, B: torch.Tensor):
    """Return (s', B') with diag(e^s') B' = Rp · diag(e^s) B, never forming e^s.

    Row i of the product is Σ_j Rp_ij e^{s_j} B_j. Its largest coefficient sets the new log scale
    m_i, so every coefficient Rp_ij e^{s_j - m_i} lies in [-1, 1]; only terms below ~e^-708 of
    the row's largest one underflow. ``Rp`` is not needed afterwards.
    """
    # log space in float64 even for a float32 map: s reaches thousands of nats.
    E = Rp.abs().to(torch.float64).log_().add_(s[None, :])
    m = E.amax(dim=1)
    # An all-zero row (singular step) has m = -inf; keep it zero rather than NaN.
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    E.sub_(m[:, None]).exp_().copysign_(Rp)
    del Rp
    Bn = _triu_matmul(E.to(B.dtype), B)
    del E
    norms = torch.linalg.vector_norm(Bn, dim=1)
    Bn.div_(norms.clamp_min(torch.finfo(Bn.dtype).tiny)[:, None])
    s_new = m + torch.log(norms.to(torch.float64))
    return s_new, Bn


def _jacobi_svd_tall(At: np.ndarray):
    """ln σ (descending) and left singular vectors of the tall matrix At (rows ≥ cols).

    Called with At = Rᵀ = Bᵀ diag(e^s) (or a row window of R, transposed): R's row grading becomes
    a column grading, the case one-sided Jacobi handles with relative accuracy governed by κ(B).
    joba='C' (0) asks for exactly that (LAPACK's default in scipy, 'A', treats small values as
    noise; 'F' with row pivoting was as accurate in trials but ~1.3-2x slower); jobr='N' keeps
    values below sqrt(underflow) of the top instead of zeroing them; jobu='U', jobv='N'.
    At is a scratch copy and is overwritten.
    """
    sva, u, _v, work, _iwork, info = lapack.dgejsv(
        np.asfortranarray(At), joba=0, jobu=0, jobv=3, jobr=0, jobt=0, jobp=0, overwrite_a=1
    )
    if info != 0:
        raise np.linalg.LinAlgError(f"dgejsv failed (info={info})")
    with np.errstate(divide="ignore"):
        logsig = np.log(sva) + (math.log(work[1]) - math.log(work[0]))
    order = np.argsort(-logsig, kind="stable")
    return logsig[order], u[:, order]


def _log_row_norms(A: np.ndarray) -> np.ndarray:
    """ln ‖A_i‖ of every row, free of under/overflow (entries may be ~e^-700); -inf for zero rows."""
    big = np.abs(A).max(axis=1)
    big = np.where(big > 0.0, big, 1.0)
    with np.errstate(divide="ignore"):
        return np.log(big) + np.log(np.linalg.norm(A / big[:, None], axis=1))


# The divide-and-conquer readout runs its O(N³) steps through torch (MKL) rather than scipy's
# OpenBLAS: torch keeps to the job's thread count (torch.set_num_threads), while OpenBLAS starts
# a thread per core, which on a shared machine thrashes (trials on 2 busy cores: 30x slower).


def _householder(X: np.ndarray):
    """Householder QR of the tall X (rows ≥ columns), kept as LAPACK reflectors for _reflect."""
    return torch.geqrf(torch.from_numpy(X))


def _reflect(qr: torch.Tensor, tau: torch.Tensor, X: np.ndarray, side: str) -> np.ndarray:
    """Q·X (side "L") or X·Q (side "R") with the full orthogonal Q of :func:`_householder`.

    Applied to Xᵀ from the other side, (Xᵀ Qᵀ)ᵀ or (Qᵀ Xᵀ)ᵀ: the transpose of a C-ordered X is
    the column-major matrix LAPACK works on, and the result comes back C-ordered, so the row-wise
    NumPy work that follows does not stride across memory.
    """
    Xt = torch.from_numpy(np.ascontiguousarray(X)).T
    return torch.ormqr(qr, tau, Xt, left=side == "R", transpose=True).T.numpy()


def _gram_svd(A: np.ndarray):
    """ln σ (descending) and right singular vectors of A (rows ≤ columns) from the Gram matrix.

    Accurate only for a well-conditioned A (relative error ~κ(A)² ε); ln σ is NaN where the
    Gram matrix is not positive definite to working precision.
    """
    At = torch.from_numpy(A)
    square = A.shape[0] == A.shape[1]
    lam, W = torch.linalg.eigh(At.T @ At if square else At @ At.T)
    lam, W = lam.flip(0).numpy(), W.flip(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        logsig = 0.5 * np.log(lam)
    if square:
        return logsig, W.numpy()
    return logsig, (At.T @ W).numpy() * np.exp(-logsig)[None, :]


def _gesdd(A: np.ndarray):
    """(U, σ, Vᵀ) of A by LAPACK's divide-and-conquer SVD."""
    try:
        U, sig, Vh = torch.linalg.svd(torch.from_numpy(A), full_matrices=False)
    except RuntimeError as err:  # non-finite entries, no convergence
        raise np.linalg.LinAlgError(str(err)) from None
    return U.numpy(), sig.numpy(), Vh.numpy()


def _dc_window(s: np.ndarray, depth: float, margin: float):
    """Pick the next sub-window of the rows (s sorted descending): (j, k1, floor).

    The window is the top j rows, all within ``depth`` of the top; its values ≥ floor are accepted
    (floor keeps ``margin`` above the first row left out and stays within ``depth``); its top k1
    rows, ≥ margin above floor, are deflated. Of all such windows the one that deflates the largest
    share of its rows: rows kept below k1 are solved again, so a dense block of similar scales is
    solved once, as a whole, rather than cut into overlapping windows.
    """
    n = s.size
    top = s[0]
    j = np.arange(1, n)
    floor = np.maximum(s[j] + margin, top - depth)
    k1 = np.minimum(n - np.searchsorted(s[::-1], floor + margin, side="left"), j)
    ok = (s[j - 1] >= top - depth) & (k1 >= 1)
    if not ok.any():  # only with depth < 2 margin
        raise np.linalg.LinAlgError("no sub-window deflates a row")
    share = np.where(ok, k1 / j, -1.0)
    best = np.flatnonzero(share >= share.max() - 1e-12)
    i = best[np.argmax(k1[best])]
    return int(j[i]), int(k1[i]), float(floor[i])


def _dc_windows(s: np.ndarray, B: np.ndarray, depth: float, margin: float):
    """ln σ (descending) and right singular vectors of diag(e^s) B, one gesdd per sub-window.

    B has unit rows and at most as many rows as columns; the rows of a preconditioned factor are
    nearly orthogonal across scales, so each sub-window (see :func:`_dc_window`) is resolved by
    one gesdd within ``depth`` nats and deflated exactly, as in :func:`_graded_svd`.
    """
    levels = []
    while True:
        order = np.argsort(-s, kind="stable")
        s = s[order]
        top = s[0]
        if top - s[-1] <= depth:
            _, sig, vt = _gesdd(np.exp(s - top)[:, None] * B[order])
            with np.errstate(divide="ignore"):
                logsig = np.log(sig) + top
            levels.append((logsig, vt.T, None))
            break
        j, k1, floor = _dc_window(s, depth, margin)
        _, sig, vt = _gesdd(np.exp(s[:j] - top)[:, None] * B[order[:j]])
        with np.errstate(divide="ignore"):
            logsig = np.log(sig) + top
        k_acc = int(np.sum(logsig >= floor))
        if k1 > k_acc:
            raise np.linalg.LinAlgError("graded factor too ill-conditioned to deflate")
        # the null space of the deflated rows, as in _graded_svd
        qr, tau = _householder(B[order[:k1]].T)
        B2 = _reflect(qr, tau, B[order[k1:]], "R")[:, k1:]
        ln = _log_row_norms(B2)
        if not np.isfinite(ln).all():
            raise np.linalg.LinAlgError("a row lies in the span of the deflated ones")
        B2 *= np.exp(-ln)[:, None]
        levels.append((logsig[:k_acc], vt[:k_acc].T, (qr, tau, k1, k_acc - k1)))
        s, B = s[k1:] + ln, B2
    logsig, V = levels[-1][:2]
    for logsig_top, V_top, (qr, tau, k1, skip) in reversed(levels[:-1]):
        deep = np.zeros((qr.shape[0], V.shape[1] - skip))
        deep[k1:] = V[:, skip:]
        V = np.concatenate([V_top, _reflect(qr, tau, deep, "L")], axis=1)
        logsig = np.concatenate([logsig_top, logsig[skip:]])
    return logsig, V


def _dc_svd_tall(At: np.ndarray, depth: float, margin: float):
    """ln σ (descending) and left singular vectors of the tall At, as :func:`_jacobi_svd_tall`.

    At = Rᵀ is column-graded. Sorted by column norm, At Π = Q1 R1 and R1ᵀ = Q2 R2 (Householder QR
    is column-wise backward stable, so the grading survives), and the left singular vectors of At
    are Q1 times the right singular vectors of R2, whose rows are nearly orthogonal across scales;
    those come from :func:`_dc_windows` (sub-windows ``depth`` deep, ``margin`` apart). A nearly
    isometric At (column norms within ``_DC_DIRECT``) is tried directly first (see there). At is
    left intact.
    """
    n, k = At.shape
    lognorm = _log_row_norms(At.T)
    if not np.isfinite(lognorm).all():
        raise np.linalg.LinAlgError("zero column")
    if lognorm.max() - lognorm.min() <= _DC_DIRECT:
        logsig, u = _gram_svd(np.ascontiguousarray(At.T))
        if logsig[0] - logsig[-1] <= _DC_GRAM:  # False for NaN
            return logsig, u
        u, sig, _ = _gesdd(At)
        with np.errstate(divide="ignore"):
            logsig = np.log(sig)
        if logsig[0] - logsig[-1] <= depth:
            return logsig, u
    qr1, tau1 = _householder(At[:, np.argsort(-lognorm, kind="stable")])
    R2 = torch.linalg.qr(qr1[:k].triu().T, mode="r")[1].numpy()
    s2 = _log_row_norms(R2)
    if not np.isfinite(s2).all():
        raise np.linalg.LinAlgError("singular factor")
    R2 *= np.exp(-s2)[:, None]
    logsig, V2 = _dc_windows(s2, R2, depth, margin)
    order = np.argsort(-logsig, kind="stable")
    U = np.zeros((n, k))
    U[:k] = V2[:, order]
    return logsig[order], _reflect(qr1, tau1, U, "L")


def _graded_svd(
    s: np.ndarray, B: np.ndarray, window: float, margin: float, solver=_jacobi_svd_tall
):
    """ln σ_i (descending), right singular vectors and #SVDs of R = diag(e^s) B (square).

    ``solver`` reads out one window (:func:`_jacobi_svd_tall` or :func:`_dc_svd_tall`).
    """
    n = B.shape[0]
    finite = np.isfinite(s)
    if not finite.any():  # Y = 0: nothing to resolve
        return np.full(n, -np.inf), np.eye(n), 0
    smax = s[finite].max()
    if smax - s[finite].min() <= window:
        logsig, V = solver((np.exp(s - smax)[:, None] * B).T)
        return logsig + smax, V, 1

    # Top of the spectrum: rows within the window; dropping the rest perturbs R by at most
    # sqrt(n) e^{smax-window}, negligible for values ≥ e^{smax-window+margin}.
    top = s >= smax - window
    logsig_top, V_top = solver((np.exp(s[top] - smax)[:, None] * B[top]).T)
    logsig_top += smax
    k_acc = int(np.sum(logsig_top >= smax - window + margin))

    # Rest: W spans the null space of the large rows S1; R W = [0; R_S2 W] exactly, and
    # R^-1 = W (R_S2 W)^-1 E2ᵀ + O(e^-min s_S1), so the values ≤ e^{min s_S1 - margin} and their
    # vectors are those of R_S2 W, mapped back through W.
    big = s >= smax - window + 2 * margin
    k1 = int(big.sum())
    if k1 > k_acc:
        raise np.linalg.LinAlgError("graded factor too ill-conditioned to deflate")
    if solver is _jacobi_svd_tall:  # the reference, as it always was: W explicit
        Qf, _ = scipy.linalg.qr(B[big].T, mode="full")
        W = Qf[:, k1:]
        del Qf
        B2 = B[~big] @ W
    else:  # W as Householder reflectors: O(N² k1) instead of O(N³)
        qr, tau = _householder(B[big].T)
        B2 = np.ascontiguousarray(_reflect(qr, tau, B[~big], "R")[:, k1:])
    norms = np.linalg.norm(B2, axis=1)
    B2 /= np.maximum(norms, np.finfo(float).tiny)[:, None]
    with np.errstate(divide="ignore"):
        s2 = s[~big] + np.log(norms)
    logsig2, V2, w2 = _graded_svd(s2, B2, window, margin, solver)
    skip = k_acc - k1
    logsig = np.concatenate([logsig_top[:k_acc], logsig2[skip:]])
    if solver is _jacobi_svd_tall:
        deep = W @ V2[:, skip:]
    else:
        deep = np.zeros((n, n - k_acc))
        deep[k1:] = V2[:, skip:]
        deep = _reflect(qr, tau, deep, "L")
    V = np.concatenate([V_top[:, :k_acc], deep], axis=1)
    return logsig, V, 1 + w2


def _svd_readout(kind, s: np.ndarray, B: np.ndarray, window: float, margin: float):
    """(ln σ, V, #windows, solver) of diag(e^s) B by the Jacobi readout (``kind`` "jacobi") or
    the divide-and-conquer one (``kind`` a (depth, margin) setting of its sub-windows).

    The latter reads out each window by :func:`_dc_svd_tall`; a window it cannot deflate (a factor
    too ill-conditioned for its margins) is read out by the Jacobi SVD instead ("dc+jacobi").
    """
    if kind == "jacobi":
        return (*_graded_svd(s, B, window, margin), "jacobi")
    fell_back = []

    def solver(At):
        try:
            return _dc_svd_tall(At, *kind)
        except np.linalg.LinAlgError as err:
            fell_back.append(err)
            return _jacobi_svd_tall(At)

    logsig, V, windows = _graded_svd(s, B, window, margin, solver)
    return logsig, V, windows, "dc+jacobi" if fell_back else "dc"


def _orthogonality_loss(V: np.ndarray) -> float:
    """max |VᵀV − I| (through torch, on the job's threads)."""
    Vt = torch.from_numpy(V)
    gram = Vt.T @ Vt
    gram.diagonal().sub_(1.0)
    return float(gram.abs().max())


class TangentMap:
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

        With ``basis`` (a :class:`chaosgd.curvature.BlockBasis` S) and ``coords`` (d×r, V = S·coords,
        as the Rayleigh-Ritz paths return them) the update is applied as S K Sᵀ Q with
        K = coords Λ coordsᵀ (d×d) whenever that costs less: for the MLP's range basis
        (d ≈ 390, its first layer held by the span of 8 inputs) about a tenth of the two r×N×N
        products.
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
        log_cond, col, finite = _qr_log_cond(Rp)
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
        self.s, self.B = _fold(Rp, self.s, self.B)
        self.Q = Qn
        self._since = 0
        self._growth = 0.0

    # ------------------------------------------------------------------------------ readout
    def readout(
        self, method: str = "auto", window: float = _WINDOW, margin: float = _MARGIN
    ) -> LyapunovReadout:
        """Finite-time Lyapunov exponents and vectors at the current t; does not change state.

        ``method``: "auto" (the divide-and-conquer readout, redone by the Jacobi SVD with a warning
        if its vectors are not orthonormal to ``_DC_ORTH`` or its ln σ fail the determinant
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
        log_cond, col, finite = _qr_log_cond(Rq)
        if not finite:
            raise TangentPrecisionError(self._t, self._overflow_message())
        if log_cond > self._lost_log_cond():
            raise TangentPrecisionError(self._t, self._loss_message(col, log_cond))
        fold_log_cond = max(self._fold_log_cond, log_cond)
        log_diag = self.log_diag + torch.log(Rq.diagonal().abs().to(torch.float64))
        s, B = _fold(Rq, self.s, self.B)
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
            kinds = (*_DC_SETTINGS, "jacobi") if method == "auto" else ("jacobi",)
            for kind in kinds:
                try:
                    logsig, vectors, windows, solver = _svd_readout(kind, s, Bn, window, margin)
                    loss = _orthogonality_loss(vectors)
                    if kind != "jacobi" and not loss <= _DC_ORTH:
                        raise np.linalg.LinAlgError(f"vectors orthonormal only to {loss:.1e}")
                    self._check_svd(logsig, log_diag)
                except (np.linalg.LinAlgError, TangentPrecisionError) as err:
                    vectors, windows, loss, solver = None, 0, float("nan"), ""
                    if kind == _DC_SETTINGS[-1]:
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
        sd = {
            "Q": self.Q.clone(),
            "B": self.B.clone(),
            "s": self.s.clone(),
            "log_diag": self.log_diag.clone(),
            "t": torch.tensor(self._t, dtype=torch.int64),
            "since_reorth": torch.tensor(self._since, dtype=torch.int64),
            "log_growth": torch.tensor(self._growth, dtype=torch.float64),
            "reorth_every": torch.tensor(self.reorth_every, dtype=torch.int64),
            "max_log_growth": torch.tensor(self.max_log_growth, dtype=torch.float64),
            "lost": torch.tensor(self._lost or (-1, 0, 0.0), dtype=torch.float64),
            "fold_log_cond": torch.tensor(self._fold_log_cond, dtype=torch.float64),
        }
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
        kw = dict(dtype=self.dtype, device=self.device)
        self.Q = sd["Q"].to(**kw).clone()
        self.B = sd["B"].to(**kw).clone()
        if not torch.equal(self.B, self.B.triu()):
            # the folds multiply triangular factors as such (and the readout assumes one)
            raise ValueError("state_dict['B'] is not upper triangular")
        self.s = sd["s"].to(dtype=torch.float64, device=self.device).clone()
        self.log_diag = sd["log_diag"].to(dtype=torch.float64, device=self.device).clone()
        self.G = sd["G"].to(**kw).clone() if "G" in sd else None
        self._t = int(sd["t"])
        self._since = int(sd["since_reorth"])
        self._growth = float(sd["log_growth"])
        if "reorth_every" in sd:
            self.reorth_every = int(sd["reorth_every"])
        if "max_log_growth" in sd:
            self.max_log_growth = float(sd["max_log_growth"])
        # checkpoints from before the precision checks carry no record: nothing known lost
        self._lost = None
        if "lost" in sd and int(sd["lost"][0]) >= 0:
            t, i, value = sd["lost"].tolist()
            self._lost = (int(t), int(i), float(value))
        self._fold_log_cond = float(sd["fold_log_cond"]) if "fold_log_cond" in sd else 0.0
        self._version += 1
        self._cache = None

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
