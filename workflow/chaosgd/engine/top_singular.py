"""The top eigenpair of a symmetric positive semidefinite operator, by Lanczos.

What :meth:`chaosgd.engine.tangent_map.TangentMap.top_singular` runs on YᵀY to give λ1(t) =
ln σ1(Y(t))/t between the exact readouts (App. C.1, Fig. 3b's upper bound) in O(N²) a product.
Plain power iteration stalls for hundreds of products where the top eigenvalue sits in a
cluster (early in training most σ_i = |1 − ηλ_i| ≈ 1); Lanczos converges at the square root of
its rate. Fully reorthogonalized, twice ("twice is enough"): the three-term recurrence loses
orthogonality exactly as the top Ritz value converges.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

# Stop once the a-posteriori error bound of the top eigenvalue (σ1²) is below TOP_TOL relative,
# i.e. ≈ TOP_TOL/2 = 5e-11 in ln σ1. The products round at ~1e-16 relative, far below; the bound
# takes the gap to the next Ritz value for the gap to σ2, which it can overstate before the space
# holds σ2: hence the tests' 1e-9 on ln σ1.
TOP_TOL = 1e-10
# Products at most (and Lanczos vectors kept): a tight cluster at the top can need dozens; past
# this the Ritz value is returned as it is (still a lower bound on the top eigenvalue).
TOP_MAX_ITER = 150


class TopSingular(NamedTuple):
    """:meth:`~chaosgd.engine.tangent_map.TangentMap.top_singular`'s result: ln σ1(Y), the unit
    vector v with ‖Yv‖ ≈ σ1 (the next value's start) and the products with YᵀY it took."""

    log_sigma: float
    vector: torch.Tensor
    iterations: int


def lanczos_top(
    apply: Callable[[torch.Tensor], torch.Tensor],
    v0: torch.Tensor,
    tol: float = TOP_TOL,
    max_iter: int = TOP_MAX_ITER,
) -> tuple[float, torch.Tensor, int]:
    """The top eigenvalue θ of the symmetric PSD operator ``apply`` (a vector to a vector), its
    unit Ritz vector and the number of products, from the unit start ``v0``.

    θ, the top Ritz value of the Krylov space, is a lower bound on the top eigenvalue that rises
    with every product; the iteration stops once its error bound r²/g ≤ ``tol`` · θ (r the Ritz
    pair's residual, g its gap to the next Ritz value: the standard a-posteriori bound
    |λ_max − θ| ≤ r²/gap), or r ≤ ``tol`` · θ itself, or the space is invariant, or after
    ``max_iter`` products. A θ that is not positive and finite is returned as it is (the
    caller names what it means).
    """
    n = v0.shape[0]
    k_max = max(1, min(int(max_iter), n))
    basis = torch.empty(n, k_max + 1, dtype=v0.dtype, device=v0.device)
    basis[:, 0] = v0
    alpha: list[float] = []
    beta: list[float] = []
    theta, ritz = 0.0, np.ones(1)
    eps = torch.finfo(v0.dtype).eps
    for k in range(k_max):
        q = basis[:, k]
        z = apply(q)
        alpha.append(float(torch.dot(q, z)))
        V = basis[:, : k + 1]
        for _ in range(2):
            z -= V @ (V.T @ z)
        b = float(torch.linalg.vector_norm(z))
        T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        vals, vecs = np.linalg.eigh(T)
        theta, ritz = float(vals[-1]), vecs[:, -1]
        if not (theta > 0 and math.isfinite(theta)):
            break
        residual = b * abs(float(ritz[-1]))
        gap = theta - float(vals[-2]) if k else math.inf
        if b <= eps * theta or residual <= tol * theta:
            break
        if k and residual * residual <= tol * theta * gap:
            break
        beta.append(b)
        basis[:, k + 1] = z / b
    k = len(alpha)
    v = basis[:, :k] @ torch.as_tensor(ritz, dtype=v0.dtype, device=v0.device)
    v /= torch.linalg.vector_norm(v)
    return theta, v, k


def factored_top(
    Q: torch.Tensor,
    B: torch.Tensor,
    s: torch.Tensor,
    v0: torch.Tensor | None = None,
    tol: float = TOP_TOL,
    max_iter: int = TOP_MAX_ITER,
    identity: bool = False,
) -> TopSingular:
    """ln σ1 of Y = Q diag(e^s) B (the tangent map's factors) by :func:`lanczos_top` on YᵀY.

    Y is applied as e^m · Q (diag(e^{s−m}) B), m = max s, so nothing overflows (rows more than
    ~745 nats below the top underflow to zero: their share of σ1 is below e^-745); a product
    with YᵀY is two with Q and two with B. ``v0`` is the previous value's vector, a fixed
    random draw if None (a resumed run starts from the same one); training turns the top
    singular vector only a little, so few products are needed. ``identity``: Y = I (t = 0),
    ln σ1 = 0 without a product. ln σ1 is -inf where Lanczos found no positive finite σ1².
    """
    n = Q.shape[0]
    if v0 is None:
        v0 = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = v0.to(dtype=Q.dtype, device=Q.device)
    v = v / torch.linalg.vector_norm(v)
    if identity:
        return TopSingular(0.0, v, 0)
    m = float(s.max())
    scale = torch.exp(s - m).to(Q.dtype)

    def gram(q: torch.Tensor) -> torch.Tensor:  # e^{-2m} YᵀY q
        return B.T @ (scale * (Q.T @ (Q @ (scale * (B @ q)))))

    theta, v, k = lanczos_top(gram, v, tol, max_iter)
    if not (theta > 0 and math.isfinite(theta)):
        return TopSingular(-math.inf, v, k)
    return TopSingular(m + 0.5 * math.log(theta), v, k)
