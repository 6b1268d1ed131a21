"""What each job asks its scheduler for: ``runtime`` (minutes) and ``mem_mb``, from its own size.

Every rule declares ``resources: runtime=..., mem_mb=...`` computed here (through
:func:`chaosgd.planning.plan.job_resources`), so that a SLURM job of 73 minutes and one of 30 hours do not
both get the profile's 60. A job's estimate is a sum of measured per-unit costs times its counts:

* training (``train_run``; ``lyapunov_run`` too): startup + steps × (the SGD step + the Hessian
  eigenpairs of the step when the run records its spectrum or prunes: low-rank or dense, as its
  ``curvature`` setting and the architecture choose), steps = ⌈training images / batch⌉ × epochs;
* the tangent map (``lyapunov_run``): steps × its update + steps / ``reorth_every`` × one
  re-orthonormalization + readouts × one exact readout (both O(N³)) + (steps /
  ``lambda1_every`` + readouts) × one value of λ1(t) (O(N²) products);
* ensembles: steps × members (1 + 5·|ε|) × the per-member step, for every dtype;
* datasets, fits, figures, report, claims: startup + the images prepared or the table rows read.

Costs are seconds on the reference machine (:data:`REFERENCE_MACHINE`) at the architecture's
reference size (:func:`n_params` with 20 hidden units, batch 8) and are scaled to the job's
parameter count N and batch by how each grows (:data:`COSTS`). Memory is a base for the Python
process with torch plus the job's largest arrays: N² float64 matrices (the dense Hessian and its
eigenvectors, the tangent map's factors and its readout), the dataset, the per-step records.

The config's ``resources`` section scales the estimates for a site: ``speed`` divides every time
(2 = nodes twice as fast as the reference), ``costs`` replaces measured costs by name (as
``python -m chaosgd.tools.bench costs`` prints them for a site's own node, a GPU one included),
``safety_factor`` multiplies time and memory, ``min_runtime`` / ``min_mem_mb`` are floors and
``max_runtime`` a cap (a partition's time limit).
Kept free of torch so that the Snakefile imports it quickly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.schedule import anchor_steps, readout_steps, train_images, train_steps
from chaosgd.planning.tables import DISTANCES
from chaosgd.planning.vocab import ARCHITECTURES, DATASETS, IMAGE_SIDE, strategies_for

REFERENCE_MACHINE = (
    "this project's 2-core x86_64 CPU machine (no GPU), one thread per job, PyTorch 2.14"
)

BATCH_REF = 8  # the batch size the per-step costs were measured at (the paper's)


def n_params(model: str, hidden: int, side: int = IMAGE_SIDE, depth: int | None = None) -> int:
    """Parameter count N of an architecture with ``hidden`` units (or base width) and ``depth``
    (``None``: its default) on ``side``×``side`` images, from its layers (the same that build
    the model), without torch."""
    if model not in ARCHITECTURES:
        raise ValueError(f"no parameter count for architecture {model!r}")
    return ARCHITECTURES[model].n_params(hidden, side=side, depth=depth)


def run_n_params(s: RunSettings) -> int:
    """Parameter count N of a run's model: its width, depth and its dataset's image side."""
    return n_params(s.model, s.hidden, s.image_side, s.depth)


# The reference size of each architecture, and the fraction of N its minibatch Hessian's rank is
# at batch 8 (measured: ≈ 250 of 5350 for the MLP, ≈ N/2 for the CNN), which sizes the low-rank
# eigensolver's work and the tangent map's update. `auto` settles on the MLP's range basis
# ("lowrank") and on the CNN's dense Hessian (formed by layers, decomposed on their ranges).
N_REF = {arch: n_params(arch, 20) for arch in ARCHITECTURES}
# (the architectures of exact curvature only: the planner refuses the others' spectral runs,
# chaosgd.planning.feasibility.check_curvature)
RANK_FRACTION = {"mlp": 250 / N_REF["mlp"], "cnn": 0.5}
# what curvature "auto" settles on: the low-rank method pays only while the rank is small
AUTO_CURVATURE = {"mlp": "lowrank", "cnn": "dense"}
# the tangent map's O(N³) steps (re-orthonormalization, readout) were timed on the MLP
SVD_N_REF = N_REF["mlp"]


@dataclass(frozen=True)
class Cost:
    """One measured cost: seconds per ``unit`` on the reference machine, and how it scales."""

    seconds: float
    unit: str
    scaling: str


# Seconds on REFERENCE_MACHINE, one thread: `python -m chaosgd.tools.bench costs --threads 1`, three
# runs on 2026-11-29 on a machine otherwise nearly idle (load ≈ 1), and for the eigensolvers the
# median of 40 steps timed alone ("bench"); the safety factor covers the spread between runs.
# The readout from `bench tangent` and the readout benchmark (below).
COSTS: dict[str, Cost] = {
    # an estimate: the imports take 2-5 s (bench), data loading and the outputs seconds more
    "startup": Cost(30.0, "job", "fixed: interpreter, torch import, data loading, outputs"),
    "step.mlp": Cost(6.6e-4, "training step", "∝ N·batch, never below the reference"),  # bench
    "step.cnn": Cost(2.1e-3, "training step", "∝ N·batch, never below the reference"),  # bench
    # one Hessian-vector product in a block of 10 (float64, vmap of forward-over-reverse), what
    # curvature "topk" pays TOPK_HVPS_PER_PAIR·k times a step; timed on 2026-12-03, one thread:
    # MLP 0.27 ms, CNN 1.9 ms, ResNet-20 of width 20 (N_REF) 179 ms (ResNet-8 of width 4: 9.9 ms)
    "hvp.mlp": Cost(2.7e-4, "Hessian-vector product", "∝ N·batch"),
    "hvp.cnn": Cost(1.9e-3, "Hessian-vector product", "∝ N·batch"),
    "hvp.resnet": Cost(0.179, "Hessian-vector product", "∝ N·batch"),
    # ResNet-20 of width 20 (N = 424,550), batch 8, 16×16: 0.019 s a step, timed on 2026-12-03
    # (forward, backward, SGD step, median of 20); width 16 (N = 272,186) 0.012 s
    "step.resnet": Cost(0.019, "training step", "∝ N·batch, never below the reference"),
    # the batch order (a permutation of the training set) is drawn again at every step; bench
    "order_image": Cost(5.0e-9, "training image, every step", "fixed"),
    # bench: median 0.028 s (three bench runs 0.029-0.046), Rayleigh-Ritz on the range basis
    "lowrank.mlp": Cost(0.03, "step's eigenpairs", "∝ N·batch·(rank + 30)"),
    "lowrank.cnn": Cost(1.8, "step's eigenpairs", "∝ N·batch·(rank + 30)"),  # bench: the sketch
    "dense.mlp": Cost(24.6, "step's eigenpairs", "∝ N³"),  # README, one thread
    # bench: median 0.278 s (0.27-0.31) as `auto` computes it (formed by layers, decomposed on
    # their row ranges); `curvature: dense` adds the full eigh (≈ 0.1 s more)
    "dense.cnn": Cost(0.28, "step's eigenpairs", "∝ N³"),
    # bench: 0.124 s through the range basis (0.59 s with the plain N×r products)
    "tangent.mlp": Cost(0.124, "tangent-map update", "∝ N²·rank (×2 with momentum)"),
    "tangent.cnn": Cost(0.085, "tangent-map update", "∝ N²·rank (×2 with momentum)"),  # bench
    # bench: 12.8 s with the triangular product of the fold (17.4-18.6 s with a full GEMM)
    "reorth": Cost(12.8, "re-orthonormalization", "∝ N³"),
    # a late readout of a long run, whose factor is strongly graded: 112 s on 2 threads for a
    # 434-nat N = 5350 factor (docs/costs-and-benchmarks.md), ≈ 200 s on one; an early, nearly isometric one takes
    # 30-60 s (bench costs times one at step 6: 48-55 s scaled from N = 1612)
    "readout": Cost(200.0, "exact Lyapunov readout", "∝ N³"),
    # measured 1.36 s a value at N = 5350 over the first 40 steps of a paper-MLP run (31 Lanczos
    # products of 44 ms, warm-started), where σ1 sits in a cluster near 1 and converges slowest
    "lambda1": Cost(1.4, "value of λ1(t) between readouts", "∝ N² (10-40 products)"),
    # bench: 56 members, 100 steps
    "member_float32.mlp": Cost(1.8e-5, "ensemble member step", "∝ N, never below the reference"),
    "member_float64.mlp": Cost(2.3e-5, "ensemble member step", "∝ N, never below the reference"),
    "member_float32.cnn": Cost(2.5e-4, "ensemble member step", "∝ N, never below the reference"),
    "member_float64.cnn": Cost(4.2e-4, "ensemble member step", "∝ N, never below the reference"),
    # the ResNet's members through vmap with each member's BatchNorm statistics (ensembles
    # around a top-k Lyapunov run): 4.2 ms float32, 10.6 ms float64 a member step at N = 68,642
    # (ResNet-20 of width 8, 16 members), timed on 2026-12-03, scaled to N_REF
    "member_float32.resnet": Cost(2.6e-2, "ensemble member step", "∝ N, never below the reference"),
    "member_float64.resnet": Cost(6.6e-2, "ensemble member step", "∝ N, never below the reference"),
    # the datasets stage: 14 s for FashionMNIST's 70 000 images, start-up included
    "dataset_image": Cost(2.0e-4, "image prepared", "fixed"),
    # an estimate, not measured: figures and claims read and reduce whole steps tables
    "table_row": Cost(2.0e-5, "table row read", "fixed"),
}

# Memory, MB (10⁶ bytes). The base is the peak RSS of `python -c "import chaosgd.<stage>"` for
# every stage (torch, numpy, pandas loaded: 1.00-1.19 GB measured); the rest are bytes per unit.
BASE_MEM_MB = 1000
ROW_BYTES = 1500  # one step's record: Python lists, their DataFrame, a checkpoint's copy
TABLE_ROW_BYTES = 200  # one row of a results table read back (steps, distances)
IMAGE_BYTES = 2 * 28 * 28 * 4  # preparing: two float32 copies of a raw (≤ 28×28) image
# N² float64 matrices held at once: the dense Hessian, its symmetrized copy and temporaries,
# eigenvectors and the eigensolver's workspace; the tangent map's Q and B, and in a readout the
# folded copy, its float64 NumPy copy, the Jacobi SVD's input and vectors and their Gram matrix
# (≈ 10 measured: 1.44 GB peak at N = 2146); momentum adds its velocity matrix
DENSE_MATRICES = 6
TANGENT_MATRICES = 10
LOWRANK_BLOCKS = 6  # N × sketch float64 blocks of the low-rank eigensolver


@dataclass(frozen=True)
class Request:
    """What one job asks for, and the estimate it came from (before speed and safety)."""

    runtime: int  # minutes
    mem_mb: int
    seconds: float  # estimated seconds on the reference machine
    memory_mb: float  # estimated peak memory


def check_costs(costs: dict) -> dict[str, float]:
    """The cost table with the config's overrides applied; ``ValueError`` names an unknown one."""
    unknown = sorted(set(costs) - set(COSTS))
    if unknown:
        raise ValueError(
            f"resources.costs: unknown cost {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(COSTS)})"
        )
    table = {name: c.seconds for name, c in COSTS.items()}
    table.update({k: float(v) for k, v in costs.items()})
    return table


# Hessian-vector products a step of curvature "topk" takes per pair it returns (the Lanczos
# iteration to 1e-10, the certificate, the completeness check): 29-41 measured on 2026-12-03 for
# the 10 most chaotic / negative / positive pairs of a ResNet-8 along 20 training steps
TOPK_HVPS_PER_PAIR = 41
# its Lanczos basis, in N-vectors per returned pair (float64), for the memory request
TOPK_BASIS_PER_PAIR = 12


def curvature_method(settings: RunSettings) -> str | None:
    """The eigensolver a run uses each step (None: no spectrum); ``auto`` as the architecture's."""
    if not settings.needs_spectrum:
        return None
    if settings.curvature == "auto":
        return AUTO_CURVATURE[settings.model]
    return settings.curvature


def hessian_rank(model: str, n: int, batch: int) -> int:
    """Estimated rank of a minibatch Hessian (grows with the batch, at most N)."""
    return max(1, min(n, math.ceil(RANK_FRACTION[model] * n * batch / BATCH_REF)))


def growth(name: str, model: str, n: int, batch: int = BATCH_REF) -> float:
    """How much more the cost ``name`` (its kind: the part before the dot) takes for a model of
    architecture ``model`` with ``n`` parameters at ``batch`` than at the reference size.

    The bench divides its timings by this to report them at the reference size, and the planner
    multiplies the table's costs by it, so the two agree whatever size the bench ran at.
    """
    kind = name.split(".")[0]
    size = n * batch / (N_REF[model] * BATCH_REF)
    if kind == "step":
        # per-step overheads (Python, the records) do not shrink with N
        return max(1.0, size)
    if kind == "hvp":
        return size
    if kind in ("lowrank", "tangent"):
        # the Hessian's rank is known only for the architectures of exact curvature, the only
        # ones with these costs (the planner refuses the others' spectral runs)
        rank, ref_rank = hessian_rank(model, n, batch), hessian_rank(model, N_REF[model], BATCH_REF)
        if kind == "lowrank":
            # 2·(rank + 30) Hessian-vector products, each ∝ N·batch
            return size * (rank + 30) / (ref_rank + 30)
        return (n / N_REF[model]) ** 2 * rank / ref_rank
    if kind == "dense":
        return (n / N_REF[model]) ** 3
    if kind in ("reorth", "readout"):
        return (n / SVD_N_REF) ** 3
    if kind == "lambda1":
        return (n / SVD_N_REF) ** 2
    if kind.startswith("member_"):
        return max(1.0, n / N_REF[model])
    return 1.0


class JobResources:
    """Each job's :class:`Request` for a validated config and its planned runs.

    ``runs``: every run (run id → settings); ``references``: the ensembles' reference runs;
    ``figures``: figure name → the result files it reads; ``claims_inputs``: those the claims
    read. Stages are named as the rule files: :meth:`request` takes the stage and the job's
    wildcard value (a dataset, run or figure name; none for report and claims).
    """

    def __init__(
        self,
        config: dict,
        runs: dict[str, RunSettings],
        references=(),
        figures: dict[str, tuple[str, ...]] | None = None,
        claims_inputs=(),
    ):
        res = config["resources"]
        self.costs = check_costs(res["costs"])
        self.speed = float(res["speed"])
        self.safety = float(res["safety_factor"])
        self.min_runtime = int(res["min_runtime"])
        self.max_runtime = res["max_runtime"]
        self.min_mem_mb = int(res["min_mem_mb"])
        self.base_mem_mb = float(res["base_mem_mb"] or BASE_MEM_MB)
        self.config = config
        self.runs = runs
        self.references = set(references)
        self.figures = dict(figures or {})
        self.claims_inputs = tuple(claims_inputs)
        self._cache: dict[tuple[str, str | None], Request] = {}

    # -- what the rules call ------------------------------------------------------------------

    def runtime(self, stage: str, key: str | None = None) -> int:
        """Minutes of wall time the job of ``stage`` for ``key`` requests."""
        return self.request(stage, key).runtime

    def mem_mb(self, stage: str, key: str | None = None) -> int:
        """Memory in MB the job of ``stage`` for ``key`` requests."""
        return self.request(stage, key).mem_mb

    def request(self, stage: str, key: str | None = None) -> Request:
        """The job's request: the estimate scaled by speed and safety factor, with the floors."""
        if (stage, key) not in self._cache:
            estimate = {
                "datasets": self._datasets,
                "train": self._train,
                "lyapunov": self._lyapunov,
                "ensembles": self._ensembles,
                "fits": self._fits,
                "figures": self._figures,
                "report": self._report,
                "claims": self._claims,
            }.get(stage)
            if estimate is None:
                raise ValueError(f"no resource estimate for stage {stage!r}")
            seconds, mb = estimate(key)
            runtime = max(self.min_runtime, math.ceil(self.safety * seconds / self.speed / 60))
            if self.max_runtime is not None:
                runtime = min(self.max_runtime, runtime)
            self._cache[stage, key] = Request(
                runtime=runtime,
                mem_mb=max(self.min_mem_mb, math.ceil(self.safety * mb)),
                seconds=seconds,
                memory_mb=mb,
            )
        return self._cache[stage, key]

    # -- estimates: (seconds on the reference machine, peak MB) --------------------------------

    def _c(self, name: str) -> float:
        return self.costs[name]

    def _scaled(self, kind: str, s: RunSettings) -> float:
        """The cost ``kind`` of the run's architecture at the run's size."""
        name = kind if kind in self.costs else f"{kind}.{s.model}"
        return self._c(name) * growth(name, s.model, run_n_params(s), s.batch_size)

    def _datasets(self, name: str) -> tuple[float, float]:
        ds = DATASETS[name]
        images = ds.train_size + ds.test_size
        seconds = self._c("startup") + images * self._c("dataset_image")
        return seconds, self.base_mem_mb + images * IMAGE_BYTES / 1e6

    def _data_mb(self, s: RunSettings) -> float:
        """The prepared dataset as loaded, plus its subset in the training dtype."""
        ds = DATASETS[s.dataset]
        images = ds.train_size + ds.test_size
        itemsize = 8 if s.dtype == "float64" else 4
        return images * s.image_side**2 * (4 + itemsize) / 1e6

    def _train(self, run: str) -> tuple[float, float]:
        s = self.runs[run]
        n, steps, b = run_n_params(s), train_steps(s), s.batch_size
        per_step = self._scaled("step", s) + self._c("order_image") * train_images(s)
        mb = self.base_mem_mb + self._data_mb(s) + steps * ROW_BYTES / 1e6
        method = curvature_method(s)
        if method == "topk":
            k = s.parsed_variant.k  # the planner allows topk for top-k variants only
            per_step += k * TOPK_HVPS_PER_PAIR * self._scaled("hvp", s)
            mb += TOPK_BASIS_PER_PAIR * k * n * 8 / 1e6
        elif method is not None:
            per_step += self._scaled(method, s)
            # memory as for dense whenever it may run: `auto` falls back to it on any step
            # whose low-rank checks fail, and a job killed for memory fails again on its retry
            sketch = min(n, 2 * (hessian_rank(s.model, n, b) + 30))
            lowrank_mb = LOWRANK_BLOCKS * n * sketch * 8 / 1e6
            dense_mb = DENSE_MATRICES * n * n * 8 / 1e6
            mb += lowrank_mb if s.curvature == "lowrank" else max(lowrank_mb, dense_mb)
        return self._c("startup") + steps * per_step, mb

    def _lyapunov(self, run: str) -> tuple[float, float]:
        s = self.runs[run]
        seconds, mb = self._train(run)
        n, steps = run_n_params(s), train_steps(s)
        lyap = self.config["lyapunov"]
        if lyap["topk"]:
            return self._topk_lyapunov(s, seconds, mb, lyap)
        # the momentum recursion updates the velocity's factor too
        update = self._scaled("tangent", s) * (2 if s.momentum else 1)
        folds = math.ceil(steps / lyap["reorth_every"])
        anchors = anchor_steps(lyap["anchors"], steps)
        readouts = len(readout_steps(steps, lyap["readouts"], lyap["early_readouts"], anchors))
        seconds += steps * update + folds * self._scaled("reorth", s)
        seconds += readouts * self._scaled("readout", s)
        seconds += (steps // lyap["lambda1_every"] + readouts) * self._scaled("lambda1", s)
        # and the Lyapunov bases kept at App. C.2's anchors
        matrices = TANGENT_MATRICES + (1 if s.momentum else 0) + len(anchors)
        return seconds, mb + matrices * n * n * 8 / 1e6

    def _topk_lyapunov(self, s: RunSettings, seconds: float, mb: float, lyap: dict):
        """k tangent vectors: one batched product of k vectors a step (a second through the
        momentum buffer's update is not needed: it reuses the product), and per λ1 value or
        readout a QR of N×k and an SVD of k×k, priced as one more such product (an upper end);
        memory O(kN): the block, its product, Q0, the momentum buffer and the anchors' vectors."""
        k, n, steps = lyap["topk"], run_n_params(s), train_steps(s)
        anchors = anchor_steps(lyap["anchors"], steps)
        readouts = len(readout_steps(steps, lyap["readouts"], lyap["early_readouts"], anchors))
        block = k * self._scaled("hvp", s)
        seconds += steps * block + (steps // lyap["lambda1_every"] + readouts) * block
        blocks = 4 + (1 if s.momentum else 0) + len(anchors)
        return seconds, mb + blocks * k * n * 8 / 1e6

    def _ensemble_rows(self, run: str) -> int:
        """Rows of the reference's distance table: recorded states × members × dtypes."""
        s, ens = self.runs[run], self.config["ensembles"]
        records = train_steps(s) // ens["record_every"] + self.config["lyapunov"]["readouts"] + 2
        return records * self._members() * len(ens["dtypes"])

    def _members(self) -> int:
        # the reference and every strategy × ε: three strategies around a top-k map, not five
        strategies = strategies_for(self.config["lyapunov"]["topk"])
        return 1 + len(strategies) * len(self.config["ensembles"]["eps"])

    def _ensembles(self, run: str) -> tuple[float, float]:
        s, ens = self.runs[run], self.config["ensembles"]
        n, steps, members = run_n_params(s), train_steps(s), self._members()
        per_step = sum(self._scaled(f"member_{d}", s) for d in ens["dtypes"]) * members
        # per member: parameters, gradients, velocities and the initial state, in float64
        mb = self.base_mem_mb + self._data_mb(s) + len(ens["dtypes"]) * members * n * 8 * 4 / 1e6
        mb += self._ensemble_rows(run) * TABLE_ROW_BYTES / 1e6
        return self._c("startup") + steps * per_step, mb

    def _rows(self, files) -> int:
        """Table rows the result ``files`` hold: a run's steps, a reference's distances."""
        rows = 0
        for f in files:
            m = re.search(r"(train|ensembles)/([^/]+)/(steps|distances)\.parquet$", str(f))
            if m and m[1] == "train" and m[2] in self.runs:
                rows += train_steps(self.runs[m[2]])
            elif m and m[1] == "ensembles" and m[2] in self.runs:
                rows += self._ensemble_rows(m[2])
        return rows

    def _reading(self, files) -> tuple[float, float]:
        rows = self._rows(files)
        seconds = self._c("startup") + rows * self._c("table_row")
        return seconds, self.base_mem_mb + rows * TABLE_ROW_BYTES / 1e6

    def _fits(self, run: str) -> tuple[float, float]:
        return self._reading([DISTANCES.path(run)])

    def _figures(self, name: str) -> tuple[float, float]:
        return self._reading(self.figures[name])

    def _report(self, _key=None) -> tuple[float, float]:
        return self._reading(())

    def _claims(self, _key=None) -> tuple[float, float]:
        return self._reading(self.claims_inputs)
