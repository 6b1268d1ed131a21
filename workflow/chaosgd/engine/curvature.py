"""Eigenpairs of the minibatch loss Hessian: dense reference, exact matrix-free low-rank method.

Public entry point: :func:`hessian_eigenpairs` (``method="auto" | "dense" | "lowrank"``), which
returns an :class:`chaosgd.engine.eigenpairs.Eigenpairs`.

Why a low-rank method is exact here
-----------------------------------
The minibatch Hessian of the paper's MLP (batch 8) has rank ≈ 190-270 out of N = 5350, and
the gradient lies in its range. Eigenpairs with a zero eigenvalue contribute nothing to any CGD
projection, to the spectrum counts or to the tangent map, so the range of H and the eigenpairs
restricted to it are all that is needed. They are found without forming H:

1. *Sketch*: Y = H Ω for a Gaussian N×k test matrix Ω (batched Hessian-vector products:
   ``torch.func.vmap`` of forward-over-reverse). range(Y) ⊆ range(H), with equality (with
   probability one) as soon as k > rank(H).
2. *Certify the range*: Householder QR of Y; the sketch grows (by fresh columns: +50% just
   above a ``sketch_hint``, doubling otherwise) until the diagonal of R shows at least
   ``min_null`` numerically-null directions (|R_jj| ≤ ``rtol``·max|R_jj|): the sketch is rank
   deficient, so no direction of the range can be missing.
3. *Rayleigh-Ritz* on the full orthonormal basis Q (k columns, the null ones included):
   B = Qᵀ(HQ), B = W Θ Wᵀ, eigenvectors Q W. Ritz values ≤ ``null_tol`` are the null space;
   at least ``min_null`` of them must remain (else: grow and redo).
4. *Acceptance checks* from Hessian-vector products independent of the sketch: the invariance
   residual ‖HQ − QB‖_F / max|λ|, and random unit probes p ⟂ range(Q) with ‖Hp‖ / max|λ| (a
   direction missed by the sketch would show up there). Both measure ~1e-14 (round-off) on the
   paper's models and must stay below ``rtol``.

``method="auto"`` uses the low-rank method while the sketch stays below
``max_rank_fraction``·N (beyond it, dense is cheaper), and falls back to dense whenever a check
fails; ``diagnostics["fallback"]`` says why. Given a model's structure it does better:

* the MLP's *range basis* (:class:`chaosgd.engine.eigenpairs.BlockBasis`): Rayleigh-Ritz on
  d ≈ 390 known directions, no sketch (the first layer's rows move only within the span of the
  batch's inputs);
* a sequential model's *layers* (:class:`chaosgd.engine.eigenpairs.LayerBlocks`, the CNN, whose
  rank is ≈ N/2): the dense Hessian formed layer by layer, each layer's columns from the loss of
  the layers from it on (a ReLU network's largest layer from its Gauss-Newton part), then a
  Rayleigh-Ritz on the direct sum of the layers' row ranges (each from a small sketch of the
  explicit matrix), checked like the low-rank result, instead of the N×N eigh.

Null tolerance (shared by both methods)
---------------------------------------
An eigenvalue counts as zero iff |λ| ≤ ``null_tol`` = ``rtol``·max|λ|
(:func:`chaosgd.engine.eigenpairs.null_tolerance`, where the rule and its measurements are
described), so dense and low-rank classify the same eigenpairs. The acceptance checks use the
same tolerance: whatever the low-rank result could misrepresent is below what the rule calls zero.

Performance notes
-----------------
For the MLP (batch 8) the range basis costs one ~390×390 reduced Hessian and eigh: ~0.03 s on one
CPU core against ~40-70 s for the dense Hessian's eigh (the generic sketch: ~0.1-0.2 s). For the
CNN (N = 1158, rank ≈ 600) the layers cut the dense path's 1158 Hessian-vector products through
the whole network and its 1158×1158 eigh to 574 mostly short ones and a ~600×600 eigh: ~4×
(``python -m chaosgd.tools.bench curvature``). On a shared CPU, multi-threaded LAPACK calls with
OpenMP's default spin-waiting slow down by up to 10× under contention: run such jobs
single-threaded or with ``OMP_WAIT_POLICY=PASSIVE``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import torch
from torch import Tensor
from torch.func import grad, jvp, vmap

from chaosgd.engine.eigenpairs import (
    BlockBasis,
    Eigenpairs,
    LayerBlocks,
    LossFn,
    default_rtol,
    null_tolerance,
)
from chaosgd.planning.vocab import CURVATURE_METHODS

__all__ = ["LowRankCheckError", "make_hvp", "dense_hessian", "hessian_eigenpairs"]

# the whole nonzero spectrum; "topk" (k pairs of one prune set) is chaosgd.engine.topk_curvature's
METHODS = tuple(m for m in CURVATURE_METHODS if m != "topk")


class LowRankCheckError(RuntimeError):
    """``method="lowrank"`` could not certify its result (``auto`` falls back to dense instead)."""

    def __init__(self, message: str, diagnostics: dict):
        super().__init__(message)
        self.diagnostics = diagnostics


def make_hvp(
    loss_fn: LossFn, theta: Tensor, chunk_size: int | None = None
) -> Callable[[Tensor], Tensor]:
    """Batched Hessian-vector products at ``theta``: V (m×N) ↦ V H (m×N, H symmetric).

    ``torch.func.vmap`` over forward-over-reverse ``jvp(grad(loss_fn))``: the primal forward and
    backward are shared by the batch, only the tangents are batched.
    """
    g = grad(loss_fn)

    def one(v: Tensor) -> Tensor:
        return jvp(g, (theta,), (v,))[1]

    return vmap(one, chunk_size=chunk_size)


def dense_hessian(loss_fn: LossFn, theta: Tensor, chunk_size: int | None = 512) -> Tensor:
    """The exact N×N Hessian (torch.func, Hessian-vector products with the identity's rows)."""
    n = theta.numel()
    eye = torch.eye(n, dtype=theta.dtype, device=theta.device)
    return make_hvp(loss_fn, theta, chunk_size=chunk_size)(eye)


def _check_theta(theta: Tensor, dtype: torch.dtype) -> Tensor:
    if not isinstance(theta, Tensor) or theta.dim() != 1 or theta.numel() == 0:
        raise ValueError("theta must be a non-empty 1-D tensor")
    theta = theta.detach().to(dtype)
    if not bool(torch.isfinite(theta).all()):
        raise ValueError("theta has non-finite entries")
    return theta


def _gaussian(rows: int, n: int, theta: Tensor, generator: torch.Generator | None) -> Tensor:
    # float32 draws cast up: ~5× faster than float64 draws, and any continuous distribution
    # gives a sketch of full rank min(k, rank H) with probability one
    device = generator.device if generator is not None else theta.device
    omega = torch.randn(rows, n, generator=generator, device=device, dtype=torch.float32)
    return omega.to(device=theta.device, dtype=theta.dtype)


def _dense_by_layers(
    loss_fn: LossFn, theta: Tensor, layers: LayerBlocks, chunk_size: int | None, check: int
) -> tuple[Tensor | None, int]:
    """The dense Hessian formed layer by layer (:class:`LayerBlocks`) and the number of
    Hessian-vector products it took; ``None`` when ``check`` random products of ``loss_fn``
    disagree with it (the layers or the Gauss-Newton premise do not describe this model)."""
    n = theta.numel()
    if layers.bounds[-1] != n:
        raise ValueError(f"the layer blocks cover {layers.bounds[-1]} parameters, theta has {n}")
    h = torch.empty(n, n, dtype=theta.dtype, device=theta.device)
    hvps = 0
    for b, (lo, hi) in enumerate(zip(layers.bounds, layers.bounds[1:])):
        if b == layers.linear:
            h[lo:hi, lo:hi] = layers.gauss_newton(theta).to(h.dtype)
            continue
        first = b if layers.linear is None else min(b, layers.linear)
        start = layers.bounds[first]
        tail = theta[start:]
        tangents = torch.zeros(hi - lo, n - start, dtype=theta.dtype, device=theta.device)
        tangents[:, lo - start : hi - start] = torch.eye(hi - lo, dtype=theta.dtype)
        rows = make_hvp(layers.tail_loss(theta, first), tail, chunk_size)(tangents)
        h[lo:hi, start:] = rows
        h[start:, lo:hi] = rows.T
        hvps += hi - lo
    # a fixed stream: the check must not draw from (and so change) the global random state
    gen = torch.Generator(device=theta.device).manual_seed(0)
    probes = _gaussian(check, n, theta, gen)
    hp = make_hvp(loss_fn, theta)(probes)
    scale = float(h.abs().max()) or 1.0
    if not float((hp - probes @ h).abs().max()) <= 1e-12 * scale * max(1.0, math.sqrt(n)):
        return None, hvps + check
    return h, hvps + check


def _layer_range_basis(
    h: Tensor, bounds: tuple[int, ...], rtol: float, generator, min_null: int
) -> BlockBasis:
    """A :class:`BlockBasis` of the layers' row ranges of the explicit Hessian ``h``: for each
    layer a sketch H_l Ω (growing until it shows ``min_null`` null directions) and its left
    singular vectors above round-off; a layer whose sketch never becomes rank deficient keeps
    all its coordinates. SᵀHS comes from ``h`` block by block."""
    n = h.shape[0]
    # keep directions down to 1e-3 of the null rule (or round-off): genuine eigenvalues just
    # above ``null_tol`` must not be cut; the Rayleigh-Ritz step sorts the rest out
    eps = torch.finfo(h.dtype).eps
    cut = max(1e-3 * rtol, 30 * eps)
    blocks = []
    for lo, hi in zip(bounds, bounds[1:]):
        size, k = hi - lo, min(hi - lo, 64)
        y = h.new_empty(size, 0)
        while True:
            y = torch.cat([y, h[lo:hi] @ _gaussian(k - y.shape[1], n, h, generator).T], dim=1)
            u, sv, _ = torch.linalg.svd(y, full_matrices=False)
            smax = float(sv[0]) if sv.numel() else 0.0
            kept = int((sv > cut * smax).sum()) if smax > 0 else 0
            if kept <= k - min_null:
                if kept:
                    blocks.append((lo, 1, size, u[:, :kept]))
                break
            if k >= size:
                blocks.append((lo, 1, size, None))
                break
            k = min(size, 2 * k)
    plain = BlockBasis(n, tuple(blocks))
    return BlockBasis(n, plain.blocks, lambda theta: plain.project(plain.project(h).T))


def _dense(
    loss_fn: LossFn,
    theta: Tensor,
    rtol: float,
    chunk_size: int | None,
    layers: LayerBlocks | None = None,
    restrict: dict | None = None,
) -> Eigenpairs:
    """The exact dense Hessian (by layers when ``layers`` is given, checked) and its eigenpairs:
    all N from one eigh, or with ``restrict`` (the acceptance-check settings) and ``layers``
    only the nonzero ones, by Rayleigh-Ritz on the layers' row ranges; a failed check there
    falls back to the full eigh of the same matrix (``diagnostics["decomposed"]`` says why)."""
    t0 = time.perf_counter()
    h, hvps, formed = None, 0, "full"
    if layers is not None:
        h, hvps = _dense_by_layers(loss_fn, theta, layers, chunk_size, check=2)
        formed = "by layers" if h is not None else "full (the layer-block check failed)"
    if h is None:
        h = dense_hessian(loss_fn, theta, chunk_size=chunk_size)
        hvps += theta.numel()
    if not bool(torch.isfinite(h).all()):
        raise ValueError("loss_fn has non-finite Hessian values at theta")
    scale = float(h.abs().max())
    asym = float((h - h.T).abs().max()) / scale if scale > 0 else 0.0
    h = 0.5 * (h + h.T)
    diagnostics = {"asymmetry": asym, "hvps": hvps, "formed": formed, "decomposed": "full"}
    if restrict is not None and layers is not None:
        try:
            basis = _layer_range_basis(
                h, layers.bounds, rtol, restrict["generator"], restrict["min_null"]
            )
            if basis.dim == 0:  # H = 0: every direction is null, as the full eigh says
                raise LowRankCheckError("every layer's row range is empty", {})
            result = _on_basis(
                lambda v: v @ h,
                theta,
                basis,
                rtol,
                restrict["generator"],
                restrict["n_probes"],
                restrict["residual_tol"],
                restrict["probe_tol"],
            )
        except LowRankCheckError as exc:
            diagnostics["decomposed"] = f"full ({exc})"
        else:
            checks = result.diagnostics["hvps"]
            diagnostics.update(result.diagnostics, decomposed="by layer ranges", hvps=hvps + checks)
            diagnostics["seconds"] = time.perf_counter() - t0
            return dataclasses.replace(result, method="dense", diagnostics=diagnostics)
    values, vectors = torch.linalg.eigh(h)
    null_tol = null_tolerance(values, rtol)
    rank = int((values.abs() > null_tol).sum())
    diagnostics["seconds"] = time.perf_counter() - t0
    return Eigenpairs(values.to(torch.float64), vectors, rank, "dense", null_tol, diagnostics)


class _Exceeded(Exception):
    """The sketch needed more columns than allowed (auto: dense is cheaper)."""


def _finite(t: Tensor) -> bool:
    # one reduction instead of torch.isfinite (which costs three full passes): NaN and ±inf
    # propagate through a sum
    return bool(torch.isfinite(t.sum()))


def _accept(
    what: str, residual: float, residual_tol: float, probe: float, probe_tol: float, diag: dict
) -> None:
    """Raise :class:`LowRankCheckError` unless both acceptance checks pass (NaN fails)."""
    failures = []
    if not residual <= residual_tol:
        failures.append(f"residual {residual:.3g} > {residual_tol:.3g}")
    if not probe <= probe_tol:
        failures.append(f"probe ratio {probe:.3g} > {probe_tol:.3g}")
    if failures:
        raise LowRankCheckError(f"{what} failed: " + "; ".join(failures), diag)


def _lowrank(
    loss_fn: LossFn,
    theta: Tensor,
    rtol: float,
    generator: torch.Generator | None,
    sketch_hint: int | None,
    max_sketch: int,
    oversample: int,
    min_null: int,
    n_probes: int,
    residual_tol: float,
    probe_tol: float,
) -> Eigenpairs:
    t0 = time.perf_counter()
    n = theta.numel()
    hvp = make_hvp(loss_fn, theta)
    if sketch_hint is None:
        k = min(n, max(64, 2 * (oversample + min_null)))
    else:
        hint = max(0, int(sketch_hint))
        k = min(n, hint + oversample + min_null + int(math.ceil(0.05 * hint)))
    if k > max_sketch:
        raise _Exceeded(f"sketch of {k} columns exceeds max_sketch={max_sketch}")

    def sketch(rows: int) -> Tensor:
        # rows HVPs of fresh Gaussian vectors, followed by n_probes raw Gaussian vectors: QR
        # then turns those into unit probes orthogonal to the whole sketch, with no extra pass
        omega = _gaussian(rows + n_probes, n, theta, generator)
        if rows == 0:
            return omega
        # the probes' few extra HVPs are cheaper than concatenating the k×N sketch
        y = hvp(omega).contiguous()  # (an expanded all-zero output cannot be written to)
        y[rows:] = omega[rows:]
        return y

    y = sketch(k)
    hvps, rounds = k + n_probes, 0
    while True:
        rounds += 1
        if not _finite(y[:k]):
            raise ValueError("loss_fn has non-finite Hessian values at theta")
        # Householder QR of [Y, probes]: Q = q[:, :k] spans range(Y); q[:, k:] are the probes
        q, r = torch.linalg.qr(y.T)
        rdiag = torch.diagonal(r)[:k].abs()
        rmax = float(rdiag.max()) if k else 0.0
        sketch_rank = int((rdiag > rtol * rmax).sum()) if rmax > 0 else 0
        if sketch_rank <= k - min_null or k >= n:
            # the sketch is rank deficient: Rayleigh-Ritz on all k columns of Q
            hz = hvp(q.T)
            hvps += k + n_probes
            z, hp, q = hz[:k].T, hz[k:], q[:, :k]
            b = q.T @ z
            if not (_finite(b) and _finite(hp)):
                raise ValueError("loss_fn has non-finite Hessian values at theta")
            b = 0.5 * (b + b.T)
            ritz, w = torch.linalg.eigh(b)
            null_tol = null_tolerance(ritz, rtol)
            keep = ritz.abs() > null_tol
            rank = int(keep.sum())
            if rank <= k - min_null or k >= n:
                break
        # not rank deficient yet: add fresh columns, +50% just above a hint (the rank moved a
        # little), else doubling (geometric growth: a few QRs, at most ~2× the final sketch)
        step = max(32, k // 2) if sketch_hint is not None and rounds == 1 else k
        k_new = min(n, max(k + step, sketch_rank + oversample + min_null))
        if k_new > max_sketch:
            raise _Exceeded(f"sketch of {k_new} columns exceeds max_sketch={max_sketch}")
        y = torch.cat([y[:k], sketch(k_new - k)])
        hvps += k_new - k + n_probes
        k = k_new

    lam_max = float(ritz.abs().max()) if k else 0.0
    scale = lam_max if lam_max > 0 else 1.0
    residual = float(torch.linalg.matrix_norm(z - q @ b)) / scale if k else 0.0
    # probes have unit norm; with k = n there is no orthogonal complement to probe
    probe_ratio = float(hp.norm(dim=1).max()) / scale if n_probes and k < n else 0.0
    vectors = q @ w[:, keep]
    values = ritz[keep]
    diagnostics = {
        "residual": residual,
        "probe_ratio": probe_ratio,
        "sketch_size": k,
        "sketch_rank": sketch_rank,
        "rounds": rounds,
        "hvps": hvps,
        "null_ritz": k - rank,
        "seconds": time.perf_counter() - t0,
    }
    _accept("low-rank check", residual, residual_tol, probe_ratio, probe_tol, diagnostics)
    return Eigenpairs(values.to(torch.float64), vectors, rank, "lowrank", null_tol, diagnostics)


def _on_basis(
    hvp: Callable[[Tensor], Tensor],
    theta: Tensor,
    basis: BlockBasis,
    rtol: float,
    generator: torch.Generator | None,
    n_probes: int,
    residual_tol: float,
    probe_tol: float,
) -> Eigenpairs:
    """Rayleigh-Ritz on a basis known to contain range(H): H = S (SᵀHS) Sᵀ exactly, so the
    eigenpairs of the d×d matrix SᵀHS, mapped back by S, are H's. The acceptance checks are
    the sketch path's: the invariance residual ‖HS − S(SᵀHS)‖ (zero when the basis holds the
    range) and random unit probes p ⟂ S with ‖Hp‖ (a direction the basis misses shows there)."""
    t0 = time.perf_counter()
    n, d = theta.numel(), basis.dim
    if basis.n != n:
        raise ValueError(f"the range basis is for {basis.n} parameters, theta has {n}")
    probes = torch.empty(0, n, dtype=theta.dtype, device=theta.device)
    if n_probes and d < n:
        raw = _gaussian(n_probes, n, theta, generator)
        raw = raw - basis.expand(basis.project(raw))
        probes = raw / raw.norm(dim=1, keepdim=True)
    if basis.reduced_hessian is None:
        tangents = basis.expand(torch.eye(d, dtype=theta.dtype, device=theta.device))
        hz = hvp(torch.cat([tangents, probes]))
        z, hp = hz[:d], hz[d:]
        b = basis.project(z)  # SᵀHS, rows and columns in the basis' coordinates
        checks, hvps = None, d + probes.shape[0]
    else:
        b = basis.reduced_hessian(theta).to(theta.dtype)
        # the residual HS − S(SᵀHS) of S itself is not formed: a few random unit vectors of
        # the subspace, v = Sc, check H v = S (SᵀHS) c against loss_fn's own products, as the
        # probes check the complement; together they test both halves of H = S (SᵀHS) Sᵀ
        checks = _gaussian(max(1, n_probes), d, theta, generator)
        checks = checks / checks.norm(dim=1, keepdim=True)
        hz = hvp(torch.cat([basis.expand(checks), probes]))
        z, hp = hz[: checks.shape[0]], hz[checks.shape[0] :]
        hvps = hz.shape[0]
    if b.shape != (d, d) or not (_finite(b) and _finite(hp) and _finite(z)):
        raise ValueError("loss_fn has non-finite Hessian values at theta")
    b = 0.5 * (b + b.T)
    ritz, w = torch.linalg.eigh(b)
    null_tol = null_tolerance(ritz, rtol)
    keep = ritz.abs() > null_tol
    lam_max = float(ritz.abs().max()) if d else 0.0
    scale = lam_max if lam_max > 0 else 1.0
    if checks is None:
        residual = float(torch.linalg.matrix_norm(z - basis.expand(b))) / scale if d else 0.0
    else:
        residual = float((z - basis.expand(checks @ b)).norm(dim=1).max()) / scale
    probe_ratio = float(hp.norm(dim=1).max()) / scale if probes.shape[0] else 0.0
    vectors = basis.expand(w[:, keep].T).T
    diagnostics = {
        "residual": residual,
        "probe_ratio": probe_ratio,
        "basis_size": d,
        "hvps": hvps,
        "null_ritz": d - int(keep.sum()),
        "seconds": time.perf_counter() - t0,
    }
    _accept(
        "low-rank check on the range basis",
        residual,
        residual_tol,
        probe_ratio,
        probe_tol,
        diagnostics,
    )
    rank = int(keep.sum())
    values = ritz[keep].to(torch.float64)
    return Eigenpairs(values, vectors, rank, "lowrank", null_tol, diagnostics, basis, w[:, keep])


def hessian_eigenpairs(
    loss_fn: LossFn,
    theta: Tensor,
    method: str = "auto",
    *,
    dtype: torch.dtype | None = torch.float64,
    generator: torch.Generator | None = None,
    sketch_hint: int | None = None,
    rtol: float | None = None,
    max_rank_fraction: float = 0.3,
    oversample: int = 16,
    min_null: int = 4,
    n_probes: int = 4,
    residual_tol: float | None = None,
    probe_tol: float | None = None,
    chunk_size: int | None = 512,
    range_basis: BlockBasis | None = None,
    layer_blocks: LayerBlocks | None = None,
) -> Eigenpairs:
    """Eigenpairs of the Hessian of ``loss_fn`` (flat 1-D θ ↦ scalar) at ``theta``.

    Args:
        method: ``"dense"`` (exact Hessian + ``torch.linalg.eigh``; all N pairs), ``"lowrank"``
            (matrix-free, exact; pairs with |λ| > ``null_tol`` only; raises
            :class:`LowRankCheckError` if its checks fail) or ``"auto"``: Rayleigh-Ritz on
            ``range_basis`` where there is one; else with ``layer_blocks`` the dense Hessian
            formed by layers and decomposed on its layers' row ranges (nonzero pairs only);
            else low-rank while the sketch stays ≤ ``max_rank_fraction``·N and its checks pass;
            dense otherwise.
        dtype: computation dtype (θ is cast; float64 by default; ``None`` keeps θ's dtype).
        generator: source of the sketch's randomness; pass a seeded one for bit-identical runs
            (``None`` draws from the global RNG of θ's device).
        sketch_hint: expected rank (e.g. the previous step's ``rank``): the sketch starts just
            above it instead of growing from 64 columns.
        rtol: relative null tolerance, ``null_tol = rtol·max|λ|`` (default :func:`default_rtol`).
        oversample, min_null: extra sketch columns beyond the hint, and the number of null
            directions that certify that a sketch is rank deficient.
        n_probes, residual_tol, probe_tol: acceptance checks of the low-rank result; both
            tolerances default to ``rtol``: whatever the low-rank result could misrepresent is
            then below what the shared rule calls zero.
        chunk_size: vmap chunk of the dense Hessian (bounds its memory).
        range_basis: a basis known to contain the Hessian's range (e.g.
            :func:`chaosgd.engine.models.hessian_range_basis`): ``lowrank`` and ``auto`` then do
            Rayleigh-Ritz on it instead of sketching, with the same acceptance checks (``auto``
            falls back to dense if they fail); ignored by ``dense``.
        layer_blocks: the model's layers (:class:`LayerBlocks`, e.g. from
            :func:`chaosgd.engine.models.hessian_structure`): the dense Hessian is then formed layer by
            layer (fewer and cheaper Hessian-vector products), checked by two random products
            of ``loss_fn`` (the full formation otherwise); ``dense`` still decomposes it in
            full, ``auto`` on the layers' row ranges, checked like the low-rank paths.

    The result lives on θ's device; eigenvalues are float64.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    theta = _check_theta(theta, dtype if dtype is not None else theta.dtype)
    if rtol is None:
        rtol = default_rtol(theta.dtype)
    if not (0 < rtol < 1):
        raise ValueError(f"rtol must lie in (0, 1), got {rtol!r}")
    if not (0 < max_rank_fraction <= 1):
        raise ValueError(f"max_rank_fraction must lie in (0, 1], got {max_rank_fraction!r}")
    if sketch_hint is not None and int(sketch_hint) < 0:
        raise ValueError(f"sketch_hint must be non-negative, got {sketch_hint!r}")
    if probe_tol is None:
        probe_tol = rtol
    if residual_tol is None:
        residual_tol = rtol
    n = theta.numel()
    layers = layer_blocks
    if method == "dense":
        return _dense(loss_fn, theta, rtol, chunk_size, layers)
    kwargs = dict(
        rtol=rtol,
        generator=generator,
        sketch_hint=sketch_hint,
        oversample=int(oversample),
        min_null=max(1, int(min_null)),
        n_probes=int(n_probes),
        residual_tol=float(residual_tol),
        probe_tol=float(probe_tol),
    )
    restrict = {k: kwargs[k] for k in ("generator", "min_null", "n_probes")}
    restrict.update(residual_tol=float(residual_tol), probe_tol=float(probe_tol))
    if range_basis is not None:
        args = (rtol, generator, int(n_probes), float(residual_tol), float(probe_tol))
        hvp = make_hvp(loss_fn, theta)
        if method == "lowrank":
            return _on_basis(hvp, theta, range_basis, *args)
        try:
            return _on_basis(hvp, theta, range_basis, *args)
        except LowRankCheckError as exc:
            result = _dense(loss_fn, theta, rtol, chunk_size, layers, restrict)
            result.diagnostics["fallback"] = str(exc)
            return result
    if method == "auto" and layers is not None:
        return _dense(loss_fn, theta, rtol, chunk_size, layers, restrict)
    if method == "lowrank":
        try:
            return _lowrank(loss_fn, theta, max_sketch=n, **kwargs)
        except _Exceeded as exc:  # pragma: no cover - max_sketch = n cannot be exceeded
            raise LowRankCheckError(str(exc), {}) from exc
    cap = int(max_rank_fraction * n)
    reason = None
    try:
        return _lowrank(loss_fn, theta, max_sketch=cap, **kwargs)
    except _Exceeded as exc:
        reason = f"rank above crossover: {exc}"
    except LowRankCheckError as exc:
        reason = str(exc)
    result = _dense(loss_fn, theta, rtol, chunk_size, layers, restrict)
    result.diagnostics["fallback"] = reason
    return result
