"""Hand-made results for the figure tests (training runs, Lyapunov spectra, ensembles and fits
of one small experiment), drawing a figure from them, and what its data should hold."""

from __future__ import annotations

import numpy as np
import pandas as pd

from chaosgd.analysis.plots import training
from chaosgd.analysis.plots.figure_data import save
from chaosgd.analysis.plots.loading import load_runs
from chaosgd.engine import exponents
from chaosgd.planning.vocab import FIGURE_KINDS, STRATEGIES
from chaosgd.runs.artifacts import write_json, write_parquet

STEPS = 130  # more than the moving average's 50, so its interior and both edges are drawn
SGD = ["e_sgd_s0", "e_sgd_s1"]
NEG = ["e_neg_s0", "e_neg_s1"]
REF = SGD[0]  # the Lyapunov run and ensemble reference
EPS = [0.01, 0.1, 1.0]
MAIN_EPS = 0.1
DTYPES = ["float32", "float64"]
QUANTILES = [0.1, 0.5, 0.9]
REF_COLUMNS = list(training.REF_COLUMNS)


def settings(run, variant, seed, **changes) -> dict:
    return {
        "run_id": run, "dataset": "usps", "model": "mlp", "activation": "relu", "hidden": 20,
        "variant": variant, "onset": 0, "momentum": 0.0, "seed": seed, "lr": 0.01,
        "batch_size": 8, "dtype": "float32", "spectrum": True, **changes,
    }  # fmt: skip


def steps_table(seed: int, offset: float, rng, ref: bool = True) -> pd.DataFrame:
    step = np.arange(STEPS)
    df = pd.DataFrame(
        {
            "step": step,
            "acc": np.clip(0.1 + offset + 0.005 * step + 0.05 * rng.standard_normal(STEPS), 0, 1),
            "loss": 2.0 * np.exp(-0.01 * step) + 0.1 * rng.random(STEPS) + offset,
            "n_negative": rng.integers(50, 100, STEPS),
            "n_positive": rng.integers(100, 150, STEPS),
            "n_positive_chaotic": rng.integers(0, 3, STEPS),
            "grad_frac_positive": 0.6 + 0.1 * rng.random(STEPS),
            "grad_frac_negative": 0.2 + 0.1 * rng.random(STEPS),
        }
    )
    if ref:
        half_null = (5350 - df["n_negative"] - df["n_positive"]) / 2
        df["ref_n_negative"] = df["n_negative"] + half_null
        df["ref_n_positive"] = df["n_positive"] + half_null
        for col in REF_COLUMNS[2:]:
            df[col] = 0.1 * rng.random(STEPS)
    return df


SPECTRA_STEPS = [0, 30, 60, 90, 120, 129]  # evaluation steps, the end by the last step


def spectra_table(rng, spectrum: bool = True) -> pd.DataFrame:
    """Nonzero eigenvalues per kept step: a bulk of both signs over decades about 0 and a few
    large positive ones that grow over training (no rows without the spectrum)."""
    parts = []
    for k, step in enumerate(SPECTRA_STEPS if spectrum else []):
        bulk = rng.choice([-1.0, 1.0], 150, p=[0.3, 0.7]) * 10.0 ** rng.uniform(-6, 0, 150)
        top = 10.0 ** rng.uniform(0, 1, 5) * (1 + k)
        parts.append(pd.DataFrame({"step": step, "eigenvalue": np.concatenate([bulk, top])}))
    if not parts:
        return pd.DataFrame(
            {"step": np.array([], dtype=np.int64), "eigenvalue": np.array([], dtype=float)}
        )
    return pd.concat(parts, ignore_index=True)


def fake_run(root, run, variant, seed, offset, rng, ref=True, **changes) -> None:
    folder = root / "train" / run
    info = {
        "run_id": run,
        "settings": settings(run, variant, seed, **changes),
        "environment": {},
        "result": {},
    }
    write_json(info, folder / "run.json")
    write_parquet(steps_table(seed, offset, rng, ref), folder / "steps.parquet")
    spectrum = info["settings"]["spectrum"] or variant != "sgd"
    # a stream of its own: the other tables stay what they were
    spectra = spectra_table(np.random.default_rng(100 + seed), spectrum)
    write_parquet(spectra, folder / "spectra.parquet")
    epoch = np.arange(4)
    write_parquet(
        pd.DataFrame(
            {
                "step": epoch * 30,
                "epoch": epoch.astype(float),
                "train_acc": 0.5 + 0.1 * epoch + offset + 0.01 * seed,
                "train_loss": 1.0 / (1 + epoch) + offset,
                "val_acc": 0.45 + 0.1 * epoch + offset - 0.01 * seed,
                "val_loss": 1.2 / (1 + epoch) + offset,
            }
        ),
        folder / "epochs.parquet",
    )


def subspaces_table(rng) -> pd.DataFrame:
    """App. C.2's table as chaosgd.engine.exponents.stability_row makes it, from random bases."""
    n, readouts, anchors = 12, [1, 2, 4, 8, 16, 60, 120], [2, 16]
    bases = {t: np.linalg.qr(rng.standard_normal((n, n)))[0] for t in readouts}
    spectra = {t: np.sort(rng.standard_normal(n))[::-1] / t for t in readouts}
    rows = [
        exponents.stability_row(bases[t0], spectra[t0], t0, bases[t], spectra[t], t, 1e-8, rng)
        for t0 in anchors
        for t in readouts
        if t > t0
    ]
    return pd.DataFrame(rows)


def lyapunov_results(root, rng) -> None:
    folder = root / "lyapunov" / REF
    step = np.array([1, 2, 4, 8, 16, 60, 120])
    lam1 = 0.5 / np.sqrt(step)
    exps = pd.DataFrame(
        {
            "step": step,
            "method": "svd",
            "lambda_1": lam1,
            "lambda_N": -0.3 / np.sqrt(step),
            "n_positive": np.array([900, 800, 700, 600, 500, 450, 400]),
            "n_negative": np.array([100, 200, 300, 400, 500, 550, 600]),
            "n_neutral": 4350,
        }
    )
    for q, v in zip(QUANTILES, (-0.1, 0.01, 0.2)):
        exps[f"q{q:g}"] = v / np.sqrt(step)
    write_parquet(exps, folder / "exponents.parquet")
    write_parquet(subspaces_table(rng), folder / "subspaces.parquet")
    write_parquet(lambda1_table(), folder / "lambda1.parquet")


def lambda1_table(scale: float = 0.5) -> pd.DataFrame:
    """λ1 at every step 1..STEPS - 10 (the readouts' 0.5/√t between them), as the Lyapunov
    stage's lambda1.parquet."""
    step = np.arange(1, 121)
    return pd.DataFrame(
        {"step": step, "lambda_1": scale / np.sqrt(step), "iterations": np.int32(3)}
    )


def ensemble_results(root, rng) -> None:
    step = np.arange(0, 121, 10)
    rows, members, fits, bounds = [], [], [], []
    for dtype in DTYPES:
        members.append(dict(dtype=dtype, strategy="reference", eps=0.0, train_acc=0.9, val_acc=0.8))
        for k, strategy in enumerate(STRATEGIES):
            for eps in EPS:
                d = np.sqrt(1e-4 * (k + 1) * step**2 + 1e-3 * step + eps**2)
                d *= 1 + 1e-3 * rng.random(len(step)) * (dtype == "float32")
                rows.append(
                    pd.DataFrame(
                        dict(dtype=dtype, strategy=strategy, eps=eps, step=step, distance=d)
                    )
                )
                members.append(
                    dict(
                        dtype=dtype,
                        strategy=strategy,
                        eps=eps,
                        train_acc=0.9 - eps / 10,
                        val_acc=0.8 - eps / 20,
                    )
                )
                fits.append(
                    dict(
                        dtype=dtype,
                        strategy=strategy,
                        eps=eps,
                        alpha=1e-4 * (k + 1),
                        beta=1e-3,
                        r2=0.99,
                        lower_bound_holds=1.0,
                        upper_bound_holds=0.5,
                        bound_steps=3,
                    )
                )
                at = np.array([1, 60, 120])
                bounds.append(
                    pd.DataFrame(
                        dict(
                            dtype=dtype,
                            strategy=strategy,
                            eps=eps,
                            step=at,
                            distance=d[[0, 6, 12]],
                            lower=eps * np.exp(-0.01 * at),
                            upper=eps * np.exp(0.03 * at),
                        )
                    )
                )
    write_parquet(
        pd.concat(rows, ignore_index=True), root / "ensembles" / REF / "distances.parquet"
    )
    write_parquet(pd.DataFrame(members), root / "ensembles" / REF / "members.parquet")
    write_parquet(pd.DataFrame(fits), root / "fits" / REF / "fits.parquet")
    write_parquet(pd.concat(bounds, ignore_index=True), root / "fits" / REF / "bounds.parquet")


def fake_results(root):
    """Two SGD and two CGD-negative seeds of one experiment, the first SGD run with Lyapunov
    spectra, ensembles and fits, under ``root`` (a results folder); returns ``root``."""
    rng = np.random.default_rng(0)
    for seed, run in enumerate(SGD):
        fake_run(root, run, "sgd", seed, 0.0, rng)
    for seed, run in enumerate(NEG):
        fake_run(root, run, "cgd-negative", seed, -0.05, rng)
    lyapunov_results(root, rng)
    ensemble_results(root, rng)
    return root


def kind_args(kind: str) -> tuple[list[str], list[str]]:
    """The runs a figure of ``kind`` draws (as the planner chooses by scope), and its options."""
    spec = FIGURE_KINDS[kind]
    runs = SGD + NEG if spec.scope in ("experiment", "spectral") else [REF]
    return runs, ["--eps", str(MAIN_EPS)] if spec.main_eps else []


def draw(results, out_dir, kind, plot, runs=None, name=None) -> pd.DataFrame:
    """Draw ``plot``, the figure of ``kind``, and save it as the figures stage does (PDF, PNG and
    the Parquet table of what it draws); return the data it wrote."""
    default_runs, options = kind_args(kind)
    name = name or f"fig_{kind}"
    outs = [out_dir / f"{name}.pdf", out_dir / f"{name}.png"]
    extra = {"eps": MAIN_EPS} if options else {}
    fig, data = plot(load_runs(results, runs or default_runs), name, **extra)
    save(fig, outs, data, out_dir / f"{name}.parquet")
    for out in outs:
        assert out.stat().st_size > 5000, out
    return pd.read_parquet(out_dir / f"{name}.parquet")


def curve(data: pd.DataFrame, panel: str, series: str) -> pd.DataFrame:
    rows = data[(data["panel"] == panel) & (data["series"] == series)]
    assert len(rows), (panel, series, sorted(set(zip(data["panel"], data["series"]))))
    return rows.reset_index(drop=True)


def moving_average(values: np.ndarray, window: int = 50) -> np.ndarray:
    """A centred moving average written out: the mean of the values from i − window/2 to
    i + window/2 − 1 that exist (pandas' centring of an even window)."""
    half = window // 2
    return np.array(
        [
            values[max(0, i - half) : min(len(values), i - half + window)].mean()
            for i in range(len(values))
        ]
    )


def seed_band(results, runs, table, column, window):
    series = [
        pd.read_parquet(results / "train" / r / f"{table}.parquet")[column].to_numpy() for r in runs
    ]
    smoothed = np.array([moving_average(s, window) if window > 1 else s for s in series])
    mean, std = smoothed.mean(axis=0), smoothed.std(axis=0, ddof=1)
    return mean, mean - std, mean + std
