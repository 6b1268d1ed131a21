"""The checkpoint of a tangent map held in factored form, W = Q·diag(e^s)·B, shared by the whole
map (:class:`chaosgd.engine.tangent_map.TangentMap`) and its k leading vectors
(:class:`chaosgd.engine.topk_tangent.TopKTangent`): the graded factor, the Benettin sums, the
step and fold counters, the cadence settings and the precision record of the folds. Each map
adds its own blocks (Q, Q0, the momentum buffer) and checks their shapes."""

from __future__ import annotations

import torch

__all__ = ["FactoredState"]


class FactoredState:
    """Mixin: ``_factor_state`` / ``_load_factor_state`` of the attributes both maps hold
    (``B``, ``s``, ``log_diag``, ``_t``, ``_since``, ``_growth``, ``reorth_every``,
    ``max_log_growth``, ``_lost``, ``_fold_log_cond``; ``_version`` and ``_cache`` are reset)."""

    def _factor_state(self) -> dict[str, torch.Tensor]:
        return {
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

    def _load_factor_state(self, sd: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`_factor_state` wrote (shapes checked by the caller)."""
        B = sd["B"].to(dtype=self.dtype, device=self.device).contiguous().clone()
        if not torch.equal(B, B.triu()):
            # the folds multiply triangular factors as such (and the readout assumes one)
            raise ValueError("state_dict['B'] is not upper triangular")
        self.B = B
        self.s = sd["s"].to(dtype=torch.float64, device=self.device).clone()
        self.log_diag = sd["log_diag"].to(dtype=torch.float64, device=self.device).clone()
        self._t = int(sd["t"])
        self._since = int(sd["since_reorth"])
        self._growth = float(sd["log_growth"])
        # checkpoints from before these settings were saved keep the map's own
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
