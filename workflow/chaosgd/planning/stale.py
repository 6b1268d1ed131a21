"""Stale outputs: what lies under ``results/`` and ``logs/`` that the config no longer makes.

A run, experiment, ensemble reference or dataset removed from the config (or renamed) leaves its
folders, figures and logs beside the current ones, where nothing tells them apart. The planner
knows what the config makes in each per-item folder (``results/train/<run>/``,
``results/figures/<figure>.png``, ``logs/figures/<figure>.log``, ...), so anything else there is
stale. The report stage writes the list (``results/report/stale.txt``) and
``python -m chaosgd.tools.stale --move`` moves the stale entries to ``results/stale/<UTC time>/``
(never deletes them). The folders of single outputs (``results/report/``, ``results/claims/``)
hold the same files for every config and are not looked at. Torch-free, like all of planning.
"""

from __future__ import annotations

from pathlib import Path

from chaosgd.planning import plan
from chaosgd.planning.tables import DISTANCES, EXPONENTS, FITS, RESULTS, STEPS

LOGS = "logs"
# results/stale/: where chaosgd.tools.stale moves stale outputs; not a stage folder, so that
# neither a rule nor an archive export (chaosgd.tools.archive) takes it for one
STALE = "stale"
# the report stage's listing, under results/ (the report_runs rule's output)
LISTING = "report/stale.txt"


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


def listing(stale: list[Path], config_name: str, results: str | Path = RESULTS) -> str:
    """The stale entries, one path a line, after comment lines (``#``) saying what they are and
    how to move them away: ``results/report/stale.txt`` and the tool's output."""
    if not stale:
        return (
            f"# Nothing stale: every run, reference, figure and dataset under {results}/ and "
            f"{LOGS}/ is one that {config_name} makes.\n"
        )
    head = [
        f"# {len(stale)} outputs that {config_name} no longer makes: of runs, experiments, "
        "ensemble references or datasets",
        "# removed from it or renamed. Nothing was changed; to move them (nothing is deleted) "
        f"to {Path(results) / STALE}/<UTC time>/:",
        f"#   {move_command(config_name)}",
    ]
    return "\n".join(head + [shown(p) for p in stale]) + "\n"
