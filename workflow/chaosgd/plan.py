"""Turn the validated config into jobs: the command-line arguments of each stage.

Imported by the Snakefile (``workflow/rules/common.smk``); pure functions of the config dict so
that the planning is testable without Snakemake.
"""

from __future__ import annotations

import dataclasses
import os
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
    arch = (
        f"mlp-{exp['activation']}{exp['hidden']}"
        if exp["model"] == "mlp"
        else (f"cnn-{exp['activation']}")
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
        rid: dataclasses.replace(s, spectrum=True) if rid in every else s for rid, s in runs.items()
    }
    return forced, selected


def lyapunov_args(config: dict) -> str:
    """The Lyapunov settings of ``python -m chaosgd.lyapunov`` (beside the run's settings)."""
    lyap = config["lyapunov"]
    args = [
        "--readouts", str(lyap["readouts"]),
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
    caption: str = ""
    options: tuple[str, ...] = ()  # extra arguments of its chaosgd.figures subcommand

    @property
    def category(self) -> str:
        return FIGURE_KINDS[self.kind][0]


# kind -> (report category, what the figure shows, the paper figures it reproduces)
FIGURE_KINDS = {
    "curves": (
        "Training curves",
        "Training accuracy and loss of every minibatch step, moving average of 50 steps, mean "
        "± std over seeds; dotted vertical lines mark pruning onsets.",
        "Fig. 1 (SGD vs CGD pruning the chaotic, negative, positive spectrum), Fig. 2 (pruning "
        "onsets), App. B.1 (FashionMNIST, CNN)",
    ),
    "validation": (
        "Training curves",
        "Validation (solid) and full training-set (dashed) accuracy and loss per epoch, mean ± "
        "std over seeds.",
        "App. B.1 (validation curves)",
    ),
    "spectrum": (
        "Hessian spectrum",
        "Per step: the numbers of negative, positive and positive-chaotic (λ > 2/η) eigenvalues "
        "of the minibatch Hessian, and the fraction of the squared gradient norm in the positive "
        "and negative eigenspaces; moving average of 50 steps.",
        "App. B.2",
    ),
    "exponents": (
        "Lyapunov spectra",
        "Finite-time Lyapunov exponents ln σ_i(Y(t))/t of the tangent map over training: λ1, λN, "
        "quantiles, and the numbers of chaotic (λ > 0) and non-chaotic (λ < 0) directions, from "
        "exact Jacobi-SVD readouts of the tangent map.",
        "App. C.1",
    ),
    "divergence": (
        "Perturbed ensembles",
        "Distance ‖θ_B(t) − θ_A(t)‖ between the reference A and copies B of it perturbed at "
        "initialization by ε along 5 directions of its final Lyapunov spectrum: max chaos (top "
        "vector), max convergence (bottom vector), random chaotic and random non-chaotic "
        "combinations, and a random direction; same seed and batch order. One panel per "
        "reference.",
        "Fig. 3a",
    ),
    "fit": (
        "Perturbed ensembles",
        "Distance curves (solid), the least-squares fit of √(αt² + βt + ε²) to d² (dashed, R² in "
        "the legend) and the Lyapunov bounds e^{λN(t)t}ε ≤ d(t) ≤ e^{λ1(t)t}ε at the readout "
        "steps (shaded).",
        "Fig. 3b",
    ),
    "sweep": (
        "Perturbed ensembles",
        "The ε sweep: distance curves for every ε per direction, and the members' final "
        "training and validation accuracy against ε.",
        "App. C.3",
    ),
    "precision": (
        "Perturbed ensembles",
        "Small perturbations trained in float32 (wide, light) and float64 (thin, dashed), each "
        "against its own reference: d(t)/ε per direction. Where the float32 curves turn erratic and the "
        "float64 ones do not, the erratic behaviour is round-off.",
        "App. C.4 (the paper's open question on small ε)",
    ),
    "bounds": (
        "Perturbed ensembles",
        "Distance against the Lyapunov bounds e^{λN(t)t}ε (lower) and e^{λ1(t)t}ε (upper) at "
        "the exact readout steps, per direction, with the fraction of steps where each holds.",
        "App. C.5",
    ),
    "subspaces": (
        "Lyapunov spectra",
        "Similarity ‖V_prevᵀV‖²_F / min(dim) of the chaotic and non-chaotic Lyapunov subspaces "
        "between consecutive exact readouts, and their dimensions.",
        "App. C.2",
    ),
}


# result files each kind of figure reads, per run
FIGURE_FILES = {
    "curves": ("train/{run}/steps.parquet", "train/{run}/run.json"),
    "validation": ("train/{run}/epochs.parquet", "train/{run}/run.json"),
    "spectrum": ("train/{run}/steps.parquet", "train/{run}/run.json"),
    "exponents": ("lyapunov/{run}/exponents.parquet", "train/{run}/run.json"),
    "subspaces": ("lyapunov/{run}/subspaces.parquet", "train/{run}/run.json"),
    "divergence": ("ensembles/{run}/distances.parquet", "train/{run}/run.json"),
    "fit": (
        "ensembles/{run}/distances.parquet",
        "fits/{run}/fits.parquet",
        "fits/{run}/bounds.parquet",
        "train/{run}/run.json",
    ),
    "sweep": (
        "ensembles/{run}/distances.parquet",
        "ensembles/{run}/members.parquet",
        "train/{run}/run.json",
    ),
    "precision": ("ensembles/{run}/distances.parquet", "train/{run}/run.json"),
    "bounds": ("fits/{run}/bounds.parquet", "fits/{run}/fits.parquet", "train/{run}/run.json"),
}


def describe_runs(runs: list[RunSettings]) -> str:
    """The settings of a set of runs in one sentence (for captions)."""
    first = runs[0]
    arch = f"MLP 256-{first.hidden}-10" if first.model == "mlp" else "CNN"
    values = lambda field: sorted({getattr(r, field) for r in runs})  # noqa: E731
    text = (
        f"{first.dataset}, {arch} ({first.activation}), lr {first.lr:g}, batch "
        f"{first.batch_size}, {first.epochs} epochs"
    )
    if first.train_size:
        text += f" of {first.train_size} training images"
    text += f", {first.dtype}; variants {', '.join(values('variant'))}"
    onsets = [o for o in values("onset") if o]
    if onsets:
        text += f"; pruning onsets {', '.join(map(str, onsets))}"
    text += f"; momentum {', '.join(f'{m:g}' for m in values('momentum'))}"
    text += f"; seeds {', '.join(map(str, values('seed')))}."
    return text


def _figure(
    name: str,
    kind: str,
    experiment: str,
    runs: list[str],
    settings: dict[str, RunSettings],
    options: tuple[str, ...] = (),
    note: str = "",
) -> Figure:
    inputs = tuple(f"results/{f.format(run=r)}" for r in runs for f in FIGURE_FILES[kind])
    _, shows, paper = FIGURE_KINDS[kind]
    caption = (
        f"{shows} Experiment {experiment}: {describe_runs([settings[r] for r in runs])}"
        f"{note} Reproduces {paper} of the paper."
    )
    return Figure(name, kind, experiment, tuple(runs), inputs, caption, options)


def figures(
    runs: dict[str, RunSettings],
    groups: dict[str, list[str]],
    lyapunov: dict[str, list[str]],
    references: dict[str, str] | None = None,
    ensembles: dict | None = None,
) -> dict[str, Figure]:
    """Every figure of the config, by name.

    Each experiment gets its curves (named after it: fig1, fig2, figB1_fmnist, ...), its
    validation curves (``<name>_validation``) and, when its runs recorded the Hessian spectrum,
    the App. B.2 spectrum figure (``figB2_<name>``); an experiment with runs that carry a
    tangent map (selected under ``lyapunov.runs`` for that experiment) gets App. C.1
    (``figC1_<name>``, exponents over training) and C.2 (``figC2_<name>``, subspace stability).
    Perturbed ensembles (``references``: run -> label, with the ``ensembles`` config) give
    ``fig3a`` (all references) and per reference ``fig3b_<label>``, ``figC3_<label>``,
    ``figC4_<label>`` and ``figC5_<label>``.
    """
    out: list[Figure] = []
    for name, members in groups.items():
        out.append(_figure(name, "curves", name, members, runs))
        out.append(_figure(f"{name}_validation", "validation", name, members, runs))
        spectral = [r for r in members if runs[r].needs_spectrum]
        if spectral:
            out.append(_figure(f"figB2_{name}", "spectrum", name, spectral, runs))
        tangent = lyapunov.get(name, [])
        if tangent:
            out.append(_figure(f"figC1_{name}", "exponents", name, tangent, runs))
            out.append(_figure(f"figC2_{name}", "subspaces", name, tangent, runs))
    if references:
        eps = ("--eps", repr(float(ensembles["main_eps"])))
        note = f" Perturbations ε ∈ {{{', '.join(f'{e:g}' for e in ensembles['eps'])}}}"
        note += f" ({', '.join(ensembles['dtypes'])}); main ε = {ensembles['main_eps']:g}."
        refs = list(references)
        exps = ", ".join(sorted({references[r] for r in refs}))
        out.append(_figure("fig3a", "divergence", exps, refs, runs, eps, note))
        for ref, label in references.items():
            for prefix, kind in (
                ("fig3b", "fit"),
                ("figC3", "sweep"),
                ("figC4", "precision"),
                ("figC5", "bounds"),
            ):
                opts = eps if kind in ("fit", "bounds") else ()
                out.append(_figure(f"{prefix}_{label}", kind, label, [ref], runs, opts, note))
    by_name: dict[str, Figure] = {}
    for fig in out:
        if fig.name in by_name:
            raise ValueError(
                f"two figures would be named {fig.name!r} (experiment {fig.experiment!r} and "
                f"{by_name[fig.name].experiment!r}); rename an experiment"
            )
        by_name[fig.name] = fig
    return by_name


# --- perturbed ensembles -------------------------------------------------------------------


def ensemble_references(
    config: dict, runs: dict[str, RunSettings], lyapunov: dict[str, list[str]]
) -> dict[str, str]:
    """Reference run -> short label (for figure names): every Lyapunov run of plain SGD.

    The label is the experiment's name, with the seed (and momentum) appended when the
    experiment has several references."""
    ens = config["ensembles"]
    if not ens["enabled"]:
        return {}
    if ens["main_eps"] not in ens["eps"]:
        raise ValueError(f"ensembles.main_eps: {ens['main_eps']} is not one of ensembles.eps")
    refs: dict[str, str] = {}
    for exp, members in lyapunov.items():
        sgd = [r for r in members if runs[r].variant == "sgd"]
        for r in sgd:
            s = runs[r]
            label = exp if len(sgd) == 1 else f"{exp}_m{s.momentum:g}_s{s.seed}"
            refs.setdefault(r, label)
    return refs


def ensembles_args(config: dict) -> str:
    """The ensemble settings of ``python -m chaosgd.ensembles`` (beside the reference's)."""
    ens = config["ensembles"]
    args = [
        "--eps", *[repr(float(e)) for e in ens["eps"]],
        "--dtypes", *ens["dtypes"],
        "--direction-seed", str(ens["direction_seed"]),
        "--record-every", str(ens["record_every"]),
    ]  # fmt: skip
    return shlex.join(args)


# --- claims ------------------------------------------------------------------------------------


def claims_args(
    groups: dict[str, list[str]],
    lyapunov: dict[str, list[str]],
    references: dict[str, str],
    config: dict,
) -> str:
    """Arguments of ``python -m chaosgd.claims``: the experiments' runs, the Lyapunov runs,
    the ensemble references and the main ε."""
    args = [f"--group={name}={','.join(runs)}" for name, runs in groups.items()]
    args += [f"--lyapunov={name}={','.join(runs)}" for name, runs in lyapunov.items()]
    args += [f"--reference={run}={label}" for run, label in references.items()]
    args += ["--main-eps", repr(float(config["ensembles"]["main_eps"]))]
    return shlex.join(args)


def claims_inputs(
    runs: dict[str, RunSettings], lyapunov: dict[str, list[str]], references: dict[str, str]
) -> list[str]:
    """The result files the claims read."""
    files = [
        f"results/train/{r}/{f}"
        for r in runs
        for f in ("run.json", "steps.parquet", "epochs.parquet")
    ]
    files += [f"results/lyapunov/{r}/exponents.parquet" for rs in lyapunov.values() for r in rs]
    for r in references:
        files += [f"results/ensembles/{r}/distances.parquet", f"results/fits/{r}/fits.parquet"]
    return sorted(set(files))


def config_name(configfiles, basedir) -> str:
    """The config files a run used, relative to the workflow where they live in it."""
    names = []
    for f in configfiles or []:
        path = os.path.abspath(str(f))
        rel = os.path.relpath(path, str(basedir))
        names.append(rel if not rel.startswith("..") else path)
    return " ".join(names) or "config/config.yaml"
