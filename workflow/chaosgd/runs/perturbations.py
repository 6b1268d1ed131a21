"""Perturbations of a reference run along its Lyapunov directions (Fig. 3a, App. C.3).

From the reference run's final Lyapunov spectrum five unit directions are built
(:data:`chaosgd.planning.vocab.STRATEGIES`, :func:`directions`):

``max_chaos`` / ``max_convergence``
    the Lyapunov vector of the largest / smallest exponent;
``chaotic`` / ``nonchaotic``
    a Gaussian random combination of the vectors whose exponent is chaotic (λt > tol) /
    non-chaotic (λt < −tol), as classified by :func:`chaosgd.engine.exponents.classify`;
``random``
    a Gaussian random direction of the whole parameter space.

Around a top-k Lyapunov run (``lyapunov.topk`` k > 0: ``spectrum_final.pt`` holds the k leading
exponents and N×k vectors, ``topk`` = k) only the strategies the k leading vectors give are built
(:func:`chaosgd.planning.vocab.strategies_for`): ``max_chaos``, ``chaotic`` (the chaotic subspace
truncated to the k leading directions) and ``random``; the bottom vector and the non-chaotic
subspace are not known, and those members are left out, not approximated.

Every direction scaled by every ε is added to the reference's initial parameters θ(0)
(:func:`plan_members`, :func:`initial_parameters`); member 0 is the unperturbed reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from chaosgd.engine.exponents import classify
from chaosgd.engine.models import flat_params
from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.vocab import STRATEGIES, strategies_for
from chaosgd.runs.data import initial_model

REFERENCE = "reference"
# what this module reads from spectrum_final.pt
SPECTRUM_KEYS = ("exponents", "vectors", "t", "neutral_tol", "theta0")


# -- directions ---------------------------------------------------------------------------------


def _unit(v: Tensor) -> Tensor:
    return v / torch.linalg.vector_norm(v)


def spectrum_topk(spectrum: dict) -> int:
    """The ``topk`` of a ``spectrum_final.pt`` dict: k after a top-k map, 0 after the exact one
    (files from before top-k maps lack the key)."""
    return int(spectrum.get("topk", 0))


def directions(spectrum: dict, generator: torch.Generator) -> dict[str, Tensor]:
    """The unit perturbation directions (float64 N-vectors on the CPU), keyed by strategy in
    :data:`STRATEGIES` order: all five after the exact map, ``strategies_for(topk)`` after a
    top-k one.

    ``spectrum`` is a ``spectrum_final.pt`` dict: ``exponents`` (K,) descending, ``vectors`` N×K
    with matching columns (K = N, or K = ``topk``), ``t`` and ``neutral_tol`` (for
    :func:`chaosgd.engine.exponents.classify`). The random combinations draw their Gaussian
    coefficients from ``generator`` in a fixed order (chaotic, non-chaotic where built, random),
    so a seed fixes them all. Raises ``ValueError`` naming the strategy when its subspace is
    empty.
    """
    exponents = torch.as_tensor(spectrum["exponents"], dtype=torch.float64).cpu()
    vectors = torch.as_tensor(spectrum["vectors"], dtype=torch.float64).cpu()
    topk = spectrum_topk(spectrum)
    n = vectors.shape[0] if vectors.dim() == 2 else 0
    k = topk or n  # the exponents and vectors it holds
    if topk < 0 or not 1 <= k <= n or exponents.shape != (k,) or vectors.shape != (n, k):
        expected = f"topk {topk}: exponents (k,) and vectors N×k" if topk else "vectors N×N"
        raise ValueError(
            f"spectrum: expected {expected}, got exponents {tuple(exponents.shape)} and vectors "
            f"{tuple(vectors.shape)}"
        )
    if not bool(torch.isfinite(exponents).all() and torch.isfinite(vectors).all()):
        raise ValueError("spectrum: non-finite exponents or vectors")
    if bool((exponents[1:] > exponents[:-1]).any()):
        raise ValueError("spectrum: exponents must be sorted in descending order")
    chaotic, nonchaotic = classify(
        exponents.numpy(), int(spectrum["t"]), float(spectrum["neutral_tol"])
    )
    run = spectrum.get("run_id", "?")
    wanted = strategies_for(topk)
    out = {"max_chaos": _unit(vectors[:, 0])}
    if "max_convergence" in wanted:
        out["max_convergence"] = _unit(vectors[:, -1])
    for name, mask in (("chaotic", chaotic), ("nonchaotic", nonchaotic)):
        if name not in wanted:
            continue  # not known around a top-k map: nothing is drawn for it
        basis = vectors[:, torch.from_numpy(mask)]
        if basis.shape[1] == 0:
            sign = ">" if name == "chaotic" else "<"
            among = f" among the {k} leading exponents" if topk else ""
            raise ValueError(
                f"strategy {name!r}: the {name} Lyapunov subspace of run {run} is empty "
                f"(no exponent{among} with lambda*t {sign} {'' if sign == '>' else '-'}"
                f"{spectrum['neutral_tol']} at t={spectrum['t']})"
            )
        coeff = torch.randn(basis.shape[1], generator=generator, dtype=torch.float64)
        out[name] = _unit(basis @ coeff)
    out["random"] = _unit(torch.randn(n, generator=generator, dtype=torch.float64))
    return {name: out[name] for name in wanted}


# -- members ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One member of a perturbed ensemble: its perturbation strategy (``"reference"`` for member 0,
    the unperturbed run) and size ε.
    """

    strategy: str  # one of STRATEGIES, or "reference" for member 0
    eps: float


def plan_members(eps: list[float], strategies=tuple(STRATEGIES)) -> list[Member]:
    """Member 0 is the reference; then every strategy of ``strategies`` (all by default; those
    :func:`directions` built around a top-k map) × ε, strategy-major in :data:`STRATEGIES`
    order."""
    eps = [float(e) for e in eps]
    if not eps:
        raise ValueError("at least one eps is needed")
    bad = [e for e in eps if not (math.isfinite(e) and e >= 0)]
    if bad:
        raise ValueError(f"eps must be finite and non-negative, got {bad}")
    if len(set(eps)) != len(eps):
        raise ValueError(f"eps values must be distinct, got {eps}")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies or len(set(strategies)) != len(strategies):
        raise ValueError(
            f"strategies must be distinct ones of {list(STRATEGIES)}, got {strategies}"
        )
    chosen = [s for s in STRATEGIES if s in strategies]
    return [Member(REFERENCE, 0.0)] + [Member(s, e) for s in chosen for e in eps]


def initial_parameters(
    theta0: Tensor, dirs: dict[str, Tensor], members: list[Member]
) -> tuple[Tensor, Tensor]:
    """(M×N float64 initial parameters θ0 + ε d, (M−1)×N unit directions of the perturbed members).

    The sum is formed in float64; a float32 ensemble rounds it once when cast, so its step-0
    distance is ε only up to float32's representation of θ0 + εd (that is the point of App. C.4).
    """
    theta0 = theta0.to(torch.float64).reshape(1, -1)
    d = torch.stack([dirs[m.strategy] for m in members[1:]])
    eps = torch.tensor([m.eps for m in members[1:]], dtype=torch.float64)
    thetas = torch.cat([theta0, theta0 + eps[:, None] * d])
    return thetas, d


def check_reference(settings: RunSettings, spectrum: dict) -> Tensor:
    """The reference's θ(0) from the spectrum, checked against the run's settings.

    Only plain SGD (momentum allowed) is perturbed: CGD's projections depend on per-step
    eigendecompositions, which would not be those of a perturbed copy. θ(0) must equal the
    initialization ``build_model`` gives under the run's seed, else the spectrum belongs to
    another run.
    """
    if settings.parsed_variant.optimizer != "sgd":
        raise ValueError(
            f"run {settings.run_id}: ensembles need a plain SGD reference, got variant {settings.variant!r}"
        )
    missing = sorted(set(SPECTRUM_KEYS) - set(spectrum))
    if missing:
        raise ValueError(f"run {settings.run_id}: the spectrum lacks {missing}")
    if "run_id" in spectrum and spectrum["run_id"] != settings.run_id:
        raise ValueError(
            f"run {settings.run_id}: the spectrum belongs to run {spectrum['run_id']!r}"
        )
    theta0 = torch.as_tensor(spectrum["theta0"], dtype=torch.float64).cpu().reshape(-1)
    init = flat_params(initial_model(settings, "float32", torch.device("cpu"))).to(torch.float64)
    if theta0.numel() != init.numel():
        raise ValueError(
            f"run {settings.run_id}: the spectrum has {theta0.numel()} parameters, the model {init.numel()}"
        )
    if not torch.equal(theta0, init):
        raise ValueError(
            f"run {settings.run_id}: the spectrum's theta0 is not the initialization of seed "
            f"{settings.seed} (max difference {float((theta0 - init).abs().max()):.3g})"
        )
    return theta0
