"""Top-k Hessian eigenpairs without forming the Hessian: block Lanczos with certificates.

Public entry points: :func:`topk_eigenpairs` (any batched Hessian-vector product) and
:func:`hessian_topk` (the minibatch loss Hessian of ``loss_fn`` at θ); both return an
:class:`chaosgd.engine.eigenpairs.Eigenpairs` with ``method="topk"``.

Why
---
CGD (Sec. 2 of the paper; Theorem 2.2 justifies removing the gradient's components along the
locally chaotic eigendirections) needs the Hessian's eigenpairs at every step, and the paper's
Discussion names the cost of the Hessian at every training step as what keeps its experiments to
small models. :mod:`chaosgd.engine.curvature` is exact but needs the whole nonzero spectrum
(dense, or a sketch as wide as the rank). CGD's ``top_k`` prune sets need only k eigenpairs at
the ends of the spectrum, which a Krylov method finds with a few hundred Hessian-vector products
whatever N is.

What is computed
----------------
``which`` names a set of eigenvalues and a score that orders it, as :func:`chaosgd.engine.cgd.
select_pruned` does for ``top_k``:

* ``"largest"`` / ``"smallest"``: the k algebraically largest (smallest) eigenvalues;
* ``"negative"``: λ < 0, the k most negative; ``"positive"``: λ > 0, the k largest;
* ``"chaotic"`` (needs ``lr`` = η): |1 − ηλ| > 1, i.e. λ < 0 or λ > 2/η (Theorem 2.1), the k
  with the largest (1 − ηλ)², drawn from both ends of the spectrum.

Null eigenvalues (|λ| ≤ ``null_tol`` = ``rtol``·max|λ|, the shared rule of
:func:`chaosgd.engine.eigenpairs.null_tolerance`, max|λ| from both ends) belong to no set and are
never returned; for ``largest`` / ``smallest`` the walk from the end stops at the first null
eigenvalue (a network's null space is far larger than k). A set with fewer than k members gives
all of them. Every set is a run of eigenvalues from one end (from both for ``chaotic``, whose
score is convex in λ), which is what a Krylov method finds first.

Method: thick-restart block Lanczos
-----------------------------------
The basis grows by blocks: one call of ``hvp`` (``vmap`` of forward-over-reverse, see
:func:`chaosgd.engine.curvature.make_hvp`) on the newest b orthonormal vectors; the block
recurrence removes the product's components along the block itself and the rows that couple to
it, and one pass against the whole basis (a second only where the first cancelled much) keeps
it orthogonal to round-off (full reorthogonalisation: no spurious copies of converged
eigenvalues; the projected matrix T = QᵀHQ takes the same coefficients). The residual block's QR
gives every Ritz pair's residual ‖Hx − θx‖ exactly, without another product. When the basis
reaches ``max_basis`` it restarts thick: it keeps half of it, the Ritz vectors nearest the
wanted end(s) (the selected ones, each end's next one and both extremes first), and carries
their couplings to the next block. A residual block that has (numerically) vanished, an
invariant subspace, is continued by random directions orthogonal to the basis. Block Lanczos
rather than LOBPCG: one Krylov space serves both ends at once (``chaotic``, and max|λ| for
``null_tol``), it is optimal among polynomial methods between restarts, and full
reorthogonalisation with exact residuals makes its stopping rule cheap and reliable.

``warm_start`` (e.g. the previous step's ``vectors``) is the first block. What it saves is set
by how far those vectors are from the new eigenvectors, in the iteration's rate: at tol 1e-10,
the paper's CNN after one SGD step of lr 1e-3 on the same batch (warm residuals ~3e-4·max|λ|)
needs 14 block steps instead of 21 for k = 20 (−30% products); the paper's MLP, whose Hessian
range (rank ≈ 250) the basis holds whole after ~12 steps, saves one step. A fresh minibatch of
8 changes the top-20 eigenvectors almost entirely (smallest principal cosine ~1e-3 between
consecutive steps' subspaces) and a warm start then saves nothing.

The iteration stops when (i) every selected Ritz pair has residual ≤ tol/2 (relative to
max|λ|; the final certificate is measured afresh), (ii) at each end, the first Ritz value *not*
selected has residual ≤ tol/2 or ≤ 1e-3 of its distance to the selection's threshold (the
eigenvalue it approximates is then on the unselected side), and (iii) the extreme Ritz value
that sets max|λ| (which scales ``tol`` and ``null_tol``) has residual ≤ 1e-2·max|λ| (its error
is then ~1e-4, residual²/gap) and the one at the other end lies clear of it.

Certificates and the completeness check
---------------------------------------
* *Residual certificate*: one final ``hvp`` call on the returned vectors V; a Rayleigh-Ritz on
  (V, HV) gives the returned values and ``residuals[i]`` = ‖Hvᵢ − λᵢvᵢ‖ from those products, not
  from the iteration. Some eigenvalue lies within ``residuals[i]`` of λᵢ (for symmetric H) and
  within ``residuals[i]``²/gap of the right one; ‖sin Θ‖ of the returned subspace against the
  exact one is ≤ ‖R‖_F / gap (Davis-Kahan). The certificate passes iff every residual is
  ≤ ``tol``·max|λ|.
* *Completeness*: a Lanczos iteration is an inner approximation (its Ritz values lie inside the
  spectrum), so a direction the starting block misses, e.g. a warm start orthogonal to a new
  eigenvector, can hide an eigenvalue beyond those returned. The check runs a short block
  Lanczos on P H P, P = I − VVᵀ the projector onto the complement of the returned vectors, from
  a fresh random block (plus the iteration's first unselected Ritz vectors, which make it
  converge fast) at the relevant end(s), and compares its extreme Ritz value μ with the
  selection's threshold at that end: the least extreme λ whose score reaches the smallest
  returned score (the set's own boundary, e.g. 0 or 2/η, when fewer than k were returned). It
  passes iff no end has μ beyond its threshold by more than ``tol``·max|λ|. A failure is
  certain (Ritz values of P H P lie inside its spectrum: an eigenvalue at least as extreme as μ
  is there) and stops the check at once; a pass runs all ``check_steps`` block steps and is an
  estimate, not a proof: the seeds make μ converge to the next eigenvalue at once, while the
  random block, independent of the iteration, needs the steps' polynomial degree to bring out a
  hidden eigenvalue (one a relative gap γ beyond the rest of P H P's spectrum shows after j
  steps once cosh(2j√γ) outgrows ~√N; a gross miss, e.g. an eigenvector the start block was
  orthogonal to, within a few steps). ``diagnostics["completeness"]`` records μ, its threshold,
  the margin and μ's residual at each end.

Either failure raises :class:`TopKCheckError` (a ``RuntimeError``) naming what failed and by how
much; it carries the result and its diagnostics.

Cost
----
Per block step: one ``hvp`` call on b vectors plus ~4·m·b·N flops of orthogonalisation against
the m ≤ ``max_basis`` basis vectors, and memory for ``max_basis`` N-vectors (220 for k = 20:
0.47 GB at N = 270k in float64). On the paper's models the products dominate (~10-20 ms per
call of 20 vectors on one CPU core, mostly ``vmap`` overhead); for a wide MLP with a batch of 8
(N = 53k-270k) the orthogonalisation does, ~85% of the time. Top-20 of the paper's MLP and CNN
takes 290-470 products in 19-28 calls (0.2-0.6 s on one core); wider MLPs with clustered top
eigenvalues take 1000-2000 (measured: ``python -m chaosgd.tools.bench`` and the tests). Smaller
blocks need fewer products and more calls (b = 8: ~25% fewer on these models), a smaller basis
less memory and orthogonalisation but more steps, and stagnation for a too small one.

Tolerances
----------
``tol`` (residual certificate, stopping rule and completeness margin, all relative to max|λ|)
and ``rtol`` (null rule) default to :func:`chaosgd.engine.eigenpairs.default_rtol`: 1e-10 in
float64, 1e-5 in float32. In float64 the returned eigenvalues are then within 1e-10·max|λ| of
exact ones (the tests ask 1e-8 against the dense eigh of the paper's CNN and MLP and the exact
range-basis eigenpairs of the MLP; they agree to ~1e-14).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from chaosgd.engine.block_lanczos import BlockLanczos, gaussian
from chaosgd.engine.curvature import make_hvp
from chaosgd.engine.eigenpairs import Eigenpairs, LossFn, default_rtol

__all__ = ["WHICH", "TopKCheckError", "topk_eigenpairs", "hessian_topk"]

WHICH = ("largest", "smallest", "negative", "positive", "chaotic")

Hvp = Callable[[Tensor], Tensor]


class TopKCheckError(RuntimeError):
    """A top-k result failed its residual certificate or its completeness check.

    ``diagnostics`` holds the measurements, ``result`` the :class:`Eigenpairs` that failed.
    """

    def __init__(self, message: str, diagnostics: dict, result: Eigenpairs | None = None):
        super().__init__(message)
        self.diagnostics = diagnostics
        self.result = result


@dataclass(frozen=True)
class _Rule:
    """A ``which``: the set's ends, its membership walk, its score and its thresholds."""

    which: str
    lr: float | None

    @property
    def ends(self) -> tuple[str, ...]:
        return {
            "largest": ("top",),
            "positive": ("top",),
            "smallest": ("bottom",),
            "negative": ("bottom",),
            "chaotic": ("bottom", "top"),
        }[self.which]

    def boundary(self, end: str, null_tol: float) -> float:
        """The set's own edge at ``end``: members lie strictly beyond it."""
        if end == "top":
            return max(2.0 / self.lr, null_tol) if self.which == "chaotic" else null_tol
        return -null_tol

    def member(self, lam: float, end: str, null_tol: float) -> bool:
        """Whether the walk from ``end`` continues through ``lam``."""
        if self.which in ("largest", "smallest"):
            return abs(lam) > null_tol
        edge = self.boundary(end, null_tol)
        return lam > edge if end == "top" else lam < edge

    def score(self, lam: float) -> float:
        if self.which == "chaotic":
            return (1.0 - self.lr * lam) ** 2
        return lam if self.which in ("largest", "positive") else -lam

    def level(self, end: str, s: float) -> float:
        """The λ at ``end`` whose score is ``s``."""
        if self.which == "chaotic":
            root = math.sqrt(s)
            return (1.0 + root) / self.lr if end == "top" else (1.0 - root) / self.lr
        return s if end == "top" else -s

    def threshold(self, end: str, full: bool, s_min: float, null_tol: float) -> float:
        """A remaining eigenvalue beyond this λ at ``end`` should have been returned."""
        edge = self.boundary(end, null_tol)
        if not full:
            return edge
        level = self.level(end, s_min)
        if self.which in ("largest", "smallest"):
            return level  # the walk may cross zero where no eigenvalue is null
        return max(level, edge) if end == "top" else min(level, edge)


def _walk(theta: list[float], end: str) -> range:
    n = len(theta)
    return range(n - 1, -1, -1) if end == "top" else range(n)


def _select(theta: list[float], rule: _Rule, k: int, null_tol: float) -> dict:
    """The selection among Ritz values ``theta`` (ascending) and each end's first unselected
    index and threshold."""
    candidates = []
    for end in rule.ends:
        for i in _walk(theta, end):
            if not rule.member(theta[i], end, null_tol):
                break
            candidates.append(i)
    # stable: ties keep the walk's order
    selected = sorted(candidates, key=lambda i: -rule.score(theta[i]))[:k]
    full = len(selected) == k
    s_min = min((rule.score(theta[i]) for i in selected), default=math.inf)
    chosen = set(selected)
    ends = {}
    for end in rule.ends:
        nxt = next((i for i in _walk(theta, end) if i not in chosen), None)
        ends[end] = (nxt, rule.threshold(end, full, s_min, null_tol))
    return {"selected": selected, "ends": ends, "full": full}


def _start_block(warm_start: Tensor | None, b: int, n: int, like: Tensor, generator) -> Tensor:
    rows = [] if warm_start is None else [warm_start.T.to(device=like.device, dtype=like.dtype)]
    have = 0 if warm_start is None else warm_start.shape[1]
    if have < b:
        rows.append(gaussian(b - have, n, like, generator))
    return torch.cat(rows)[:n]


def _keep(theta: list[float], rule: _Rule, sel: dict, count: int) -> list[int]:
    """The Ritz vectors a thick restart keeps: the selected ones, each end's first unselected
    one, the two extremes (max|λ|), then the next ones from the wanted end(s) in turn."""
    m = len(theta)
    first = list(sel["selected"])
    first += [i for i, _ in sel["ends"].values() if i is not None]
    first += [0, m - 1]
    walks = [iter(_walk(theta, end)) for end in rule.ends]
    order = []
    while walks:
        for walk in list(walks):
            i = next(walk, None)
            if i is None:
                walks.remove(walk)
            else:
                order.append(i)
    keep = list(dict.fromkeys(first + order))
    return keep[: max(count, len(dict.fromkeys(first)))]


def _check_completeness(
    hvp: Hvp,
    vectors: Tensor,
    rule: _Rule,
    sel: dict,
    seeds: Tensor,
    scale: float,
    tol: float,
    steps: int,
    width: int,
    generator,
) -> dict:
    """Short block Lanczos on P H P, P = I − VVᵀ, at the rule's end(s) (see the module doc)."""
    n = vectors.shape[1]
    ends = {end: {"threshold": sel["ends"][end][1]} for end in rule.ends}
    if n - vectors.shape[0] <= 0 or steps <= 0:
        for info in ends.values():
            info.update(mu=None, residual=0.0, margin=-math.inf, converged=True)
        return {"passed": True, "ends": ends, "hvp_calls": 0, "hvps": 0, "steps": 0}

    def deflate(x: Tensor) -> Tensor:
        return x - (x @ vectors.T) @ vectors

    def apply(x: Tensor) -> Tensor:
        return deflate(hvp(deflate(x)))

    start = torch.cat([seeds, gaussian(width, n, vectors, generator)])
    capacity = steps * start.shape[0]
    lanczos = BlockLanczos(apply, deflate(start), capacity, generator, drop=1e-3 * tol * scale)
    for step in range(steps):
        lanczos.expand()
        theta, _, res = lanczos.ritz()
        th, rs = theta.tolist(), res.tolist()
        for end, info in ends.items():
            i = len(th) - 1 if end == "top" else 0
            mu = th[i]
            margin = (mu - info["threshold"]) if end == "top" else (info["threshold"] - mu)
            info.update(mu=mu, residual=rs[i] / scale, margin=margin / scale)
            info["converged"] = rs[i] <= tol * scale
        # a violation is certain once seen; a pass needs all the steps: the seeds converge at
        # once, the random part needs the polynomial degree to bring out a hidden eigenvalue
        violated = any(info["margin"] > tol for info in ends.values())
        if violated or lanczos.pending.shape[0] == 0:
            break
    calls, count = lanczos.calls, lanczos.vectors
    passed = all(info["margin"] <= tol for info in ends.values())
    return {"passed": passed, "ends": ends, "hvp_calls": calls, "hvps": count, "steps": step + 1}


def topk_eigenpairs(
    hvp: Hvp,
    theta_or_n: Tensor | int,
    k: int,
    which: str = "largest",
    *,
    lr: float | None = None,
    block_size: int | None = None,
    tol: float | None = None,
    rtol: float | None = None,
    max_iter: int = 300,
    max_basis: int | None = None,
    warm_start: Tensor | None = None,
    check_steps: int = 6,
    check_width: int = 4,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Eigenpairs:
    """The k eigenpairs of a symmetric operator selected by ``which``, certified.

    Args:
        hvp: V (m×N) ↦ V H (m×N), H symmetric (e.g. :func:`chaosgd.engine.curvature.make_hvp`);
            called once per block of vectors.
        theta_or_n: θ (only its length, dtype and device are used) or N (then ``dtype`` and
            ``device``, float64 on the CPU by default, say how to compute).
        k: how many eigenpairs (fewer when the set has fewer than k nonzero members).
        which: ``"largest"``, ``"smallest"``, ``"negative"``, ``"positive"`` or ``"chaotic"``
            (needs ``lr``, the learning rate η); see the module doc.
        block_size: vectors per ``hvp`` call (default max(k, 8), at most N, at least the
            number of ``warm_start`` columns).
        tol: residual certificate ‖Hv − λv‖ ≤ ``tol``·max|λ| and completeness margin
            (default :func:`chaosgd.engine.eigenpairs.default_rtol` of the dtype);
            ``rtol``: the null rule (the same default).
        max_iter: most block steps of the iteration (the certificate's and the check's
            products come on top).
        max_basis: most basis vectors before a thick restart (default k + 10·block, at most
            N; memory: that many N-vectors).
        warm_start: N×m vectors (e.g. the previous step's ``vectors``) as the first block,
            filled up with random vectors to ``block_size``.
        check_steps, check_width: block steps and random vectors of the completeness check
            (``check_steps=0`` skips it; its ``steps`` = 0 then says there is no evidence).
        generator: source of the random vectors (``None``: the global RNG of the device).

    Returns:
        :class:`Eigenpairs` with ascending float64 ``values``, N×r ``vectors``, r ≤ k,
        ``rank`` = r, ``method="topk"``, ``null_tol`` = ``rtol``·max|λ|, and ``diagnostics``:
        ``residuals`` (‖Hvᵢ − λᵢvᵢ‖ per pair, absolute), ``residual_max`` (relative to
        ``scale`` = max|λ|), ``completeness`` (``passed`` and per end μ, ``threshold``,
        ``margin`` relative to max|λ|, ``residual``, ``converged``), ``hvp_calls`` / ``hvps``
        (calls and vectors, certificate and check included), ``iterations``, ``restarts``,
        ``converged``, ``lambda_min`` / ``lambda_max`` (extreme Ritz values), ``seconds``.

    Raises:
        TopKCheckError: the residual certificate or the completeness check failed.
    """
    t0 = time.perf_counter()
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if which == "chaotic":
        if lr is None or not (0 < float(lr) < math.inf):
            raise ValueError(f"which='chaotic' needs a positive finite lr, got {lr!r}")
        lr = float(lr)
    if isinstance(k, bool) or int(k) != k or int(k) < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    if isinstance(theta_or_n, Tensor):
        n = theta_or_n.numel()
        like = theta_or_n.detach().new_zeros(1)
    else:
        n = int(theta_or_n)
        like = torch.zeros(1, dtype=dtype, device=device)
    if n < 1:
        raise ValueError(f"the operator needs at least one dimension, got N = {n}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be positive, got {max_iter!r}")
    tol = default_rtol(like.dtype) if tol is None else float(tol)
    rtol = default_rtol(like.dtype) if rtol is None else float(rtol)
    if not (0 < tol < 1 and 0 < rtol < 1):
        raise ValueError(f"tol and rtol must lie in (0, 1), got {tol!r}, {rtol!r}")
    if warm_start is not None and (warm_start.dim() != 2 or warm_start.shape[0] != n):
        raise ValueError(f"warm_start must be N×m with N = {n}, got {tuple(warm_start.shape)}")
    if block_size is not None and int(block_size) < 1:
        raise ValueError(f"block_size must be positive, got {block_size!r}")
    rule = _Rule(which, lr)
    m0 = 0 if warm_start is None else warm_start.shape[1]
    b = min(n, max(m0, int(block_size) if block_size is not None else max(k, 8)))
    cap = min(n, int(max_basis) if max_basis is not None else k + 10 * b)
    if cap < min(n, k + 2 * b):
        raise ValueError(f"max_basis={cap} must hold at least k + 2·block = {k + 2 * b}")
    # a thick restart keeps half the basis: several block steps per cycle
    keep_count = max(k + 2, cap // 2)

    start = _start_block(warm_start, b, n, like, generator)
    lanczos = BlockLanczos(hvp, start, cap, generator)
    converged, it = False, 0
    for it in range(1, max_iter + 1):
        lanczos.expand()
        theta, y, res = lanczos.ritz()
        th, rs = theta.tolist(), res.tolist()
        scale = max(abs(th[0]), abs(th[-1]))
        # residual directions below round-off of the operator are noise (see expand)
        lanczos.drop = 1e-3 * tol * scale
        sel = _select(th, rule, k, rtol * scale)
        converged = scale == 0.0 or _converged(th, rs, sel, scale, tol)
        if converged or lanczos.pending.shape[0] == 0 or it == max_iter:
            break
        if lanczos.size + lanczos.pending.shape[0] > cap:
            keep = torch.tensor(_keep(th, rule, sel, keep_count), device=theta.device)
            lanczos.restart(theta, y, keep)
    diagnostics = {
        "which": which,
        "lr": lr,
        "block_size": b,
        "max_basis": cap,
        "warm_start": m0,
        "iterations": it,
        "restarts": lanczos.restarts,
        "converged": bool(converged),
        "lambda_min": th[0],
        "lambda_max": th[-1],
    }
    picked = sorted(sel["selected"], key=th.__getitem__)
    boundary = sorted({i for i, _ in sel["ends"].values() if i is not None})
    vectors = lanczos.combine(y[:, torch.tensor(picked, dtype=torch.long, device=y.device)])
    seeds = lanczos.combine(y[:, torch.tensor(boundary, dtype=torch.long, device=y.device)])
    calls, count = lanczos.calls, lanczos.vectors

    # the certificate: the returned vectors' products measured afresh, and a Rayleigh-Ritz
    # on them, so that values and residuals come from these products alone
    values = torch.zeros(0, dtype=torch.float64, device=like.device)
    residuals = values.clone()
    if vectors.shape[0]:
        hv = hvp(vectors)
        calls, count = calls + 1, count + vectors.shape[0]
        gram = (vectors @ hv.T).to(torch.float64)
        values, w = torch.linalg.eigh(0.5 * (gram + gram.T))
        w = w.to(vectors.dtype)
        vectors, hv = w.T @ vectors, w.T @ hv
        residuals = (hv - values.to(hv.dtype)[:, None] * vectors).norm(dim=1).to(torch.float64)
    scale = max(scale, float(values.abs().max()) if values.numel() else 0.0)
    null_tol = rtol * scale
    unit = scale if scale > 0 else 1.0
    residual_max = float(residuals.max()) / unit if residuals.numel() else 0.0
    completeness = _check_completeness(
        hvp, vectors, rule, sel, seeds, unit, tol, check_steps, check_width, generator
    )
    calls, count = calls + completeness["hvp_calls"], count + completeness["hvps"]
    diagnostics.update(
        scale=scale,
        tol=tol,
        residuals=residuals.tolist(),
        residual_max=residual_max,
        completeness=completeness,
        hvp_calls=calls,
        hvps=count,
        seconds=time.perf_counter() - t0,
    )
    result = Eigenpairs(values, vectors.T, int(values.numel()), "topk", null_tol, diagnostics)
    failures = []
    if not residual_max <= tol:
        why = "" if converged else f" (the iteration did not converge in max_iter={max_iter})"
        failures.append(
            f"residual certificate: max ‖Hv − λv‖ = {residual_max:.3g}·max|λ| > tol {tol:.3g}" + why
        )
    for end, info in completeness["ends"].items():
        if not info["margin"] <= tol:
            failures.append(
                f"completeness at the {end} end: the operator deflated of the "
                f"{values.numel()} returned pairs has an eigenvalue at or beyond μ = "
                f"{info['mu']:.6g} (a Ritz value of the check), past the threshold "
                f"{info['threshold']:.6g} by {info['margin']:.3g}·max|λ| > tol {tol:.3g}"
            )
    if failures:
        message = f"top-k {which!r} (k={k}) failed its checks: " + "; ".join(failures)
        raise TopKCheckError(message, diagnostics, result)
    return result


def _converged(th: list[float], rs: list[float], sel: dict, scale: float, tol: float) -> bool:
    """The stopping rule (module doc): selected pairs, each end's first unselected one, and
    the two extremes."""
    if any(rs[i] > 0.5 * tol * scale for i in sel["selected"]):
        return False
    for i, threshold in sel["ends"].values():
        if i is None:
            continue
        if rs[i] > max(0.5 * tol * scale, 1e-3 * abs(th[i] - threshold)):
            return False
    # max|λ| only scales tol and null_tol: the extreme that sets it to 1e-2 (its error is
    # then ~1e-4, residual²/gap), the other one only clear of it
    return all(rs[i] <= max(1e-2 * scale, scale - abs(th[i])) for i in (0, -1))


def hessian_topk(
    loss_fn: LossFn,
    theta: Tensor,
    k: int,
    which: str = "largest",
    *,
    dtype: torch.dtype | None = torch.float64,
    chunk_size: int | None = None,
    **kwargs,
) -> Eigenpairs:
    """:func:`topk_eigenpairs` of the Hessian of ``loss_fn`` (flat θ ↦ scalar) at ``theta``.

    θ is cast to ``dtype`` (``None`` keeps its own); the products are
    :func:`chaosgd.engine.curvature.make_hvp`'s, one vmapped call per block (``chunk_size``
    bounds their memory). Other keyword arguments go to :func:`topk_eigenpairs`.
    """
    if not isinstance(theta, Tensor) or theta.dim() != 1 or theta.numel() == 0:
        raise ValueError("theta must be a non-empty 1-D tensor")
    theta = theta.detach().to(dtype if dtype is not None else theta.dtype)
    return topk_eigenpairs(make_hvp(loss_fn, theta, chunk_size), theta, k, which, **kwargs)
