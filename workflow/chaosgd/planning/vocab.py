"""The pipeline's closed vocabularies, each in one place.

Datasets and their resize modes, architectures, activations, prune sets and their selections,
dtypes, devices, curvature methods, perturbation strategies and figure kinds are named here and
nowhere else: the config schema's enums and patterns (:func:`chaosgd.planning.config.load_schema` fills
them in where the schema says ``x-vocabulary``), the rules' wildcard constraints, the planner,
the stages and the figures all read them from this module. Adding an entry here plus the code
that gives it meaning (its data files, its model, its prune rule, its plot) is all a new one
takes; the tests check that every consumer knows every entry.

Kept free of torch and numpy, so that the Snakefile imports it quickly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# the image side every dataset can be prepared at, and the default: USPS's native 16×16, to which
# Sec. 3 resizes FashionMNIST; the architectures take the side as a setting (the MLP's input size
# follows it)
IMAGE_SIDE = 16
N_CLASSES = 10


@dataclass(frozen=True)
class Dataset:
    """A dataset the pipeline can prepare (its files are described in ``chaosgd.datasets``)."""

    name: str
    title: str
    train_size: int  # training images
    test_size: int  # test images
    description: str
    local_dir: str | None = None  # default folder of an offline copy
    # the image sides it can be prepared at (config datasets.<name>.image_side): 16×16, and its
    # native size where that is larger (kept as is, without a resize)
    sides: tuple[int, ...] = (IMAGE_SIDE,)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "usps",
            "USPS",
            7291,
            2007,
            "USPS handwritten digits (7291 train / 2007 test, native 16x16).",
        ),
        Dataset(
            "fmnist",
            "FashionMNIST",
            60000,
            10000,
            "FashionMNIST (60000 train / 10000 test, 28x28, resized to 16x16 unless "
            "image_side is 28).",
            # where Debian/Ubuntu's package dataset-fashion-mnist installs the IDX files
            local_dir="/usr/share/datasets/fashion-mnist",
            # Sec. 3 resizes it to 16×16, while its text names a 784-input MLP, i.e. 28×28
            sides=(IMAGE_SIDE, 28),
        ),
    )
}


@dataclass(frozen=True)
class Layer:
    """One layer of an architecture, torch-free: ``linear`` (n_in→n_out), ``conv``
    (``kernel``×``kernel``, padding ``kernel // 2``, ``stride``, n_in→n_out channels, a bias
    unless ``bias`` is false), ``bn`` (BatchNorm over n_out channels: a scale and a shift per
    channel; its running statistics are buffers, not parameters), ``resblock`` (a residual
    block, :attr:`branch` plus :attr:`shortcut`, then the activation), ``act`` (the run's
    activation), ``pool`` (max 2×2), ``avgpool`` (global average pooling to n_out features),
    ``flatten``. The model is built from these (``chaosgd.engine.models.build_model``) and the
    planner counts parameters from them, so the two cannot disagree."""

    kind: str
    n_in: int = 0
    n_out: int = 0
    stride: int = 1
    kernel: int = 3
    bias: bool = True

    @property
    def branch(self) -> tuple[Layer, ...]:
        """A ``resblock``'s residual branch: conv3×3 (with the block's stride), BN, activation,
        conv3×3, BN; the convolutions have no bias, which the BN after them would cancel."""
        if self.kind != "resblock":
            return ()
        return (
            Layer("conv", self.n_in, self.n_out, stride=self.stride, bias=False),
            Layer("bn", self.n_out, self.n_out),
            Layer("act"),
            Layer("conv", self.n_out, self.n_out, bias=False),
            Layer("bn", self.n_out, self.n_out),
        )

    @property
    def shortcut(self) -> tuple[Layer, ...]:
        """A ``resblock``'s skip connection: the identity, or where the block changes the width
        or the resolution a 1×1 convolution (with the stride) and BN, the projection shortcut
        (He et al. 2016's option B)."""
        if self.kind != "resblock" or (self.stride == 1 and self.n_in == self.n_out):
            return ()
        return (
            Layer("conv", self.n_in, self.n_out, stride=self.stride, kernel=1, bias=False),
            Layer("bn", self.n_out, self.n_out),
        )

    @property
    def n_params(self) -> int:
        """Weights and biases of the layer (BatchNorm's scale and shift count; its running
        statistics do not)."""
        if self.kind == "linear":
            return self.n_in * self.n_out + self.n_out
        if self.kind == "conv":
            return self.n_in * self.n_out * self.kernel**2 + (self.n_out if self.bias else 0)
        if self.kind == "bn":
            return 2 * self.n_out
        return sum(layer.n_params for layer in self.branch + self.shortcut)


def _mlp(hidden: int, n_classes: int, side: int, depth: int | None) -> tuple[Layer, ...]:
    # the input size follows the image side: 256-h-10 on 16×16 images (Sec. 3), 784-h-10 on
    # FashionMNIST's native 28×28, the network the paper's text names
    del depth
    return (
        Layer("flatten"),
        Layer("linear", side * side, hidden),
        Layer("act"),
        Layer("linear", hidden, n_classes),
    )


def _cnn(hidden: int, n_classes: int, side: int, depth: int | None) -> tuple[Layer, ...]:
    # App. B.1's CNN; four 2×2 poolings take 16×16 to 1×1, so 8 features reach the classifier
    del hidden, depth  # fixed widths and depth: the settings do not size it
    pooled = side
    for _ in range(4):
        pooled //= 2
    if pooled < 1:
        raise ValueError(f"the CNN's four 2×2 poolings need images of at least 16×16, got {side}")
    layers = [Layer("conv", 1, 4), Layer("act")]
    for n_in, n_out in ((4, 4), (4, 8), (8, 8)):
        layers += [Layer("pool"), Layer("conv", n_in, n_out), Layer("act")]
    features = 8 * pooled * pooled
    return (*layers, Layer("pool"), Layer("flatten"), Layer("linear", features, n_classes))


def _resnet(width: int, n_classes: int, side: int, depth: int | None) -> tuple[Layer, ...]:
    # He et al. 2016's CIFAR ResNet-(6n+2) on one input channel: a stem, three stages of n
    # basic blocks at widths w, 2w, 4w (the first block of stages 2 and 3 halves the resolution),
    # global average pooling, linear. Any side: the pooling is global.
    del side
    if depth is None or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a ResNet's depth must be 6n + 2 with n ≥ 1 (8, 14, 20, …), got {depth}")
    blocks = (depth - 2) // 6
    layers = [Layer("conv", 1, width, bias=False), Layer("bn", width, width), Layer("act")]
    channels = width
    for stage in range(3):
        out = width * 2**stage
        for i in range(blocks):
            stride = 2 if stage and i == 0 else 1
            layers.append(Layer("resblock", channels, out, stride=stride))
            channels = out
    return (*layers, Layer("avgpool", channels, channels), Layer("linear", channels, n_classes))


@dataclass(frozen=True)
class Architecture:
    """A model, as its layers (built by ``chaosgd.engine.models.build_model``).

    ``make_layers(hidden, n_classes, side, depth)`` gives the layers for images of ``side``×``side``
    pixels; ``depth`` is the architecture's default depth where the ``depth`` setting sizes it
    (the ResNet) and ``None`` where it does not (the paper's networks ignore the setting, as the
    CNN ignores ``hidden``).
    """

    name: str
    title: str
    description: str
    uses_hidden: bool  # whether the ``hidden`` setting sizes it
    make_layers: Callable[[int, int, int, int | None], tuple[Layer, ...]]
    depth: int | None = None  # the default depth, where the ``depth`` setting sizes it
    # whether its whole minibatch-Hessian spectrum is affordable at every step (the exact
    # curvature paths of chaosgd.engine.curvature: CGD's prune sets, the spectrum, the dense
    # tangent map); the paper's networks are, a network of 10^5 parameters and more is not
    exact_curvature: bool = True

    @property
    def uses_depth(self) -> bool:
        """Whether the ``depth`` setting sizes it."""
        return self.depth is not None

    def layers(
        self,
        hidden: int = 20,
        n_classes: int = N_CLASSES,
        side: int = IMAGE_SIDE,
        depth: int | None = None,
    ) -> tuple[Layer, ...]:
        """The layers of the model of ``hidden`` units (or base width) and ``depth`` (default
        :attr:`depth`) for ``side``×``side`` images; a ``ValueError`` for sizes it cannot take."""
        if int(side) < 1:
            raise ValueError(f"the image side must be a positive integer, got {side!r}")
        chosen = None if not self.uses_depth else int(self.depth if depth is None else depth)
        return self.make_layers(int(hidden), int(n_classes), int(side), chosen)

    def n_params(
        self,
        hidden: int = 20,
        n_classes: int = N_CLASSES,
        side: int = IMAGE_SIDE,
        depth: int | None = None,
    ) -> int:
        """The parameter count N of the model (as :meth:`layers`), from its layers."""
        return sum(layer.n_params for layer in self.layers(hidden, n_classes, side, depth))


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            "mlp",
            "MLP",
            "MLP side²-h-10: 256-h-10 on 16×16 images (the paper's main model, Sec. 3), "
            "784-h-10 on 28×28",
            True,
            _mlp,
        ),
        Architecture(
            "cnn", "CNN", "the paper's small CNN (App. B.1), 1158 parameters", False, _cnn
        ),
        Architecture(
            "resnet",
            "ResNet",
            "ResNet-(6n+2) of base width h (He et al. 2016's CIFAR family, one input channel; "
            "ResNet-20 of width 16 has 272,186 parameters): BatchNorm and skip connections, "
            "which the paper did not study (Discussion)",
            True,
            _resnet,
            depth=20,
            exact_curvature=False,
        ),
    )
}

ACTIVATIONS = ("relu", "sigmoid")
DTYPES = ("float32", "float64")
DEVICES = ("auto", "cpu", "cuda")
# "topk": the k eigenpairs a top-k CGD variant prunes, matrix-free (chaosgd.engine.topk_curvature),
# for networks whose whole spectrum is not affordable
CURVATURE_METHODS = ("auto", "dense", "lowrank", "topk")
# how images larger than 16×16 are brought to it (chaosgd.datasets.to_16x16): bilinear with
# antialiasing, or without it as the authors' code did (torchvision 0.12's tensor Resize)
RESIZE_MODES = ("antialias", "reference")


@dataclass(frozen=True)
class PruneSet:
    """A Hessian eigenspace that CGD can remove from the update (Theorem 2.2)."""

    name: str
    rule: str  # which eigenvalues λ belong to it, for η the learning rate
    colour: str  # of its curves in the figures


PRUNE_SETS: dict[str, PruneSet] = {
    p.name: p
    for p in (
        PruneSet("chaotic", "|1 − ηλ| > 1 (locally chaotic, Theorem 2.1)", "#7b3294"),
        PruneSet("negative", "λ < 0", "#0571b0"),
        PruneSet("positive", "λ > 0", "#ca0020"),
    )
}

# how CGD chooses within a prune set: variant-name suffix -> selection
SELECTIONS = {"": "all", "top": "top_k", "random": "random_k"}


def variant_pattern(named_groups: bool = False) -> str:
    """The regular expression of optimizer variant names (``sgd``, ``cgd-<set>[-top<k>|...]``).

    With ``named_groups`` it captures ``set``, ``sel``, ``k`` and ``noise`` (Python ``re``);
    without, it is plain enough for JSON Schema's ``pattern``.
    """
    sets = "|".join(PRUNE_SETS)
    sels = "|".join(s for s in SELECTIONS if s)
    if named_groups:
        return (
            rf"^(?:sgd|cgd-(?P<set>{sets})(?:-(?P<sel>{sels})(?P<k>[1-9][0-9]*))?"
            r"(?P<noise>-noise)?)$"
        )
    return rf"^(sgd|cgd-({sets})(-({sels})[1-9][0-9]*)?(-noise)?)$"


VARIANT_RE = re.compile(variant_pattern(named_groups=True))


@dataclass(frozen=True)
class Strategy:
    """A perturbation direction of the ensembles (Fig. 3a)."""

    name: str
    label: str
    colour: str  # darker = expected to diverge more, as in the paper's Fig. 3
    rank: int  # legend order: most divergent first
    topk: bool  # given by the k leading Lyapunov vectors alone (lyapunov.topk > 0)


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("max_chaos", "max chaos (top Lyapunov vector)", "#08306b", 0, True),
        Strategy("max_convergence", "max convergence (bottom vector)", "#a1d99b", 4, False),
        Strategy("chaotic", "random chaotic combination", "#2171b5", 1, True),
        Strategy("nonchaotic", "random non-chaotic combination", "#41ab5d", 3, False),
        Strategy("random", "random direction", "#6baed6", 2, True),
    )
}
# why the others are absent around a top-k Lyapunov run: the figures and claims say it
TOPK_ABSENT = "they need the bottom of the Lyapunov spectrum, which lyapunov.topk does not follow"


def strategies_for(topk: int) -> tuple[str, ...]:
    """The strategies of an ensemble around a Lyapunov run of ``lyapunov.topk`` k (0: the exact
    map, all of them), in :data:`STRATEGIES` order."""
    return tuple(s for s in STRATEGIES if not topk or STRATEGIES[s].topk)


# The figures each experiment or reference gets. ``scope`` says over what a figure of that kind
# is drawn and so how it is named (``name`` is formatted with ``experiment`` or ``label``):
#   experiment  every experiment, all of its runs
#   spectral    every experiment with runs that record the Hessian spectrum, those runs
#   tangent     every experiment with runs that carry a tangent map, those runs
#   references  one figure of all ensemble references
#   reference   every ensemble reference (``label`` is its short name)
FIGURE_SCOPES = ("experiment", "spectral", "tangent", "references", "reference")


@dataclass(frozen=True)
class FigureKind:
    """A kind of figure: a subcommand of ``python -m chaosgd.figures``."""

    name: str
    scope: str  # one of FIGURE_SCOPES
    figure_name: str  # e.g. "figB2_{experiment}"
    category: str  # the report's category
    shows: str  # what it shows (the caption's first part)
    paper: str  # what of the paper it reproduces
    files: tuple[str, ...]  # result files it reads per run, under results/
    main_eps: bool = False  # draws the ensembles' main ε only (takes --eps)


_TRAIN = "train/{run}/run.json"
FIGURE_KINDS: dict[str, FigureKind] = {
    k.name: k
    for k in (
        FigureKind(
            "curves",
            "experiment",
            "{experiment}",
            "Training curves",
            "Training accuracy and loss of every minibatch step, moving average of 50 steps, "
            "mean ± std over seeds; dotted vertical lines mark pruning onsets.",
            "Fig. 1 (SGD vs CGD pruning the chaotic, negative, positive spectrum), Fig. 2 "
            "(pruning onsets), App. B.1 (FashionMNIST, CNN)",
            ("train/{run}/steps.parquet", _TRAIN),
        ),
        FigureKind(
            "validation",
            "experiment",
            "{experiment}_validation",
            "Training curves",
            "Validation (solid) and full training-set (dashed) accuracy and loss per epoch, "
            "mean ± std over seeds.",
            "App. B.1 (validation curves)",
            ("train/{run}/epochs.parquet", _TRAIN),
        ),
        FigureKind(
            "spectrum",
            "spectral",
            "figB2_{experiment}",
            "Hessian spectrum",
            "The minibatch Hessian's spectrum per step, moving average of 50 steps, in two "
            "conventions. Ours (a–d): the numbers of nonzero negative, positive and "
            "positive-chaotic (λ > 2/η) eigenvalues, and the fractions of ‖g‖² in the positive "
            "and negative eigenspaces. The reference code's (e–h): the signs of all N "
            "eigenvalues, the numerically null ones split evenly between them (in float32 their "
            "rounding decided), the mean |cos(g, v)| over the eigenvectors of each sign, and "
            "|cos(g, v)| with the eigenvectors of λmax and λmin. Runs whose steps tables "
            "predate the reference convention are drawn in ours only, as the title says.",
            "App. B.2",
            ("train/{run}/steps.parquet", _TRAIN),
        ),
        FigureKind(
            "spectra",
            "spectral",
            "figB2hist_{experiment}",
            "Hessian spectrum",
            "The distribution of the minibatch Hessian's nonzero eigenvalues over training, at "
            "the evaluation steps, pooled over the seeds of SGD (or, where SGD did not record "
            "the spectrum, of the first condition that did) as mean counts per run: (a) "
            "histograms at six steps from the first to the last, (b) the density of step "
            "against eigenvalue on a log colour scale; symmetric-log eigenvalue axes (linear "
            "near 0), 2/η dashed (the step is chaotic below 0 and above 2/η).",
            "App. B.2 (eigenvalue distributions over training)",
            ("train/{run}/spectra.parquet", _TRAIN),
        ),
        FigureKind(
            "exponents",
            "tangent",
            "figC1_{experiment}",
            "Lyapunov spectra",
            "Finite-time Lyapunov exponents ln σ_i(Y(t))/t of the tangent map over training, one "
            "column of panels per variant on the same y-limits (SGD beside CGD pruning the "
            "chaotic eigenspace, whose λ1 stays at 0: Theorem 2.2). λ1 every lyapunov.lambda1_every steps (line), "
            "from a Krylov iteration on YᵀY warm-started at the previous step's vector, exact to "
            "~1e-10 in ln σ1; at the exact readouts (markers) λ1, λN, quantiles and the numbers "
            "of chaotic (λ > 0) and non-chaotic (λ < 0) directions, from SVDs of the factored "
            "tangent map (preconditioned divide and conquer, checked, with the Jacobi SVD as "
            "fallback), log-spaced from step 1 and then evenly spaced. λN and the quantiles are "
            "at the readouts only: σ_N at every step would need O(N³) solves. Log step axis, "
            "which shows the start, where the exponents are above 0.",
            "App. C.1, Theorem 2.2",
            ("lyapunov/{run}/exponents.parquet", "lyapunov/{run}/lambda1.parquet", _TRAIN),
        ),
        FigureKind(
            "subspaces",
            "tangent",
            "figC2_{experiment}",
            "Lyapunov spectra",
            "Stability of the Lyapunov subspaces: against the basis at a fixed t₀ (one row of "
            "panels per t₀), the similarity ‖VᵀW‖²_F / min(dim) of the chaotic (λ > 0), edge "
            "(λ ≥ 0) and non-chaotic (λ < 0) subspaces at each later readout (solid), with the "
            "random baseline max(dim)/N (dashed) and the similarity of random index sets of the "
            "same dimensions (dotted); the cross terms chaotic–non-chaotic both ways; and the "
            "dimensions now and at t₀. A stabilising subspace keeps its similarity well above "
            "both baselines. Where an experiment's Lyapunov runs include CGD beside SGD, the "
            "SGD runs only: pruning the chaotic eigenspace leaves no chaotic subspace "
            "(Theorem 2.2), whose similarities are undefined.",
            "App. C.2",
            ("lyapunov/{run}/subspaces.parquet", _TRAIN),
        ),
        FigureKind(
            "divergence",
            "references",
            "fig3a",
            "Perturbed ensembles",
            "Distance ‖θ_B(t) − θ_A(t)‖ between the reference A and copies B of it perturbed "
            "at initialization by ε along 5 directions of its final Lyapunov spectrum: max "
            "chaos (top vector), max convergence (bottom vector), random chaotic and random "
            "non-chaotic combinations, and a random direction; same seed and batch order. One "
            "panel per reference. The dashed grey line is the expected distance "
            "√E‖θ₁ − θ₂‖² of two default initializations of the model (App. A.8; 4.515 for the "
            "paper's MLP 256-20-10); the paper's ≈ 6.38 is √2 times that value, each "
            "coordinate's variance counted twice.",
            "Fig. 3a",
            ("ensembles/{run}/distances.parquet", _TRAIN),
            main_eps=True,
        ),
        FigureKind(
            "fit",
            "reference",
            "fig3b_{label}",
            "Perturbed ensembles",
            "Distance curves (solid), the least-squares fit of √(αt² + βt + ε²) to d² (dashed, "
            "R² in the legend) and the Lyapunov bounds e^{λN(t)t}ε ≤ d(t) ≤ e^{λ1(t)t}ε: the "
            "upper one wherever λ1(t) was computed (line: every lyapunov.lambda1_every steps; ▲ at the exact readouts), the lower one "
            "at the exact readouts only (▼; λN per step would need O(N³) solves).",
            "Fig. 3b",
            (
                "ensembles/{run}/distances.parquet",
                "fits/{run}/fits.parquet",
                "fits/{run}/bounds.parquet",
                "lyapunov/{run}/lambda1.parquet",
                _TRAIN,
            ),
            main_eps=True,
        ),
        FigureKind(
            "sweep",
            "reference",
            "figC3_{label}",
            "Perturbed ensembles",
            "The ε sweep: distance curves for every ε per direction, and the members' final "
            "training and validation accuracy against ε.",
            "App. C.3",
            ("ensembles/{run}/distances.parquet", "ensembles/{run}/members.parquet", _TRAIN),
        ),
        FigureKind(
            "precision",
            "reference",
            "figC4_{label}",
            "Perturbed ensembles",
            "Small perturbations trained in float32 (wide, light) and float64 (thin, dashed), "
            "each against its own reference: d(t)/ε per direction. Where the float32 curves "
            "turn erratic and the float64 ones do not, the erratic behaviour is round-off.",
            "App. C.4 (the paper's open question on small ε)",
            ("ensembles/{run}/distances.parquet", _TRAIN),
        ),
        FigureKind(
            "bounds",
            "reference",
            "figC5_{label}",
            "Perturbed ensembles",
            "Distance at every recorded step against the Lyapunov bounds, per direction: the "
            "upper bound e^{λ1(t)t}ε at every step (line, λ1 per step; ▲ at the exact readouts), "
            "the lower bound e^{λN(t)t}ε at the exact readouts only (▼; λN per step would need "
            "O(N³) solves), with the fraction of readouts where each holds and the upper "
            "bound's worst margin ln(e^{λ1 t}ε/d) over every step.",
            "App. C.5",
            (
                "fits/{run}/bounds.parquet",
                "fits/{run}/fits.parquet",
                "ensembles/{run}/distances.parquet",
                "lyapunov/{run}/lambda1.parquet",
                _TRAIN,
            ),
            main_eps=True,
        ),
    )
}


def schema_vocabularies() -> dict[str, dict]:
    """What ``x-vocabulary: <name>`` in the config schema stands for: an ``enum`` or a
    ``pattern`` (built when asked, so that it always reflects the registries above)."""
    enums = {
        "datasets": tuple(DATASETS),
        "architectures": tuple(ARCHITECTURES),
        "activations": ACTIVATIONS,
        "dtypes": DTYPES,
        "devices": DEVICES,
        "curvature_methods": CURVATURE_METHODS,
        "resize_modes": RESIZE_MODES,
    }
    out: dict[str, dict] = {name: {"enum": list(values)} for name, values in enums.items()}
    out["variants"] = {"pattern": variant_pattern()}
    return out


def fill_schema(node):
    """Fill the config schema's vocabulary placeholders in place; returns ``node``.

    ``x-vocabulary: <name>`` becomes ``enum`` (with ``null`` too under ``x-nullable: true``) or
    ``pattern``; ``x-properties-per: datasets`` becomes one property per dataset, each a copy of
    the ``$defs`` entry it names in ``x-template`` with the dataset's description and default
    ``local_dir``, and the mapping's default lists every dataset.
    """
    defs = node.get("$defs", {}) if isinstance(node, dict) else {}
    _fill(node, defs)
    return node


def _fill(node, defs, vocabularies=None) -> None:
    vocabularies = vocabularies or schema_vocabularies()
    if isinstance(node, list):
        for item in node:
            _fill(item, defs, vocabularies)
        return
    if not isinstance(node, dict):
        return
    name = node.get("x-vocabulary")
    if name is not None:
        if name not in vocabularies:
            raise ValueError(f"config schema: unknown x-vocabulary {name!r}")
        node.update(vocabularies[name])
        if node.get("x-nullable") and "enum" in node:
            node["enum"] = node["enum"] + [None]
    if node.get("x-properties-per") == "datasets":
        template = defs[node["x-template"]]
        node["properties"] = {}
        for d in DATASETS.values():
            entry = {k: v for k, v in template.items() if k != "properties"}
            entry["description"] = f"{d.description} {template['description']}"
            props = {k: dict(v) for k, v in template["properties"].items()}
            props["local_dir"]["default"] = d.local_dir
            entry["properties"] = props
            node["properties"][d.name] = entry
        node["default"] = {d: {} for d in DATASETS}
    for key, value in node.items():
        if key != "$defs":
            _fill(value, defs, vocabularies)


def check_choice(kind: str, value: str, choices) -> str:
    """``value`` if it is one of ``choices``, else a ``ValueError`` naming ``kind``."""
    if value not in choices:
        raise ValueError(f"{kind} must be one of {', '.join(choices)}; got {value!r}")
    return value
