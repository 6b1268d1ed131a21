#!/usr/bin/env bash
# chaosgd entry points. Each creates (or reuses) the local virtual environment .venv first.
#
#   ./run.sh demo [snakemake options]   the quick, offline demo (config/quick.yaml)
#   ./run.sh test [pytest options]      the test suite
#   ./run.sh paper [snakemake options]  the paper's settings (config/config.yaml)
#   ./run.sh venv                       only create/update .venv
#
# Environment: PYTHON (interpreter for the venv, default python3), CHAOSGD_VENV (default
# .venv), CHAOSGD_NO_APT=1 (never install Debian packages; see ensure_system_packages).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${CHAOSGD_VENV:-.venv}
FMNIST_DIR=/usr/share/datasets/fashion-mnist

say() { printf '[chaosgd] %s\n' "$*" >&2; }

# Debian/Ubuntu packages the commands need: python3-venv for the venv, and for the demo the
# offline FashionMNIST files. Installed only when missing and when we may (root or sudo -n).
ensure_system_packages() {
    local wanted=() pkg
    if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then wanted+=(python3-venv); fi
    for pkg in "$@"; do
        case $pkg in
            dataset-fashion-mnist) [ -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ] || wanted+=("$pkg") ;;
            *) wanted+=("$pkg") ;;
        esac
    done
    [ ${#wanted[@]} -gt 0 ] || return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi
    fi
    if [ "${CHAOSGD_NO_APT:-0}" = 1 ] || [ "$sudo" = none ] || ! command -v apt-get >/dev/null; then
        say "missing system packages: ${wanted[*]} (install them with apt-get; continuing)"
        return 0
    fi
    say "installing Debian packages: ${wanted[*]}"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${wanted[@]}" >/dev/null
}

ensure_venv() {
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        say "chaosgd needs Python >= 3.11; $PYTHON is $("$PYTHON" -V 2>&1). Set PYTHON=..."
        exit 1
    fi
    local stamp="$VENV/.chaosgd-installed" want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "setting up $VENV (torch and friends, pinned in pyproject.toml; takes a few minutes)"
        [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e '.[test,slurm]'
        echo "$want" >"$stamp"
    fi
    # CHAOSGD_VENV may be absolute (a venv shared by several checkouts) or relative to here
    case $VENV in
        /*) export PATH="$VENV/bin:$PATH" ;;
        *) export PATH="$PWD/$VENV/bin:$PATH" ;;
    esac
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case $cmd in
    demo)
        ensure_system_packages dataset-fashion-mnist
        ensure_venv
        exec snakemake --cores all --configfile config/quick.yaml "$@"
        ;;
    test)
        ensure_system_packages dataset-fashion-mnist
        ensure_venv
        exec pytest "$@"
        ;;
    paper)
        ensure_system_packages
        ensure_venv
        exec snakemake --cores all "$@"
        ;;
    venv)
        ensure_system_packages
        ensure_venv
        ;;
    *)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
        [ "$cmd" = help ] || exit 2
        ;;
esac
