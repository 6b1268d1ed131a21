"""The k leading Lyapunov exponents following a training run, matrix-free (App. C.1, C.2 beyond
the paper's networks).

:class:`TopKTangentHook` is :class:`chaosgd.runs.tangent_tracker.TangentHook` with a
:class:`chaosgd.engine.topk_tangent.TopKTangent` in place of the N×N tangent map: after every step
it advances k tangent vectors W = Y(t)Q0 by one batched Hessian-vector product of the step's
minibatch loss at the step's parameters (the trainer hands it ``hvp``; a CGD step's pruned
eigenpairs are projected out, a momentum run follows the paper's Eq. 8), and reads out
λ̂_i = ln σ_i(Y(t)Q0)/t, i ≤ k, with their vectors Q0·V_R. These are lower bounds of the exact
finite-time exponents at every t, within β_i/t of them (the engine's docstring derives both; the
tests check them against the exact map). Its tables are the exact hook's: ``exponents`` rows
marked ``topk_svd`` / ``topk_svd_deflated`` (``lambda_N`` is then the k-th exponent, the counts
count among the k), ``lambda1`` from the same readout at every ``lambda1_every``-th step (no
Krylov iteration: ``iterations`` is 0), and App. C.2's ``subspaces`` on the k leading vectors.
Memory O(kN), cost per step one product of k vectors and O(k²N): any network.
"""

from __future__ import annotations

import time

import torch

from chaosgd.engine.eigenpairs import Eigenpairs
from chaosgd.engine.exponents import TOPK_PREFIX
from chaosgd.engine.topk_tangent import TopKTangent
from chaosgd.runs.tangent_tracker import TangentHook

__all__ = ["TopKTangentHook"]

# Q0's random stream, apart from the run's other streams: the same block on every device
_Q0_STREAM = 15_485_863


class TopKTangentHook(TangentHook):
    """Follows a :class:`chaosgd.runs.trainer.Trainer` with k tangent vectors and reads them out.

    The arguments are :class:`TangentHook`'s, with ``k`` (1 ≤ k ≤ N) the number of exponents;
    ``k`` joins the checkpoint's fingerprint. Q0 is drawn from the run's seed.
    """

    needs_hvp = True
    METHOD_PREFIX = TOPK_PREFIX

    def __init__(self, n: int, k: int, settings, *args, **kwargs):
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
            raise ValueError(f"k must be an int from 1 to the {n} parameters, got {k!r}")
        self.k = k
        self._seed = int(settings.seed)
        super().__init__(n, settings, *args, **kwargs)
        self._settings["topk"] = k

    def _make_tangent(self, n: int, reorth_every: int, device: torch.device) -> TopKTangent:
        gen = torch.Generator().manual_seed(self._seed * 1_000_003 + _Q0_STREAM)
        return TopKTangent(n, self.k, device=device, reorth_every=reorth_every, generator=gen)

    def after_step(
        self,
        step: int,
        eig: Eigenpairs | None,
        pruned: torch.Tensor | None,
        hvp=None,
    ) -> None:
        """Advance the k tangent vectors by this step's map; record λ̂1 and read out if due.

        ``hvp`` is the step's Hessian-vector product (the trainer passes it to hooks with
        ``needs_hvp``); the eigenpairs CGD ``pruned`` (indices into ``eig``) are projected out.
        """
        if hvp is None:
            raise RuntimeError("the top-k tangent map needs the step's Hessian-vector products")
        t0 = time.perf_counter()
        pairs = None
        if pruned is not None and pruned.numel():
            idx = pruned.to(eig.values.device)
            pairs = (eig.values[idx], eig.vectors[:, idx])
        if self.s.momentum:
            self.tangent.step_momentum(self.s.lr, self.s.momentum, hvp, pairs)
        else:
            self.tangent.step_sgd(self.s.lr, hvp, pairs)
        t1 = time.perf_counter()
        self.seconds["tangent"] += t1 - t0
        t = self.tangent.t
        if t % self.lambda1_every == 0 or t in self.exact_steps:
            # the k×k factor's SVD: cheap beside the step's k products; cached for the readout
            out = self.tangent.readout()
            self.lambda1["step"].append(t)
            self.lambda1["lambda_1"].append(float(out.exponents[0]))
            self.lambda1["iterations"].append(0)
            self.seconds["lambda1"] += time.perf_counter() - t1
        if t in self.exact_steps:
            self._exact(t)
