"""Stale outputs: what lies under ``results/`` and ``logs/`` that the config no longer makes.

A run, experiment, ensemble reference or dataset removed from the config (or renamed) leaves its
folders, figures and logs beside the current ones, where nothing tells them apart. The planner
knows what the config makes in each per-item folder (``results/train/<run>/``,
``results/figures/<figure>.png``, ``logs/figures/<figure>.log``, ...), so anything else there is
stale. The report stage writes the list (``results/report/stale.txt``) and
``python -m chaosgd.tools.stale --move`` moves the stale entries to ``results/stale/<UTC time>/``
(never deletes them). The folders of single outputs (``results/report/``, ``results/claims/``)
hold the same files for every config and are not looked at. Torch-free, like all of planning.

A planned run's folder is stale too when its ``run.json`` records other settings than the config
plans for it, and so is a reference's ensembles folder when its ``ensemble.json`` records other
ensemble settings (:func:`differing_settings`): Snakemake reruns a job whose params changed only
if it has its own record of that job, so results that arrived without one (an imported archive
made before archives carried those records, a copied ``results/``) would pass for the config's.
The stages after them (fits, figures, claims, report) take no setting that shapes a number of
their own beyond what these record, and are remade from them. The Snakefile refuses to plan over such runs
(:func:`refuse_other_settings`) unless Snakemake made them itself (:func:`made_by_snakemake`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from chaosgd.planning import plan
from chaosgd.planning.run_settings import LEGACY, UNTRACKED, RunSettings
from chaosgd.planning.schedule import anchor_steps, readout_steps, train_steps
from chaosgd.planning.tables import DISTANCES, EXPONENTS, FITS, RESULTS, STEPS

LOGS = "logs"
# a setting a record lacks (and that was not added later, LEGACY) equals no configured value
_ABSENT = object()
# results/stale/: where chaosgd.tools.stale moves stale outputs; not a stage folder, so that
# neither a rule nor an archive export (chaosgd.tools.archive) takes it for one
STALE = "stale"
# the folders of single outputs made from every run, under results/: the report's and the claims'
REPORT, CLAIMS = "report", "claims"
# the report stage's listing, under results/ (the report_runs rule's output)
LISTING = f"{REPORT}/stale.txt"
# a run's settings, in results/train/<run>/ (chaosgd.runs.run_outputs.OUTPUT_FILES)
RUN_INFO = "run.json"
# an ensemble's settings and its reference's, in results/ensembles/<run>/ (chaosgd.ensembles)
ENSEMBLE_INFO = "ensemble.json"
# Snakemake's records of the outputs it made, one file per output (snakemake.persistence.file),
# relative to the working directory as Snakemake keeps them
METADATA = ".snakemake/metadata"
# Snakemake compares the params of records of this format or later only
# (snakemake.persistence.PersistenceBase.params_changed): an older record reruns nothing
PARAMS_RECORD_VERSION = 6


def planned(
    config: dict,
    runs: dict,
    lyapunov: dict[str, list[str]],
    references: dict[str, str],
    figures: dict,
) -> dict[str, list[str]]:
    """The names of the items the config makes in each per-item folder, keyed by the folder
    (``results/train``, ``logs/figures``, ...): a run, reference, figure or dataset, whose
    outputs are a folder ``<name>/`` or files ``<name>.<ext>`` there. The arguments are the
    planner's (:func:`chaosgd.planning.plan.plan_runs`, ``ensemble_references``, ``figures``)."""
    lyap = {r for rs in lyapunov.values() for r in rs}
    items = {
        # datasets_all prepares every configured dataset, the runs those they use
        "datasets": set(config["datasets"]) | {s.dataset for s in runs.values()},
        STEPS.stage: set(runs),
        EXPONENTS.stage: lyap,
        DISTANCES.stage: set(references),
        FITS.stage: set(references),
        "figures": set(figures),
    }
    out = {f"{RESULTS}/{stage}": set(names) for stage, names in items.items()}
    out.update({f"{LOGS}/{stage}": set(names) for stage, names in items.items()})
    # the lyapunov stage trains its runs (writing results/train/<run>/ too) and logs them there
    out[f"{LOGS}/{STEPS.stage}"] = set(runs) - lyap
    # a download cache put inside a stage folder holds the user's downloads, not an output
    cache = Path(config["download_cache"]).parts
    if len(cache) > 2 and f"{cache[0]}/{cache[1]}" in out:
        out[f"{cache[0]}/{cache[1]}"].add(cache[2])
    return {folder: sorted(names) for folder, names in sorted(out.items())}


def planned_by_config(config: dict) -> dict[str, list[str]]:
    """:func:`planned` for a validated config, planned as the Snakefile plans it."""
    runs, groups, lyapunov = plan.plan_runs(config)
    references = plan.ensemble_references(config, runs, lyapunov)
    figures = plan.figures(runs, groups, lyapunov, references, config["ensembles"])
    return planned(config, runs, lyapunov, references, figures)


def find_stale(
    planned_items: dict[str, list[str]], results: str | Path = RESULTS, logs: str | Path = LOGS
) -> list[Path]:
    """The entries of the planned folders under ``results`` and ``logs`` that no planned item
    names, in folder order. A folder entry is an item's when named after it, a file when its
    name less its last suffix is (a label such as ``fig3b_x_m0.9_s1`` holds dots)."""
    roots = {RESULTS: Path(results), LOGS: Path(logs)}
    found = []
    for key, names in planned_items.items():
        root, stage = key.split("/", 1)
        folder = roots[root] / stage
        if not folder.is_dir():
            continue
        keep = set(names)
        for entry in sorted(folder.iterdir()):
            # hidden: a job's temporary files (chaosgd.runs.artifacts.atomic_path), still written
            if entry.name.startswith("."):
                continue
            name = entry.name if entry.is_dir() else entry.name.rsplit(".", 1)[0]
            if name not in keep:
                found.append(entry)
    return found


def shown(path: Path) -> str:
    """A listed path, with a slash after a folder's name."""
    return f"{path}/" if path.is_dir() else str(path)


def move_command(config_name: str) -> str:
    """The command that moves what the config ``config_name`` (its files) no longer makes."""
    files = f" --configfile {config_name}" if config_name else ""
    return f"python -m chaosgd.tools.stale{files} --move"


class Difference(NamedTuple):
    """A setting that a planned run's ``run.json`` (or a reference's ``ensemble.json``) records
    otherwise than the config plans it: the folder (``results/train/<run>``,
    ``results/ensembles/<run>``), the setting (a field of :class:`RunSettings`, ``lyapunov.<key>``
    of a Lyapunov run's ``lyapunov`` block, ``ensembles.<key>``), the recorded value (None: not
    recorded) and the configured one."""

    folder: Path
    setting: str
    recorded: Any
    configured: Any


def lyapunov_recorded(config: dict, settings: RunSettings) -> dict[str, Any]:
    """What a Lyapunov run's ``run.json`` records of the config's ``lyapunov`` section
    (``chaosgd.lyapunov``): the exact readouts' steps, which stand for ``readouts``,
    ``early_readouts`` and ``anchors``, the re-orthonormalization and λ1 cadences, and
    ``topk`` (a block without it is the exact map's, :data:`LYAPUNOV_LEGACY`)."""
    lyap, total = config["lyapunov"], train_steps(settings)
    anchors = anchor_steps(lyap["anchors"], total)
    return {
        "readout_steps": readout_steps(total, lyap["readouts"], lyap["early_readouts"], anchors),
        "reorth_every": lyap["reorth_every"],
        "lambda1_every": lyap["lambda1_every"],
        "topk": lyap["topk"],
    }


# what a run.json's lyapunov block from before a setting existed stands for: the exact map
LYAPUNOV_LEGACY = {"topk": 0}


def run_differences(
    folder: Path, info: dict, settings: RunSettings, lyapunov: dict | None = None
) -> list[Difference]:
    """How the ``run.json`` content ``info`` of the run in ``folder`` differs from its planned
    ``settings`` (but in :data:`UNTRACKED`, which cannot change a result) and, for a Lyapunov
    run, from ``lyapunov`` (:func:`lyapunov_recorded`)."""
    recorded = info.get("settings")
    recorded = recorded if isinstance(recorded, dict) else {}
    found = [
        Difference(folder, key, recorded.get(key), value)
        for key, value in settings.as_dict().items()
        if key not in UNTRACKED and recorded.get(key, LEGACY.get(key, _ABSENT)) != value
    ]
    result = info.get("result")
    block = result.get("lyapunov") if isinstance(result, dict) else None
    # without the block the run was trained without its tangent map, so the lyapunov stage's
    # outputs are not its: Snakemake reruns the run for them, remaking run.json
    if lyapunov is not None and isinstance(block, dict):
        found += [
            Difference(folder, f"lyapunov.{key}", recorded_value, value)
            for key, value in lyapunov.items()
            if (recorded_value := block.get(key, LYAPUNOV_LEGACY.get(key))) != value
        ]
    return found


def ensemble_recorded(config: dict, settings: RunSettings) -> dict[str, Any]:
    """What a reference's ``ensemble.json`` records of the config's ``ensembles`` section
    (``chaosgd.ensembles``; an empty ``dtypes`` trains in the run's own dtype). ``main_eps``
    and ``threads`` shape no number of the stage: the claims read ``main_eps`` themselves."""
    ens = config["ensembles"]
    return {
        "eps": [float(e) for e in ens["eps"]],
        "dtypes": list(ens["dtypes"]) or [settings.dtype],
        "direction_seed": ens["direction_seed"],
        "record_every": ens["record_every"],
    }


def ensemble_differences(
    folder: Path, info: dict, settings: RunSettings, ensembles: dict
) -> list[Difference]:
    """How the ``ensemble.json`` content ``info`` in ``folder`` differs from the reference's
    planned ``settings`` (its ``settings`` block, as :func:`run_differences` reads a run's) and
    from ``ensembles`` (:func:`ensemble_recorded`)."""
    found = run_differences(folder, info, settings)
    found += [
        Difference(folder, f"ensembles.{key}", info.get(key), value)
        for key, value in ensembles.items()
        if info.get(key) != value
    ]
    return found


def read_recorded(path: Path) -> dict | None:
    """A ``run.json`` as a dict, or None when it cannot be read as one (the stages that read it
    name what is wrong; a damaged file is not a question of settings).

    Read here rather than with ``chaosgd.runs.artifacts.read_run_info``, which imports torch
    (its tensor readers): the Snakefile calls this to plan, and planning stays torch-free."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError both are
        return None
    return info if isinstance(info, dict) else None


def record_file(folder: Path) -> str:
    """The record of settings in a :class:`Difference`'s folder: a run's ``run.json``, an
    ensemble's ``ensemble.json``."""
    return ENSEMBLE_INFO if Path(folder).parent.name == DISTANCES.stage else RUN_INFO


def recorded_differences(
    config: dict,
    runs: dict[str, RunSettings],
    lyapunov: dict[str, list[str]],
    read: Callable[[Path], dict | None],
    results: str | Path = RESULTS,
) -> list[Difference]:
    """Every setting that a planned run's ``run.json`` or a planned reference's
    ``ensemble.json`` under ``results`` records otherwise than the config plans it, by folder.
    ``read(path)`` gives a record's content, or None where there is none or it cannot be read
    (a file on disk, a member of an archive). The other arguments are the planner's
    (:func:`chaosgd.planning.plan.plan_runs`)."""
    lyap = {r for rs in lyapunov.values() for r in rs}
    found = []
    for rid in sorted(runs):
        folder = Path(results) / STEPS.stage / rid
        info = read(folder / RUN_INFO)
        if info is not None:
            expected = lyapunov_recorded(config, runs[rid]) if rid in lyap else None
            found += run_differences(folder, info, runs[rid], expected)
    for rid in sorted(plan.ensemble_references(config, runs, lyapunov)):
        folder = Path(results) / DISTANCES.stage / rid
        info = read(folder / ENSEMBLE_INFO)
        if info is not None:
            expected = ensemble_recorded(config, runs[rid])
            found += ensemble_differences(folder, info, runs[rid], expected)
    return found


def differing_settings(
    config: dict,
    runs: dict[str, RunSettings],
    lyapunov: dict[str, list[str]],
    results: str | Path = RESULTS,
) -> list[Difference]:
    """:func:`recorded_differences` of the records on disk under ``results``."""
    return recorded_differences(config, runs, lyapunov, read_recorded, results)


def differing_by_config(config: dict, results: str | Path = RESULTS) -> list[Difference]:
    """:func:`differing_settings` for a validated config, planned as the Snakefile plans it."""
    runs, _, lyapunov = plan.plan_runs(config)
    return differing_settings(config, runs, lyapunov, results)


def _value(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return value
    return json.dumps(value)  # true/false, 0.01, [1, 2, 6]: as the config spells them


def described(differences: list[Difference], here: str = "here") -> list[str]:
    """One line per run folder: ``<folder>/: lr 0.01 here, 0.02 in the config; ...``."""
    by_folder: dict[Path, list[Difference]] = {}
    for d in differences:
        by_folder.setdefault(d.folder, []).append(d)
    return [
        f"{folder.as_posix()}/: "
        + "; ".join(
            f"{d.setting} {_value(d.recorded)} {here}, {_value(d.configured)} in the config"
            for d in diffs
        )
        for folder, diffs in by_folder.items()
    ]


# the per-run stage folders that a record's settings shape: a run's settings shape all of them,
# an ensemble's its ensembles and its fits
SHAPED = {
    STEPS.stage: (STEPS.stage, EXPONENTS.stage, DISTANCES.stage, FITS.stage),
    DISTANCES.stage: (DISTANCES.stage, FITS.stage),
}


def made_from(
    differing: Sequence[Difference], figures: dict, results: str | Path = RESULTS
) -> list[Path]:
    """What lies under ``results`` that the records of ``differing`` made or that was made from
    them: the per-run folders their settings shape (:data:`SHAPED`: a run's in ``train/``,
    ``lyapunov/``, ``ensembles/`` and ``fits/``; an ensemble's in ``ensembles/`` and ``fits/``),
    the files of the ``figures`` (the planner's) drawn from those folders, and the report's and
    the claims' files, which read every run. Snakemake keeps an output whose inputs are
    missing (as it does for a removed temporary file), so all of these go with them, and the
    next run remakes them with the config's settings."""
    if not differing:
        return []
    root = Path(results)
    shaped = {(stage, d.folder.name) for d in differing for stage in SHAPED[d.folder.parent.name]}
    folders = sorted(root / stage / rid for stage, rid in shaped if (root / stage / rid).is_dir())
    # the figures name their inputs as the rules do, under RESULTS whatever ``results`` is
    prefixes = tuple(f"{RESULTS}/{stage}/{rid}/" for stage, rid in shaped)
    drawn = {
        name
        for name, figure in figures.items()
        if any(str(path).startswith(prefixes) for path in figure.inputs)
    }
    found = list(folders)
    for folder, keep in (("figures", drawn), (REPORT, None), (CLAIMS, None)):
        if (root / folder).is_dir():
            found += [
                p
                for p in sorted((root / folder).iterdir())
                if not p.name.startswith(".") and (keep is None or p.name.rsplit(".", 1)[0] in keep)
            ]
    return found


def survey(
    config: dict, results: str | Path = RESULTS, logs: str | Path = LOGS
) -> tuple[list[Path], list[Difference], list[Path]]:
    """For a validated config: the stale entries (:func:`find_stale`), the settings of planned
    runs recorded otherwise (:func:`differing_settings`), and everything to move away, the
    stale entries first, then what those runs made or was made from them (:func:`made_from`)."""
    runs, groups, lyapunov = plan.plan_runs(config)
    references = plan.ensemble_references(config, runs, lyapunov)
    figures = plan.figures(runs, groups, lyapunov, references, config["ensembles"])
    stale = find_stale(planned(config, runs, lyapunov, references, figures), results, logs)
    differing = differing_settings(config, runs, lyapunov, results)
    made = [p for p in made_from(differing, figures, results) if p not in stale]
    return stale, differing, stale + made


def made_by_snakemake(output: str, metadata: str | Path = METADATA) -> bool:
    """Whether Snakemake keeps a record under ``metadata`` (``.snakemake/metadata``) of making
    the file ``output`` (its path as the rule names it) that it compares a job's params with,
    so that it reruns the job itself when the config changed its settings.

    The record's path is Snakemake's own (``FilePersistence._record_path``: the output's urlsafe
    base64, split into folders at the file system's name length), not re-derived here, and a
    test runs Snakemake to hold this function to its layout: a change there fails loudly rather
    than taking every run for one Snakemake did not make."""
    folder = Path(metadata)
    if not folder.is_dir():
        return False
    try:
        from snakemake.persistence.file import FilePersistence

        # its __init__ makes the .snakemake/ folders: only the path logic is wanted
        store = FilePersistence.__new__(FilePersistence)
        store._max_len = None
        path = Path(store._record_path(os.fspath(folder), output))
    except (ImportError, AttributeError, TypeError) as exc:
        raise RuntimeError(
            "chaosgd.planning.stale.made_by_snakemake: the installed Snakemake keeps its records "
            f"otherwise than this code expects ({type(exc).__name__}: {exc}); install the "
            "version envs/chaosgd.yaml pins, or adapt the function to the new layout "
            "(tests/unit/planning/test_stale_settings.py checks it)"
        ) from exc
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):  # none, or one being written: Snakemake ignores it too
        return False
    return (
        isinstance(record, dict)
        and isinstance(record.get("record_format_version"), int)
        and record["record_format_version"] >= PARAMS_RECORD_VERSION
        and record.get("params") is not None
    )


class OtherSettings(ValueError):
    """Planned runs under ``results/`` were made with other settings than the config plans and
    Snakemake did not make them, so it would take them as up to date."""


def refuse_other_settings(
    config: dict,
    runs: dict[str, RunSettings],
    lyapunov: dict[str, list[str]],
    config_name: str,
    metadata: str | Path = METADATA,
    results: str | Path = RESULTS,
    overrides: bool = False,
) -> None:
    """Raise :class:`OtherSettings` naming each planned run (folder, setting, both values) whose
    ``run.json`` records other settings than the config plans and that Snakemake did not make
    (:func:`made_by_snakemake`; one it made it reruns itself), with the command that moves them
    aside. ``config_name``: the config files, for that command; ``overrides``: whether the
    workflow was given ``--config`` values, which that command cannot read."""
    foreign = [
        d
        for d in differing_settings(config, runs, lyapunov, results)
        if not made_by_snakemake(f"{d.folder.as_posix()}/{record_file(d.folder)}", metadata)
    ]
    if not foreign:
        return
    lines = described(foreign)
    extra = (
        " (it reads config files only: put the --config values into a YAML file and add it "
        "after the others)"
        if overrides
        else ""
    )
    raise OtherSettings(
        f"{len(lines)} run(s) under {results}/ were made with other settings than "
        f"{config_name} asks for, and Snakemake has no record of making them (an imported "
        "archive or a copied results folder), so it would take them as up to date:\n"
        + "".join(f"  made with other settings: {line}\n" for line in lines)
        + "Move them aside (nothing is deleted) and rerun, which remakes them with the config's "
        f"settings{extra}:\n  {move_command(config_name)}"
    )


def listing(
    stale: list[Path],
    config_name: str,
    results: str | Path = RESULTS,
    differing: Sequence[Difference] = (),
    made: Sequence[Path] = (),
) -> str:
    """The stale entries, one path a line, after comment lines (``#``) saying what they are and
    how to move them away; then a comment line per run made with other settings than the
    config's (:func:`differing_settings`) naming them, and the paths of ``made``, what those
    runs made or was made from them (:func:`made_from`): ``results/report/stale.txt`` and the
    tool's output."""
    if not stale and not differing:
        return (
            f"# Nothing stale: every run, reference, figure and dataset under {results}/ and "
            f"{LOGS}/ is one that {config_name} makes, with its settings.\n"
        )
    head = []
    if stale:
        head.append(
            f"# {len(stale)} outputs that {config_name} no longer makes: of runs, experiments, "
            "ensemble references or datasets"
        )
        head.append("# removed from it or renamed.")
    runs = described(list(differing))
    if runs:
        head.append(
            f"# {len(runs)} runs made with other settings than {config_name} asks for (an "
            "imported archive, a copied results folder), and what was made from them: their "
            "results are not the config's."
        )
    head += [
        "# Nothing was changed; to move them (nothing is deleted) "
        f"to {Path(results) / STALE}/<UTC time>/:",
        f"#   {move_command(config_name)}",
    ]
    body = [shown(p) for p in stale]
    body += [f"# made with other settings: {line}" for line in runs]
    body += [shown(p) for p in made if p not in stale]
    return "\n".join(head + body) + "\n"
