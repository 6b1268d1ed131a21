"""Turn the validated config into jobs: the command-line arguments of each stage.

Imported by the Snakefile (``workflow/rules/common.smk``); pure functions of the config dict so
that the planning is testable without Snakemake.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex

from chaosgd.planning.feasibility import (
    TANGENT,
    check_anchors,
    check_curvature,
    check_figure_name_lengths,
    check_fit_points,
    check_run_id_length,
    check_topk,
    run_length,
)
from chaosgd.planning.job_costs import JobResources
from chaosgd.planning.run_settings import (
    PER_DATASET,
    ROLES,
    RUN_ID_SUFFIX,
    TOP_LEVEL,
    UNTRACKED,
    RunSettings,
    Variant,
)
from chaosgd.planning.schedule import train_steps
from chaosgd.planning.tables import (
    BOUNDS,
    DISTANCES,
    EPOCHS,
    EXPONENTS,
    FITS,
    MEMBERS,
    RESULTS,
    STEPS,
    SUBSPACES,
)
from chaosgd.planning.vocab import ARCHITECTURES, FIGURE_KINDS


class Untracked(str):
    """Command-line arguments that cannot change a result: where verified inputs are read from,
    how often a checkpoint is written, the device.

    A rule passes them as a param of this type, returned by a function of the wildcards (a
    plain value would be expanded as a wildcard pattern into a plain ``str``). Snakemake
    formats it into the command as the string it is, but records a param for its rerun trigger
    by ``repr``, which is the same for every value here: changing these settings reruns no
    job. (The output cache hashes the
    string itself, so it still keys on them.) ``tests/workflow/test_pipeline.py`` checks both
    sides: such a change reruns nothing, a setting that shapes a result exactly the jobs it
    shapes.
    """

    __slots__ = ()

    @classmethod
    def of(cls, args) -> Untracked:
        """The arguments ``args``, shell-quoted."""
        return cls(shlex.join(args))

    def __repr__(self) -> str:
        return "Untracked()"


def _dataset_source(config: dict, dataset: str) -> dict:
    try:
        return config["datasets"][dataset]
    except KeyError:
        raise ValueError(
            f"dataset {dataset!r} is not configured under 'datasets' "
            f"(configured: {sorted(config['datasets'])})"
        ) from None


def datasets_args(config: dict, dataset: str) -> str:
    """Arguments of ``python -m chaosgd.datasets`` for one configured dataset that shape the
    prepared data: the checksums the files must have, the resize and the images' side."""
    src = _dataset_source(config, dataset)
    args = []
    for name, md5 in sorted(src["md5"].items()):
        args += ["--md5", f"{name}={md5}"]
    args += ["--resize", src["resize"], "--image-side", str(src["image_side"])]
    return shlex.join(args)


def datasets_sources(config: dict, dataset: str) -> Untracked:
    """Where ``python -m chaosgd.datasets`` finds the files (the cache, a local folder, whether
    and from where to download): every file is checked against its checksum, so these decide
    whether the stage finds the data, never what it prepares."""
    src = _dataset_source(config, dataset)
    args = ["--cache-dir", f"{config['download_cache']}/{dataset}"]
    if src["local_dir"]:
        args += ["--local-dir", src["local_dir"]]
    if not src["download"]:
        args.append("--no-download")
    for url in src["mirrors"]:
        args += ["--mirror", url]
    return Untracked.of(args)


# --- training runs ----------------------------------------------------------------------

# experiment keys that override training settings when not null; those that change the
# trajectory are spelled in the run id, those that change only what is recorded are merged
OVERRIDES = tuple(k for k, role in ROLES.items() if role in ("override", "recorded"))
SPELLED = tuple(k for k, role in ROLES.items() if role == "override")
RECORDED = tuple(k for k, role in ROLES.items() if role == "recorded")


def _overrides(exp: dict, training: dict) -> dict:
    """The experiment's training-setting overrides that differ from the training section's."""
    return {k: exp[k] for k in SPELLED if exp.get(k) is not None and exp[k] != training[k]}


def run_id(
    exp: dict, variant: str, onset: int, momentum: float, seed: int, training: dict | None = None
) -> str:
    """Readable run name, e.g. ``usps_mlp-relu20_cgd-chaotic_on2000_m0_s1``.

    It spells every setting that may differ between two runs of one config
    (:data:`chaosgd.planning.run_settings.ROLES`): the experiment's own keys and, given the ``training``
    section, each training setting the experiment overrides with another value (``_lr0.01``).
    An architecture that takes a depth has it after its name, as the ResNet family names its
    members (``fmnist_resnet20-relu16_sgd_m0_s0``); the default depth is spelled too, so that
    a run's name says which network it trained whatever the default becomes.
    """
    arch = exp["model"]
    spec = ARCHITECTURES[arch]
    if spec.uses_depth:
        arch += str(spec.depth if exp.get("depth") is None else exp["depth"])
    if spec.uses_hidden:
        arch += f"-{exp['activation']}{exp['hidden']}"
    else:
        arch += f"-{exp['activation']}"
    parts = [exp["dataset"], arch, variant]
    if onset:
        parts.append(f"on{onset}")
    parts += [f"m{momentum:g}", f"s{seed}"]
    for key, value in _overrides(exp, training or {}).items() if training else ():
        parts.append(RUN_ID_SUFFIX[key](value))
    if exp.get("tag"):
        parts.append(exp["tag"])
    return "_".join(parts)


def _settings(config: dict, exp: dict, **run) -> RunSettings:
    """The run's settings: ``run``'s values, the experiment's, its overrides, the shared ones."""
    training = config["training"]
    values = dict(run)
    for name, role in ROLES.items():
        if role == "identity" and name not in values:
            values[name] = exp[name]
        elif role in ("override", "recorded"):
            values[name] = exp[name] if exp.get(name) is not None else training[name]
        elif role == "shared" and name in PER_DATASET:
            values[name] = _dataset_source(config, exp["dataset"])[name]
        elif role == "shared":
            values[name] = config[name] if name in TOP_LEVEL else training[name]
    types = {f.name: f.type for f in dataclasses.fields(RunSettings)}
    for name, kind in types.items():
        if kind == "float":
            values[name] = float(values[name])
    return RunSettings(**values)


def expand_runs(config: dict) -> tuple[dict[str, RunSettings], dict[str, list[str]]]:
    """All runs of the config's experiments, and each experiment's runs (in config order).

    A run shared by several experiments (e.g. one SGD baseline) appears once; two experiments
    that define the same run name with different settings are an error, and so is a CGD onset
    at or past the end of its run (it would never prune: a run identical to SGD, mislabelled),
    and a run id too long for a file name (:data:`NAME_MAX`).
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
        groups[name] = []
        for variant in exp["variants"]:
            is_cgd = Variant.parse(variant).optimizer == "cgd"
            for onset in exp["onsets"] if is_cgd else [0]:
                for momentum in exp["momentum"]:
                    for seed in exp["seeds"]:
                        rid = run_id(exp, variant, onset, momentum, seed, training)
                        settings = _settings(
                            config,
                            exp,
                            run_id=rid,
                            variant=variant,
                            onset=onset,
                            momentum=momentum,
                            seed=seed,
                        )
                        check_run_id_length(name, exp, rid)
                        if settings.needs_spectrum:
                            why = "CGD" if is_cgd else "spectrum: true"
                            key = "variants" if is_cgd else "spectrum"
                            check_curvature(settings, f"experiments[{name}].{key}", why)
                        if is_cgd and onset >= train_steps(settings):
                            raise ValueError(
                                f"experiments[{name}].onsets: onset {onset} is at or past the end "
                                f"of run {rid}, which has {run_length(settings)}; CGD would never "
                                f"prune. Use an onset below {train_steps(settings)}"
                            )
                        if rid in runs:
                            # a shared run records what any of its experiments asks of it
                            merged = {
                                k: getattr(runs[rid], k) or getattr(settings, k) for k in RECORDED
                            }
                            settings = dataclasses.replace(settings, **merged)
                            runs[rid] = dataclasses.replace(runs[rid], **merged)
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
    """Arguments of ``python -m chaosgd.train`` for one run: the settings that shape it."""
    return shlex.join(settings.to_args(skip=UNTRACKED))


def untracked_args(settings: RunSettings) -> Untracked:
    """The run's settings that cannot change its results (checkpoint cadence, device)."""
    return Untracked.of(settings.to_args(only=UNTRACKED))


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
    chosen_by: dict[str, str] = {}  # run -> the first lyapunov.runs entry that chose it
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
                chosen_by.setdefault(m.run_id, where)
    every = {r for chosen in selected.values() for r in chosen}
    readouts = config["lyapunov"]["readouts"]
    for rid in sorted(every):
        # readouts are distinct steps of the run (chaosgd.planning.schedule.readout_steps)
        if readouts > train_steps(runs[rid]):
            raise ValueError(
                f"lyapunov.readouts: {readouts} readouts, but run {rid} has only "
                f"{run_length(runs[rid])}; use at most {train_steps(runs[rid])}"
            )
    topk = config["lyapunov"]["topk"]
    for exp, chosen in selected.items():
        for rid in chosen:
            if topk:
                check_topk(topk, runs[rid], chosen_by[rid])
            else:
                check_curvature(runs[rid], chosen_by[rid], TANGENT)
            check_anchors(config["lyapunov"], runs[rid], exp, chosen_by[rid])
    if topk:
        # k tangent vectors need Hessian-vector products, not the spectrum
        return runs, selected
    forced = {
        rid: dataclasses.replace(s, spectrum=True) if rid in every else s for rid, s in runs.items()
    }
    return forced, selected


def plan_runs(
    config: dict,
) -> tuple[dict[str, RunSettings], dict[str, list[str]], dict[str, list[str]]]:
    """Every run of the config (with the tangent-map runs' spectrum forced on), each
    experiment's runs, and each experiment's runs that carry a tangent map."""
    runs, groups = expand_runs(config)
    runs, lyapunov = lyapunov_runs(config, runs, groups)
    return runs, groups, lyapunov


def lyapunov_args(config: dict) -> str:
    """The Lyapunov settings of ``python -m chaosgd.lyapunov`` (beside the run's settings)."""
    lyap = config["lyapunov"]
    args = [
        "--readouts", str(lyap["readouts"]),
        "--neutral-tol", repr(float(lyap["neutral_tol"])),
        "--reorth-every", str(lyap["reorth_every"]),
        "--lambda1-every", str(lyap["lambda1_every"]),
        "--quantiles", *[repr(float(q)) for q in lyap["quantiles"]],
        "--early-readouts", str(lyap["early_readouts"]),
        "--anchors", *[str(a) for a in lyap["anchors"]],
    ]  # fmt: skip
    if lyap["topk"]:
        args += ["--topk", str(lyap["topk"])]
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
        """The report's category of the figure's kind."""
        return FIGURE_KINDS[self.kind].category


def describe_runs(runs: list[RunSettings]) -> str:
    """The settings of a set of runs in one sentence (for captions)."""
    first = runs[0]
    spec = ARCHITECTURES[first.model]
    arch = spec.title
    if spec.uses_depth:
        arch += f"-{first.depth} of width {first.hidden}"
    elif spec.uses_hidden:
        arch += f" {first.image_side**2}-{first.hidden}-10"
    values = lambda field: sorted({getattr(r, field) for r in runs})  # noqa: E731
    side = f"{first.image_side}×{first.image_side}"
    text = (
        f"{first.dataset} ({side}), {arch} ({first.activation}), lr {first.lr:g}, batch "
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
    spec = FIGURE_KINDS[kind]
    inputs = tuple(f"{RESULTS}/{f.format(run=r)}" for r in runs for f in spec.files)
    caption = (
        f"{spec.shows} Experiment {experiment}: {describe_runs([settings[r] for r in runs])}"
        f"{note} Reproduces {spec.paper} of the paper. The numbers drawn: "
        f"results/figures/{name}.parquet."
    )
    return Figure(name, kind, experiment, tuple(runs), inputs, caption, options)


def records_spectrum(settings: RunSettings) -> bool:
    """Whether a run records the whole nonzero Hessian spectrum (App. B.2's eigenvalues and
    counts): curvature ``topk`` finds only the k pairs a CGD variant prunes."""
    return settings.needs_spectrum and settings.curvature != "topk"


def figures(
    runs: dict[str, RunSettings],
    groups: dict[str, list[str]],
    lyapunov: dict[str, list[str]],
    references: dict[str, str] | None = None,
    ensembles: dict | None = None,
) -> dict[str, Figure]:
    """Every figure of the config, by name, as :data:`chaosgd.planning.vocab.FIGURE_KINDS` says.

    Each experiment gets the kinds of scope ``experiment`` (its curves, named after it: fig1,
    fig2, figB1_fmnist, ..., and its validation curves); when its runs record the whole Hessian
    spectrum (not curvature ``topk``'s k pairs), those of scope ``spectral`` (App. B.2); when runs of it carry a tangent map
    (selected under ``lyapunov.runs``), those of scope ``tangent`` (App. C.1, C.2). Perturbed
    ensembles (``references``: run -> label, with the ``ensembles`` config) give the kinds of
    scope ``references`` (all references: fig3a) and ``reference`` (each: fig3b, C.3-C.5).
    """
    out: list[Figure] = []
    by_scope: dict[str, list] = {}
    for kind in FIGURE_KINDS.values():
        by_scope.setdefault(kind.scope, []).append(kind)
    for name, members in groups.items():
        scoped = {
            "experiment": members,
            "spectral": [r for r in members if records_spectrum(runs[r])],
            "tangent": lyapunov.get(name, []),
        }
        for scope, chosen in scoped.items():
            for kind in by_scope.get(scope, []) if chosen else []:
                out.append(
                    _figure(kind.figure_name.format(experiment=name), kind.name, name, chosen, runs)
                )
    if references:
        eps = ("--eps", repr(float(ensembles["main_eps"])))
        note = f" Perturbations ε ∈ {{{', '.join(f'{e:g}' for e in ensembles['eps'])}}}"
        note += f" ({', '.join(ensembles['dtypes'])}); main ε = {ensembles['main_eps']:g}."
        refs = list(references)
        exps = ", ".join(sorted({references[r] for r in refs}))
        for kind in by_scope.get("references", []):
            opts = eps if kind.main_eps else ()
            out.append(_figure(kind.figure_name, kind.name, exps, refs, runs, opts, note))
        for ref, label in references.items():
            for kind in by_scope.get("reference", []):
                opts = eps if kind.main_eps else ()
                fig_name = kind.figure_name.format(label=label)
                out.append(_figure(fig_name, kind.name, label, [ref], runs, opts, note))
    check_figure_name_lengths(out, lyapunov)
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
    experiment has several references. Around a top-k map (``lyapunov.topk``) the ensembles
    perturb along the strategies its k leading vectors give
    (:func:`chaosgd.planning.vocab.strategies_for`)."""
    ens = config["ensembles"]
    if not ens["enabled"]:
        return {}
    if ens["main_eps"] not in ens["eps"]:
        raise ValueError(
            f"ensembles.main_eps: {ens['main_eps']} is not one of ensembles.eps ({ens['eps']})"
        )
    refs: dict[str, str] = {}
    for exp, members in lyapunov.items():
        sgd = [r for r in members if runs[r].variant == "sgd"]
        for r in sgd:
            s = runs[r]
            check_fit_points(config, s)
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
    files = [f"{RESULTS}/train/{r}/run.json" for r in runs]
    files += [t.path(r) for r in runs for t in (STEPS, EPOCHS)]
    files += [t.path(r) for rs in lyapunov.values() for r in rs for t in (EXPONENTS, SUBSPACES)]
    files += [t.path(r) for r in references for t in (DISTANCES, MEMBERS, FITS, BOUNDS)]
    return sorted(set(files))


# --- job resources ------------------------------------------------------------------------------


def job_resources(
    config: dict,
    runs: dict[str, RunSettings],
    lyapunov: dict[str, list[str]],
    references: dict[str, str],
    figures: dict[str, Figure],
) -> JobResources:
    """Each job's runtime and memory request (:mod:`chaosgd.planning.job_costs`), for the rules'
    ``resources:``; the figures and claims are sized by the result tables they read.

    The jobs of the runs and references are priced here, while the config is checked: a cost
    the table lacks would otherwise stop the workflow only when Snakemake first asks for that
    job's resources, after the jobs before it ran."""
    resources = JobResources(
        config,
        runs,
        references=references,
        figures={name: fig.inputs for name, fig in figures.items()},
        claims_inputs=claims_inputs(runs, lyapunov, references),
    )
    tangent = {r for chosen in lyapunov.values() for r in chosen}
    for rid in runs:
        resources.request("lyapunov" if rid in tangent else "train", rid)
    for ref in references:
        resources.request("ensembles", ref)
        resources.request("fits", ref)
    return resources


def config_name(configfiles, basedir) -> str:
    """The config files a run used, relative to the workflow where they live in it."""
    names = []
    for f in configfiles or []:
        path = os.path.abspath(str(f))
        rel = os.path.relpath(path, str(basedir))
        names.append(rel if not rel.startswith("..") else path)
    return " ".join(names) or "config/config.yaml"
