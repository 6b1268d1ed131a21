"""Turn the validated config into jobs: the command-line arguments of each stage.

Imported by the Snakefile (``workflow/rules/common.smk``); pure functions of the config dict so
that the planning is testable without Snakemake.
"""

from __future__ import annotations

import dataclasses
import re
import shlex

from chaosgd.settings import RunSettings, Variant


def datasets_args(config: dict, dataset: str) -> str:
    """Arguments of ``python -m chaosgd.datasets`` for one configured dataset."""
    try:
        src = config["datasets"][dataset]
    except KeyError:
        raise ValueError(
            f"dataset {dataset!r} is not configured under 'datasets' "
            f"(configured: {sorted(config['datasets'])})"
        ) from None
    args = ["--cache-dir", f"{config['download_cache']}/{dataset}"]
    if src["local_dir"]:
        args += ["--local-dir", src["local_dir"]]
    if not src["download"]:
        args.append("--no-download")
    for url in src["mirrors"]:
        args += ["--mirror", url]
    for name, md5 in sorted(src["md5"].items()):
        args += ["--md5", f"{name}={md5}"]
    return shlex.join(args)


# --- training runs ----------------------------------------------------------------------

# experiment keys that override training settings when not null
OVERRIDES = ("lr", "batch_size", "epochs", "train_size", "dtype", "spectrum")


def run_id(exp: dict, variant: str, onset: int, momentum: float, seed: int) -> str:
    """Readable run name, e.g. ``usps_mlp-relu20_cgd-chaotic_on2000_m0_s1``."""
    arch = f"mlp-{exp['activation']}{exp['hidden']}" if exp["model"] == "mlp" else (
        f"cnn-{exp['activation']}"
    )
    parts = [exp["dataset"], arch, variant]
    if onset:
        parts.append(f"on{onset}")
    parts += [f"m{momentum:g}", f"s{seed}"]
    if exp.get("tag"):
        parts.append(exp["tag"])
    return "_".join(parts)


def expand_runs(config: dict) -> tuple[dict[str, RunSettings], dict[str, list[str]]]:
    """All runs of the config's experiments, and each experiment's runs (in config order).

    A run shared by several experiments (e.g. one SGD baseline) appears once; two experiments
    that define the same run name with different settings are an error.
    """
    runs: dict[str, RunSettings] = {}
    owner: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    training = config["training"]
    for exp in config["experiments"]:
        name = exp["name"]
        if name in groups:
            raise ValueError(f"experiments: the name {name!r} is used twice")
        if exp["dataset"] not in config["datasets"]:
            raise ValueError(
                f"experiments[{name}].dataset: {exp['dataset']!r} is not configured under "
                f"datasets (configured: {sorted(config['datasets'])})"
            )
        resolved = dict(training)
        resolved.update({k: exp[k] for k in OVERRIDES if exp.get(k) is not None})
        groups[name] = []
        for variant in exp["variants"]:
            is_cgd = Variant.parse(variant).optimizer == "cgd"
            for onset in exp["onsets"] if is_cgd else [0]:
                for momentum in exp["momentum"]:
                    for seed in exp["seeds"]:
                        rid = run_id(exp, variant, onset, momentum, seed)
                        settings = RunSettings(
                            run_id=rid,
                            dataset=exp["dataset"],
                            model=exp["model"],
                            activation=exp["activation"],
                            hidden=exp["hidden"],
                            variant=variant,
                            onset=onset,
                            momentum=float(momentum),
                            seed=seed,
                            lr=float(resolved["lr"]),
                            batch_size=resolved["batch_size"],
                            epochs=resolved["epochs"],
                            dtype=resolved["dtype"],
                            train_size=resolved["train_size"],
                            test_size=resolved["test_size"],
                            subset_seed=resolved["subset_seed"],
                            evals_per_epoch=resolved["evals_per_epoch"],
                            spectrum=resolved["spectrum"],
                            curvature=resolved["curvature"],
                            noise_scale=float(resolved["noise_scale"]),
                            checkpoint_every=resolved["checkpoint_every"],
                            device=config["device"],
                        )
                        if rid in runs and runs[rid] != settings:
                            raise ValueError(
                                f"experiments {owner[rid]!r} and {name!r} both define run "
                                f"{rid} but with different settings; give one of them a tag"
                            )
                        runs.setdefault(rid, settings)
                        owner.setdefault(rid, name)
                        if rid not in groups[name]:
                            groups[name].append(rid)
    return runs, groups


def train_args(settings: RunSettings) -> str:
    """Arguments of ``python -m chaosgd.train`` for one run."""
    return shlex.join(settings.to_args())


def wildcard_choice(names) -> str:
    """A regex matching exactly these names (for wildcard_constraints)."""
    return "|".join(re.escape(n) for n in sorted(names)) or "(?!)"


# --- Lyapunov spectra ----------------------------------------------------------------------


def lyapunov_runs(
    config: dict, runs: dict[str, RunSettings], groups: dict[str, list[str]]
) -> tuple[dict[str, RunSettings], dict[str, list[str]]]:
    """The runs selected for a tangent map, by the experiment that selected them, and the runs
    with those forced to record the spectrum (the tangent map needs every step's eigenpairs)."""
    selected: dict[str, list[str]] = {}
    for i, sel in enumerate(config["lyapunov"]["runs"]):
        where = f"lyapunov.runs[{i}]"
        exp = sel["experiment"]
        if exp not in groups:
            raise ValueError(
                f"{where}.experiment: no experiment named {exp!r} (experiments: {sorted(groups)})"
            )
        members = [runs[r] for r in groups[exp]]
        for key, field in (("variants", "variant"), ("seeds", "seed")):
            unknown = set(sel[key]) - {getattr(m, field) for m in members}
            if unknown:
                raise ValueError(f"{where}.{key}: {sorted(unknown)} not in experiment {exp!r}")
        chosen = selected.setdefault(exp, [])
        for m in members:
            if (not sel["variants"] or m.variant in sel["variants"]) and (
                not sel["seeds"] or m.seed in sel["seeds"]
            ):
                if m.run_id not in chosen:
                    chosen.append(m.run_id)
    every = {r for chosen in selected.values() for r in chosen}
    forced = {
        rid: dataclasses.replace(s, spectrum=True) if rid in every else s
        for rid, s in runs.items()
    }
    return forced, selected


def lyapunov_args(config: dict) -> str:
    """The Lyapunov settings of ``python -m chaosgd.lyapunov`` (beside the run's settings)."""
    lyap = config["lyapunov"]
    args = [
        "--readouts", str(lyap["readouts"]),
        "--benettin-every", str(lyap["benettin_every"]),
        "--neutral-tol", repr(float(lyap["neutral_tol"])),
        "--reorth-every", str(lyap["reorth_every"]),
        "--quantiles", *[repr(float(q)) for q in lyap["quantiles"]],
    ]  # fmt: skip
    return shlex.join(args)


# --- figures -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure: what it draws (``kind``, a subcommand of chaosgd.figures), from which runs,
    and the result files it reads (the rule's inputs)."""

    name: str
    kind: str
    experiment: str
    runs: tuple[str, ...]
    inputs: tuple[str, ...]


# result files each kind of figure reads, per run
FIGURE_FILES = {
    "curves": ("train/{run}/steps.parquet", "train/{run}/run.json"),
    "validation": ("train/{run}/epochs.parquet", "train/{run}/run.json"),
    "spectrum": ("train/{run}/steps.parquet", "train/{run}/run.json"),
    "exponents": ("lyapunov/{run}/exponents.parquet", "train/{run}/run.json"),
    "subspaces": ("lyapunov/{run}/subspaces.parquet", "train/{run}/run.json"),
}


def _figure(name: str, kind: str, experiment: str, runs: list[str]) -> Figure:
    inputs = tuple(f"results/{f.format(run=r)}" for r in runs for f in FIGURE_FILES[kind])
    return Figure(name, kind, experiment, tuple(runs), inputs)


def figures(
    runs: dict[str, RunSettings], groups: dict[str, list[str]], lyapunov: dict[str, list[str]]
) -> dict[str, Figure]:
    """Every figure of the config, by name.

    Each experiment gets its curves (named after it: fig1, fig2, figB1_fmnist, ...), its
    validation curves (``<name>_validation``) and, when its runs recorded the Hessian spectrum,
    the App. B.2 spectrum figure (``figB2_<name>``); an experiment with runs that carry a
    tangent map (selected under ``lyapunov.runs`` for that experiment) gets App. C.1
    (``figC1_<name>``, exponents over training) and C.2 (``figC2_<name>``, subspace stability).
    """
    out: list[Figure] = []
    for name, members in groups.items():
        out.append(_figure(name, "curves", name, members))
        out.append(_figure(f"{name}_validation", "validation", name, members))
        spectral = [r for r in members if runs[r].needs_spectrum]
        if spectral:
            out.append(_figure(f"figB2_{name}", "spectrum", name, spectral))
        tangent = lyapunov.get(name, [])
        if tangent:
            out.append(_figure(f"figC1_{name}", "exponents", name, tangent))
            out.append(_figure(f"figC2_{name}", "subspaces", name, tangent))
    by_name: dict[str, Figure] = {}
    for fig in out:
        if fig.name in by_name:
            raise ValueError(
                f"two figures would be named {fig.name!r} (experiment {fig.experiment!r} and "
                f"{by_name[fig.name].experiment!r}); rename an experiment"
            )
        by_name[fig.name] = fig
    return by_name
