"""The row-graded factor R = diag(eˢ)·B of a tangent map: folding into it, and its singular
value decomposition with relative accuracy (the readout of Lyapunov exponents and vectors).

:class:`chaosgd.engine.tangent_map.TangentMap` holds Y = Q·R with R upper triangular. R's rows
scale like exp(λ_i t), so R is held as ``diag(exp(s)) · B``: ``s`` are per-row log scales
(float64) and B has unit-norm rows. :func:`fold` multiplies a re-orthonormalization's triangular
factor R' into it with the scaling in log space, so nothing ever overflows or underflows except
terms that are below ε relative to their own row; :func:`qr_log_cond` measures how much precision
R' had left.

Readout (:func:`svd_readout`; O(N³), only at checkpoints; on CPU through LAPACK). R is
row-graded: its singular values span hundreds of nats, and every one of them must keep *relative*
accuracy. Methods, reported in ``LyapunovReadout.method``:

* ``"svd"``: R's dynamic range fits one float64 window; one SVD of the whole factor.
* ``"svd_deflated"``: the range is wider (long horizons, strong chaos). The top of the spectrum
  comes from the rows within a window of the largest scale; the rest from the exactly deflated
  factor R_{S2} W, where W spans the null space of the large rows S1 (the row scales cancel in
  that null space, so it is computed without loss). Repeated until the remainder fits. Each
  accepted value keeps a margin of ``MARGIN`` nats from the neglected part (error ~e^{-margin}).
* ``"qr_diagonal"``: only if the SVD fails (or on request): Benettin exponents, no vectors.

The SVD of a window (``LyapunovReadout.solver``):

* ``"jacobi"`` (``readout(method="jacobi")``, the reference): the one-sided Jacobi SVD
  (``dgejsv``), relatively accurate in every singular value, however small, as long as B is well
  conditioned (checked by :meth:`chaosgd.engine.tangent_map.TangentMap.readout`: Σ ln σ_i must
  equal ln|det Y|); but level-1 BLAS, ≈ 15 min at the MLP's N = 5350.
* ``"dc"`` (the default): LAPACK's divide-and-conquer SVD (``gesdd``) resolves values only to
  ~ε·σ_max, relatively only within ~15-20 nats of the largest. So the window's factor is first
  preconditioned by two QR factorizations (columns sorted by norm), after which its rows are
  nearly orthogonal wherever their scales differ (cosines fall like e^{-2Δs}: the preconditioning
  of Drmač's Jacobi SVD, ``dgejsv``), and it is read out in sub-windows of rows at most ~20 nats
  deep, one ``gesdd`` each, deflated exactly like the windows above with a margin
  (``DC_SETTINGS``). A dense bulk of similar exponents costs one ``gesdd``. Values agree with the
  Jacobi SVD to ~1e-13 nats and subspaces to ~1e-10 in the tests. A readout whose vectors come
  out less than orthonormal to ``DC_ORTH`` (the symptom of a margin too narrow for B's
  conditioning) is redone with wider margins, then by the Jacobi SVD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from scipy.linalg import lapack

__all__ = [
    "LyapunovReadout",
    "WINDOW",
    "MARGIN",
    "DC_SETTINGS",
    "DC_ORTH",
    "fold",
    "qr_log_cond",
    "svd_readout",
    "orthogonality_loss",
]

# Width (natural log) of one float64 window of the graded factor: e^-600 ≈ 3e-261 leaves ~108
# nats above the smallest normal number (e^-708) for B's own small entries and LAPACK's scaling.
WINDOW = 600.0
# Distance (nats) kept between an accepted singular value and anything neglected next to it:
# the relative error from the neglected part is ~ sqrt(N) κ(B) e^-margin.
MARGIN = 60.0
# Divide-and-conquer readout (see the module docstring): (depth, margin) of the sub-windows, in
# nats, tried in turn. gesdd's error is ~ε·σ_max absolute, i.e. ≲ 1e-9 relative within ``depth``
# of a window's top on the preconditioned factor (trials: values stay exact to ~25 nats, vectors
# to ~1e-10 at 20). ``margin`` is kept between accepted values and rows left out below, and
# between deflated rows and the values accepted after them; on a preconditioned factor with a
# well-conditioned B the coupling across it is ~e^-2·margin on top of the margin itself (trials:
# 6 keeps 1e-10, 3 loses 1e-6 in the vectors). A B with κ ~ 1e9 (a nearly singular step) couples
# more and needs the second, wider setting. A dense bulk wider than depth - 2 margin is solved
# in depth / (depth - 2 margin) overlapping sub-windows.
DC_SETTINGS = ((20.0, 6.0), (24.0, 10.0))
# Column log-norm range up to which a direct solve is tried first (nearly isometric maps, e.g.
# early in training): by the Gram matrix's eigendecomposition if the values span at most
# _DC_GRAM nats (it loses ≲ κ² ε ≤ e^{2·_DC_GRAM} ε, and costs half a gesdd), else one gesdd.
_DC_DIRECT = 6.0
_DC_GRAM = 4.0
# A fast readout whose vectors are less orthonormal than this is redone by the Jacobi SVD.
DC_ORTH = 1e-8


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
    log_range: max − min of the factor's log row scales (nats); > ``WINDOW`` means deflation.
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


def qr_log_cond(Rp: torch.Tensor):
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


def fold(Rp: torch.Tensor, s: torch.Tensor, B: torch.Tensor):
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


def svd_readout(kind, s: np.ndarray, B: np.ndarray, window: float, margin: float):
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


def orthogonality_loss(V: np.ndarray) -> float:
    """max |VᵀV − I| (through torch, on the job's threads)."""
    Vt = torch.from_numpy(V)
    gram = Vt.T @ Vt
    gram.diagonal().sub_(1.0)
    return float(gram.abs().max())
