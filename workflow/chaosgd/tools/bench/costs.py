"""``python -m chaosgd.tools.bench costs``: the per-unit costs the jobs' runtime requests are
computed from (:data:`chaosgd.planning.job_costs.COSTS`), measured through the pipeline's own code
and reported at the reference size beside the table's values, then as a ``resources: costs:``
block for the config."""

from __future__ import annotations

import math
import statistics
import sys
import tempfile

import torch

from chaosgd.engine.curvature import make_hvp
from chaosgd.engine.models import build_model, flat_params, make_loss_fn
from chaosgd.engine.tangent_map import TangentMap
from chaosgd.planning.job_costs import AUTO_CURVATURE, COSTS, growth, n_params
from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.vocab import ARCHITECTURES, DTYPES, STRATEGIES
from chaosgd.runs.artifacts import save_tensors
from chaosgd.runs.data import Data, epoch_order, initial_model, load_data
from chaosgd.runs.lockstep import run_ensemble
from chaosgd.runs.tangent_tracker import advance
from chaosgd.runs.trainer import Trainer
from chaosgd.tools.bench.options import model_arguments, setup, write_json
from chaosgd.tools.bench.timing import load1, synthetic_batches, timed

__all__ = ["bench_costs", "yaml_float", "command"]

# the block curvature "topk" hands the Hessian-vector products at once
HVP_BLOCK = 10


def _hvp_seconds(arch: str, hidden: int, batch: int, dev: torch.device, seed: int) -> float:
    """One Hessian-vector product of a block of :data:`HVP_BLOCK` (float64, as curvature
    ``topk`` computes them), median of 3 blocks after a warm-up."""
    model = build_model(arch, hidden=hidden).to(dev)
    x, y = synthetic_batches(batch, seed, dev)()
    theta = flat_params(model).to(torch.float64)
    hvp = make_hvp(make_loss_fn(model, x, y), theta)
    gen = torch.Generator(device=dev).manual_seed(seed + 1)
    block = torch.randn(HVP_BLOCK, theta.numel(), generator=gen, device=dev, dtype=torch.float64)
    hvp(block)
    return statistics.median(timed(lambda: hvp(block), dev)[1] for _ in range(3)) / HVP_BLOCK


class _TangentTimer:
    """A training step hook: follows the run with a tangent map that never folds (the folds are
    timed apart) and times each of its updates."""

    def __init__(self, n: int, lr: float, device: torch.device):
        self.tangent = TangentMap(
            n, torch.float64, device, reorth_every=2**62, max_log_growth=math.inf
        )
        self.lr, self.device, self.seconds = lr, device, []

    def after_step(self, step, eig, pruned) -> None:
        """Advance the map with the step's nonzero eigenpairs, timed."""
        _, dt = timed(lambda: advance(self.tangent, eig, pruned, self.lr, 0.0), self.device)
        self.seconds.append(dt)

    def state_dict(self) -> dict:
        """Nothing to checkpoint: the bench never resumes."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore."""


def _costs_settings(model: str, hidden: int, batch: int, device: str, **kw) -> RunSettings:
    values = dict(
        run_id="bench", dataset="synthetic", model=model, activation="relu", hidden=hidden,
        variant="sgd", onset=0, momentum=0.0, seed=0, lr=1e-3, batch_size=batch, epochs=1,
        dtype="float32", train_size=0, test_size=0, subset_seed=0, evals_per_epoch=1,
        spectrum=False, curvature="auto", noise_scale=0.0, checkpoint_every=2**62, device=device,
    )  # fmt: skip
    values.update(kw)
    return RunSettings(**values)


def _synthetic_dataset(path: str, images: int, seed: int) -> None:
    """A prepared-dataset file of standard-normal 16×16 images with random labels: the costs
    depend only on the shapes."""
    gen = torch.Generator().manual_seed(seed)
    blob = {}
    for split, n in (("train", images), ("test", 256)):
        blob[f"{split}_x"] = torch.randn(n, 1, 16, 16, generator=gen)
        blob[f"{split}_y"] = torch.randint(0, 10, (n,), generator=gen)
    save_tensors(blob, path)


def _spectral_steps(settings: RunSettings, data: str, steps: int):
    """Time ``steps`` training steps with the spectrum and a tangent map (after one untimed step,
    which has no rank hint yet); returns the trainer, the hook and the per-step seconds."""
    trainer = Trainer(settings, data, progress=False)
    n = sum(p.numel() for p in trainer.model.parameters())
    hook = trainer.hooks["tangent"] = _TangentTimer(n, settings.lr, trainer.device)
    x, y = trainer.data.train_x, trainer.data.train_y
    b, total = settings.batch_size, []
    for i in range(steps + 1):
        j = (i * b) % (len(y) - b + 1)
        _, dt = timed(lambda: trainer.train_step(x[j : j + b], y[j : j + b]), trainer.device)
        total.append(dt)
    hook.seconds, total = hook.seconds[1:], total[1:]
    return trainer, hook, total


def bench_costs(
    archs=tuple(ARCHITECTURES),
    device: str = "cpu",
    hidden: int = 20,
    batch: int = 8,
    seed: int = 0,
    steps: int = 300,
    spectrum_steps: int = 8,
    readout_hidden: int = 6,
    ensemble_steps: int = 100,
    eps_count: int = 11,
    dense_mlp: bool = False,
    **_ignored,
) -> list[dict]:
    """Measure the per-unit costs of :data:`chaosgd.planning.job_costs.COSTS` side by side; one row each.

    Through the pipeline's own code on synthetic data: the :class:`~chaosgd.runs.trainer.Trainer`'s
    whole runs (plain steps) and single steps with the spectrum (its ``curvature`` method forced)
    and a tangent map; one re-orthonormalization of that map; one exact readout of a smaller
    MLP's (``readout_hidden``); the lockstep ensemble of 1 + 5·``eps_count`` members. Each cost is
    divided by :func:`chaosgd.planning.job_costs.growth` to report it at the reference size, as the
    planner's table holds it. The dense MLP (≈ 25 s a step) only with ``dense_mlp``.
    """
    dev = torch.device(device)
    rows: list[dict] = []

    def row(name, measured, n, what, b=batch):
        at_ref = measured / growth(name, name.split(".")[-1], n, b) if "." in name else measured
        if name in ("reorth", "readout", "lambda1"):
            at_ref = measured / growth(name, "mlp", n, b)
        table = COSTS[name].seconds
        rows.append(
            dict(
                name=name, seconds=at_ref, measured_s=measured, n_params=n, batch=b,
                table_s=table, ratio=at_ref / table, unit=COSTS[name].unit, how=what,
                device=str(dev), threads=torch.get_num_threads(),
            )
        )  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        small = f"{tmp}/steps.pt"
        _synthetic_dataset(small, steps * batch, seed)
        # the batch order is a permutation of the whole training set, drawn at every step
        order = [timed(lambda: epoch_order(60000, seed, e), torch.device("cpu"))[1]
                 for e in range(20)]  # fmt: skip
        row("order_image", statistics.median(order) / 60000, 0, "epoch_order(60000), median of 20")
        for arch in archs:
            n = n_params(arch, hidden)
            plain = Trainer(_costs_settings(arch, hidden, batch, device), small, progress=False)
            info = plain.run().info
            row(
                f"step.{arch}",
                info["wall_seconds"] / info["steps"],
                n,
                f"Trainer.run, {steps} steps",
            )
            what = f"make_hvp, a block of {HVP_BLOCK}, median of 3"
            row(f"hvp.{arch}", _hvp_seconds(arch, hidden, batch, dev, seed), n, what)
            methods = ["lowrank", "dense"] if arch != "mlp" or dense_mlp else ["lowrank"]
            for method in methods:
                # the method `auto` settles on is timed as training runs it (`auto`: the CNN's
                # dense Hessian formed by layers and decomposed on their row ranges)
                curvature = "auto" if method == AUTO_CURVATURE[arch] else method
                settings = _costs_settings(
                    arch, hidden, batch, device, spectrum=True, curvature=curvature
                )
                k = spectrum_steps if method == "lowrank" or arch != "mlp" else 1
                trainer, hook, total = _spectral_steps(settings, small, k)
                plain_s = info["wall_seconds"] / info["steps"]
                spectrum = [t - h - plain_s for t, h in zip(total, hook.seconds)]
                row(f"{method}.{arch}", statistics.median(spectrum), n, f"train_step, {k} steps")
                if method == AUTO_CURVATURE[arch]:
                    tangent = statistics.median(hook.seconds)
                    row(f"tangent.{arch}", tangent, n, f"TangentMap.step_sgd, {k} steps")
                if arch == "mlp" and method == "lowrank":
                    _, dt = timed(hook.tangent.reorthonormalize, dev)
                    row("reorth", dt, n, "one TangentMap.reorthonormalize")
                del trainer, hook
            members = 1 + len(STRATEGIES) * eps_count
            for dtype in DTYPES:
                settings = _costs_settings(arch, hidden, batch, device, dtype=dtype)
                data = load_data(small, settings, dev)
                theta0 = flat_params(initial_model(settings, "float32", torch.device("cpu")))
                gen = torch.Generator().manual_seed(seed + 3)
                dirs = {
                    s: torch.nn.functional.normalize(
                        torch.randn(theta0.numel(), generator=gen, dtype=torch.float64), dim=0
                    )
                    for s in STRATEGIES
                }
                eps = [float(e) for e in torch.logspace(-3, 1, eps_count, dtype=torch.float64)]
                sub = Data(
                    data.train_x[: ensemble_steps * batch], data.train_y[: ensemble_steps * batch],
                    data.test_x, data.test_y,
                )  # fmt: skip
                res = run_ensemble(settings, sub, theta0, dirs, eps, dtype, dev, record_every=10)
                per_member = res.info["seconds_per_step"] / res.info["members"]
                row(
                    f"member_{dtype}.{arch}", per_member, n,
                    f"run_ensemble, {members} members, {ensemble_steps} steps",
                )  # fmt: skip
        # the readout at a smaller N (≈ 15 min at the MLP's 5350 on one core), scaled by N³
        settings = _costs_settings("mlp", readout_hidden, batch, device, spectrum=True)
        trainer, hook, _ = _spectral_steps(settings, small, 5)
        _, dt = timed(hook.tangent.readout, dev)
        row("readout", dt, n_params("mlp", readout_hidden), "one TangentMap.readout, 6 steps")
        # cold-started (the run warm-starts it from the previous value's vector): an upper end
        _, dt = timed(hook.tangent.top_singular, dev)
        row("lambda1", dt, n_params("mlp", readout_hidden), "one TangentMap.top_singular, cold")
    return rows


def _print_table(rows, out=None):
    out = sys.stdout if out is None else out
    head = f"{'cost':<19} {'seconds':>10} {'table':>10} {'x table':>7} {'N':>5}  per, measured by"
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rows:
        print(
            f"{r['name']:<19} {r['seconds']:>10.3g} {r['table_s']:>10.3g} {r['ratio']:>7.2f} "
            f"{r['n_params']:>5}  {r['unit']}, {r['how']}",
            file=out,
        )
    print("# this node's costs, for the config (resources.costs), in seconds:", file=out)
    print("resources:\n  costs:", file=out)
    for r in rows:
        print(f"    {r['name']}: {yaml_float(r['seconds'])}", file=out)


def yaml_float(x: float) -> str:
    """``x`` to 3 significant digits as YAML reads a number: YAML 1.1 takes ``5e-05`` for text, so
    the mantissa always carries a dot (``5.0e-05``)."""
    text = f"{x:.3g}"
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return text


def command(args) -> int:
    """Run ``python -m chaosgd.tools.bench costs``; print the table and the config block, return
    the exit status."""
    status = setup(args)
    if status is not None:
        return status
    rows = bench_costs(
        **model_arguments(args),
        archs=args.arch,
        steps=args.steps,
        spectrum_steps=args.spectrum_steps,
        readout_hidden=args.readout_hidden,
        ensemble_steps=args.ensemble_steps,
        eps_count=args.eps_count,
        dense_mlp=args.dense_mlp,
    )
    print(
        f"# chaosgd.tools.bench costs: device={args.device} threads={torch.get_num_threads()} "
        f"hidden={args.hidden} batch={args.batch} load1={load1():.2f}"
    )
    print(
        "# seconds: per unit at the reference size (MLP 256-20-10, batch 8; readout and "
        "reorth at N = 5350), as chaosgd.planning.job_costs.COSTS; table: its value; x table: ratio"
    )
    _print_table(rows)
    write_json(args, rows)
    return 0
