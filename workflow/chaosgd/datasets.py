"""Datasets stage: obtain USPS or FashionMNIST, bring them to their side, normalize, write a manifest.

``python -m chaosgd.datasets <name>`` writes ``<name>.pt`` (the normalized splits, 16×16 or the
configured ``--image-side``) and ``<name>.json`` (where every source file came from, its
checksum, the counts, image shape, normalization and resize method); the preparation itself is
:mod:`chaosgd.runs.dataset_prep`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chaosgd.planning.vocab import IMAGE_SIDE, RESIZE_MODES
from chaosgd.runs.artifacts import explain, save_tensors, write_json
from chaosgd.runs.dataset_prep import (
    SPECS,
    DatasetError,
    check_prepared,
    check_side,
    obtain,
    prepare,
)


def _parse_md5(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, digest = item.partition("=")
        if not sep or len(digest) != 32:
            raise DatasetError(f"--md5 expects FILE=<32 hex digits>, got {item!r}")
        out[name] = digest.lower()
    return out


def main(argv: list[str] | None = None) -> int:
    """Prepare one dataset from the command line; returns the exit status.

    Obtains and verifies the source files, checks what they hold, resizes to the image side
    (16×16 unless asked otherwise), normalizes, checks the result and writes the tensors and
    the manifest; nothing when a check fails.
    """
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.datasets",
        description="Obtain, verify, resize (16x16 or --image-side) and normalize a dataset.",
    )
    parser.add_argument("name", choices=sorted(SPECS), help="dataset to prepare")
    parser.add_argument("--out", required=True, help="output .pt file")
    parser.add_argument("--manifest", required=True, help="output .json manifest")
    parser.add_argument("--local-dir", default=None, help="folder with the source files")
    parser.add_argument("--cache-dir", required=True, help="folder for downloaded files")
    parser.add_argument(
        "--mirror", action="append", default=None, help="base URL to download from (repeatable)"
    )
    parser.add_argument("--no-download", action="store_true", help="never download")
    parser.add_argument(
        "--md5", action="append", default=[], metavar="FILE=MD5", help="checksum override"
    )
    parser.add_argument(
        "--resize",
        choices=RESIZE_MODES,
        required=True,
        help="how images larger than the image side are resized: bilinear without antialiasing "
        "as the reference code (reference), or with it (antialias); config "
        "datasets.<name>.resize",
    )
    parser.add_argument(
        "--image-side",
        type=int,
        default=IMAGE_SIDE,
        help=f"side of the prepared images (default {IMAGE_SIDE}, the paper's; a dataset's "
        "native size keeps its images as they are); config datasets.<name>.image_side",
    )
    args = parser.parse_args(argv)
    spec = SPECS[args.name]
    try:
        # before the files are looked for: a side the dataset is not prepared at is the
        # config's mistake, whatever the files hold
        check_side(spec, args.image_side)
        sources = obtain(
            spec,
            local_dir=args.local_dir,
            cache_dir=args.cache_dir,
            mirrors=args.mirror,
            allow_download=not args.no_download,
            md5_overrides=_parse_md5(args.md5),
        )
        tensors, manifest = prepare(spec, sources, args.resize, args.image_side)
        problems = check_prepared(tensors, manifest, args.image_side)
        if problems:
            # the sources passed their checks, so this is the stage's own fault: no file of it
            raise DatasetError(
                f"{args.out}: not written, the prepared data are wrong: {'; '.join(problems)}. "
                "This is a bug in chaosgd.runs.dataset_prep; please report it"
            )
    except (DatasetError, OSError) as exc:
        print(f"error: {explain(exc)}", file=sys.stderr)
        return 1
    try:
        save_tensors(tensors, args.out)
        try:
            write_json(manifest, args.manifest)
        except BaseException:
            Path(args.out).unlink(missing_ok=True)
            raise
    except OSError as exc:  # ArtifactWriteError
        print(f"error: {explain(exc, 'writing')}", file=sys.stderr)
        return 1
    split = manifest["splits"]
    print(
        f"{spec.name}: {split['train']['samples']} train / {split['test']['samples']} test "
        f"images, mean {manifest['normalization']['mean']:.4f}, "
        f"std {manifest['normalization']['std']:.4f}, {args.image_side}x{args.image_side} "
        f"-> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
