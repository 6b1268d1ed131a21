"""What a later stage could not handle, refused while planning: before any job runs.

The config check (:mod:`chaosgd.planning.config`) sees the config alone; these checks need the
planned runs and figures: file names longer than a file system takes, App. C.2 anchors that leave
no later readout, ensembles that record too few distances for a fit. Each names the key and what
to change, so that following the advice works.
"""

from __future__ import annotations

from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.schedule import anchor_steps, readout_steps, record_steps, train_steps
from chaosgd.planning.vocab import ARCHITECTURES, DATASETS, FIGURE_KINDS

# Run ids and figure names become file names, which most file systems cap at 255 bytes. What
# each becomes, as the rules name their outputs and logs (workflow/rules/*.smk): a run's results
# folder and log, a figure's outputs and log. Results are written atomically, through a hidden
# temporary file beside them (chaosgd.runs.artifacts.atomic_path: mkstemp's 8 random letters),
# which is the longest name of all.
NAME_MAX = 255
RUN_FILES = ("{run}", "{run}.log")
FIGURE_FILES = ("{figure}.pdf", "{figure}.png", "{figure}.parquet", "{figure}.log")
ATOMIC = ".{name}.XXXXXXXX.tmp"


def longest_file_name(pattern_names: tuple[str, ...], **name: str) -> str:
    """The longest file name a run id (``run=``) or a figure name (``figure=``) becomes: each of
    ``pattern_names`` filled in, and, for a result file (not a folder, not a log), the
    temporary file it is written through."""
    names = []
    for pattern in pattern_names:
        filled = pattern.format(**name)
        names.append(filled)
        if "." in pattern and not pattern.endswith(".log"):
            names.append(ATOMIC.format(name=filled))
    return max(names, key=lambda n: len(n.encode()))


def run_length(settings: RunSettings) -> str:
    """How a run's length comes about, for messages."""
    n = DATASETS[settings.dataset].train_size
    if settings.train_size:
        n = min(settings.train_size, n)
    return (
        f"{train_steps(settings)} steps ({n} images / batch {settings.batch_size} x "
        f"{settings.epochs} epochs)"
    )


def check_run_id_length(name: str, exp: dict, rid: str) -> None:
    """Refuse a run id (of experiment ``name``) whose files' names exceed :data:`NAME_MAX`."""
    longest = longest_file_name(RUN_FILES, run=rid)
    excess = len(longest.encode()) - NAME_MAX
    if excess <= 0:
        return
    if exp.get("tag"):
        where, fix = f"experiments[{name}].tag", f"shorten the tag by {excess} characters or more"
    else:
        where, fix = f"experiments[{name}]", "use shorter variants, onsets or seeds"
    raise ValueError(
        f"{where}: run id {rid} makes a file name of {len(longest.encode())} bytes ({longest}), "
        f"more than the {NAME_MAX} a file name may have; {fix}"
    )


# what a Lyapunov run needs the spectrum for (chaosgd.planning.plan.lyapunov_runs passes it)
TANGENT = "its tangent map"


def check_curvature(settings: RunSettings, where: str, why: str) -> None:
    """Refuse a run that needs curvature at every step (``why``: CGD, the spectrum setting,
    :data:`TANGENT`; chosen by ``where``) that its curvature method cannot give it.

    ``topk`` (:mod:`chaosgd.engine.topk_curvature`) finds the k eigenpairs a ``top_k`` CGD
    variant prunes, nothing else: not CGD's ``all`` or ``random_k`` sets (the whole set), not
    the spectrum's counts, not the exact tangent map. The other methods form the whole spectrum,
    which an architecture without affordable exact curvature
    (:attr:`chaosgd.planning.vocab.Architecture.exact_curvature`) cannot pay for: its first
    step would form an N×N Hessian."""
    arch = ARCHITECTURES[settings.model]
    variant = settings.parsed_variant
    n = arch.n_params(settings.hidden, side=settings.image_side, depth=settings.depth)
    rid = settings.run_id
    if settings.curvature == "topk":
        if why == TANGENT:
            raise ValueError(
                f"{where}: run {rid} has curvature topk, but the Lyapunov stage's tangent map "
                "takes every step's whole spectrum; set lyapunov.topk to follow the k leading "
                "exponents matrix-free, or choose runs of curvature auto, dense or lowrank (the "
                "paper's networks) for lyapunov.runs"
            )
        if variant.optimizer == "sgd":
            raise ValueError(
                f"{where}: run {rid} (plain SGD, spectrum: true) has curvature topk, which finds "
                "the eigenpairs a top-k CGD variant prunes, not the spectrum's counts (App. B.2): "
                "set spectrum: false for it"
            )
        if variant.selection != "top_k":
            raise ValueError(
                f"{where}: variant {variant.name} of run {rid} prunes "
                f"{'all' if variant.selection == 'all' else 'k random'} eigenpairs of its set, "
                "which takes the whole set; curvature topk finds the k largest only: use "
                f"cgd-{variant.prune_set}-top<k>, or another curvature method"
            )
        return
    if arch.exact_curvature:
        return
    raise ValueError(
        f"{where}: run {rid} ({why}) needs the whole Hessian spectrum at every step, "
        f"which the {arch.title} ({n} parameters) cannot afford (a dense {n}x{n} Hessian); "
        f"train the {arch.title} with plain SGD and spectrum: false, or prune the k largest "
        "eigenpairs of a set (cgd-<set>-top<k>) with curvature: topk, or use the mlp or cnn"
    )


def check_topk(topk: int, settings: RunSettings, chosen_by: str) -> None:
    """Refuse ``lyapunov.topk`` larger than the parameters of a Lyapunov run (``chosen_by``:
    the ``lyapunov.runs`` entry that selected it): there are only N exponents."""
    arch = ARCHITECTURES[settings.model]
    n = arch.n_params(settings.hidden, side=settings.image_side, depth=settings.depth)
    if topk > n:
        raise ValueError(
            f"lyapunov.topk: {topk} exponents, but run {settings.run_id} ({chosen_by}) has only "
            f"{n} parameters; use at most {n} (or 0: all of them, exactly)"
        )


def check_anchors(lyap: dict, settings: RunSettings, experiment: str, chosen_by: str) -> None:
    """Refuse a Lyapunov run whose readouts all come at or before its last anchor t₀ (App.
    C.2): its subspaces table would have no row, so figC2 would fail on it, and claims 9 and 16
    could not be checked."""
    total = train_steps(settings)
    rid = settings.run_id
    if total < 2:
        raise ValueError(
            f"{chosen_by}: run {rid} has only {run_length(settings)}; App. C.2 compares the "
            "readouts after a reference time t0 >= 1 with the one at t0, so a run with a tangent "
            "map needs 2 steps or more: make it longer (epochs, train_size, batch_size)"
        )
    anchors = anchor_steps(lyap["anchors"], total)
    last = max(readout_steps(total, lyap["readouts"], lyap["early_readouts"], anchors))
    if not any(a < last for a in anchors):
        raise ValueError(
            f"lyapunov.anchors: {lyap['anchors']} leaves no reference time t0 before the last "
            f"readout (step {last}) of run {rid}, which has {run_length(settings)} (anchors are "
            f"clipped to the run); App. C.2 would have nothing to compare (figC2_{experiment} "
            f"fails, claims 9 and 16 are not run). Add an anchor below {total}"
        )


def check_figure_name_lengths(out: list, lyapunov: dict[str, list[str]]) -> None:
    """Refuse an experiment name that makes a figure's file name longer than a file system
    takes, with the length it must be cut to (over all of its figures: cutting it for the
    first one found could still leave another too long)."""
    # the experiment each reference's label comes from (ensemble_references: the first)
    owner = {r: exp for exp, rs in reversed(lyapunov.items()) for r in rs}
    worst: dict[str, tuple[int, str]] = {}  # experiment -> (bytes over NAME_MAX, file name)
    for fig in out:
        scope = FIGURE_KINDS[fig.kind].scope
        exp = owner[fig.runs[0]] if scope in ("reference", "references") else fig.experiment
        longest = longest_file_name(FIGURE_FILES, figure=fig.name)
        excess = len(longest.encode()) - NAME_MAX
        if excess > worst.get(exp, (0, ""))[0]:
            worst[exp] = (excess, longest)
    for exp, (excess, longest) in worst.items():
        raise ValueError(
            f"experiments[{exp}].name: a name of {len(exp)} characters makes file names of up to "
            f"{len(longest.encode())} bytes ({longest.replace(exp, '<name>', 1)}), more than the "
            f"{NAME_MAX} a file name may have; use a name of at most {len(exp) - excess} "
            "characters"
        )


# chaosgd.analysis.divergence_fit.fit_divergence fits α and β of d² − ε² = αt² + βt: it needs
# distances at 2 distinct steps after 0 (and 3 points in all, step 0 being one)
FIT_MIN_TIMES = 2


def check_fit_points(config: dict, settings: RunSettings) -> None:
    """Refuse a reference whose ensemble would record too few steps for the fits stage."""
    lyap, every = config["lyapunov"], config["ensembles"]["record_every"]
    total = train_steps(settings)
    readouts = readout_steps(
        total, lyap["readouts"], lyap["early_readouts"], anchor_steps(lyap["anchors"], total)
    )
    times = [t for t in record_steps(total, every, readouts) if t > 0]
    if len(times) < FIT_MIN_TIMES:
        fix = (
            f"lower ensembles.record_every below {total}"
            if total >= FIT_MIN_TIMES
            else f"make the run {FIT_MIN_TIMES} steps or longer (epochs, train_size, batch_size)"
        )
        raise ValueError(
            f"ensembles.record_every: reference {settings.run_id} has {run_length(settings)}, so "
            f"its ensemble records distances after step 0 at step {times[0]} only (record_every "
            f"{every} and the Lyapunov readouts); the fits of sqrt(alpha t^2 + beta t + eps^2) "
            f"need {FIT_MIN_TIMES} such steps: {fix}"
        )
