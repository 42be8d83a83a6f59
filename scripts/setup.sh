#!/usr/bin/env bash
# Create .venv and install otxlite with its OpenMMLab / OpenVINO stack.
# Idempotent: a second run only checks what is installed.
#
#   PYTHON=python3.11 bash scripts/setup.sh      # choose the interpreter
#   PIP_FIND_LINKS=/path/to/wheels               # a prebuilt mmcv 2.1.0 wheel is taken from here
#   OTXLITE_TORCH_INDEX=https://download.pytorch.org/whl/cpu   # CPU-only torch on a fresh machine
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
MMCV_VERSION=2.1.0
step() { printf '\n\033[1m[setup] %s\033[0m\n' "$*"; }
die() { printf '\n[setup] ERROR: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found. Install Python 3.10-3.12 or set PYTHON=/path/to/python."
"$PYTHON" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))' \
    || die "otxlite needs Python 3.10-3.12; '$PYTHON' is $("$PYTHON" --version 2>&1). Set PYTHON=python3.11."

if [ ! -x .venv/bin/python ]; then
    step "creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
PIP=(.venv/bin/python -m pip --disable-pip-version-check)

stamp=.venv/.otxlite-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c 'import mmcv.ops, otxlite' 2>/dev/null; then
    step "environment is up to date (.venv)"
    exit 0
fi

step "torch $TORCH_VERSION"
torch_args=()
[ -n "${OTXLITE_TORCH_INDEX:-}" ] && torch_args=(--extra-index-url "$OTXLITE_TORCH_INDEX")
"${PIP[@]}" install -q "torch==$TORCH_VERSION" "${torch_args[@]}"

step "build tools and mmcv's runtime dependencies"
# mmcv 2.1.0's setup.py imports pkg_resources: setuptools<70. OpenCV is pinned (see pyproject.toml).
"${PIP[@]}" install -q "setuptools<70" wheel ninja "numpy>=2.0,<2.3" "mmengine==0.10.7" \
    "opencv-python==4.12.0.88" "opencv-python-headless==4.12.0.88"

if "$PY" -c 'import mmcv.ops' 2>/dev/null; then
    step "mmcv $MMCV_VERSION with compiled ops: already installed"
else
    torch_tag=$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')
    py_tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/otxlite/wheels/$py_tag-torch$torch_tag"
    mkdir -p "$cache"
    step "mmcv $MMCV_VERSION: looking for a prebuilt wheel (PIP_FIND_LINKS, $cache)"
    if ! "${PIP[@]}" install -q --no-deps --only-binary=:all: --find-links "$cache" "mmcv==$MMCV_VERSION" 2>/dev/null \
        || ! "$PY" -c 'import mmcv.ops' 2>/dev/null; then
        step "mmcv $MMCV_VERSION: no usable prebuilt wheel"
        command -v "${CXX:-g++}" >/dev/null || die "no C++ compiler found to build mmcv's ops. Install one (Debian/Ubuntu: apt-get install g++) and rerun."
        inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
        [ -f "$inc/Python.h" ] || die "Python headers missing ($inc/Python.h). Install them (Debian/Ubuntu: apt-get install python3-dev) and rerun."
        step "mmcv $MMCV_VERSION: building from source with ops (about 15 minutes on 2 cores, once per machine)"
        "${PIP[@]}" uninstall -q -y mmcv 2>/dev/null || true
        MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "${PIP[@]}" wheel -v --no-deps --no-build-isolation --no-binary mmcv "mmcv==$MMCV_VERSION" -w "$cache" \
            2>&1 | grep --line-buffered -E '^\s*\[[0-9]+/[0-9]+\]|error:|Error' || true
        ls "$cache"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1 || die "the mmcv build failed; rerun with the command above to see the compiler output."
        "${PIP[@]}" install -q --no-deps "$cache"/mmcv-"$MMCV_VERSION"-*.whl
        step "cached the mmcv wheel in $cache"
    fi
    "$PY" -c 'import mmcv.ops' || die "mmcv is installed but its compiled ops do not import (see above)."
fi

step "otxlite and its dependencies (editable, with the dev extra)"
"${PIP[@]}" install -q -e ".[dev]"

step "mmdeploy 1.3.1 (--no-deps: its protobuf pin conflicts with onnx/openvino)"
"${PIP[@]}" install -q --no-deps "mmdeploy==1.3.1"

step "checking the stack"
"$PY" - <<'PY'
import mmcv, mmcv.ops, mmdet, mmengine, torch, openvino, nncf, datumaro  # noqa: F401
print(f"torch {torch.__version__}, mmcv {mmcv.__version__} (ops ok), mmdet {mmdet.__version__}, "
      f"mmengine {mmengine.__version__}, openvino {openvino.__version__}, nncf {nncf.__version__}, "
      f"datumaro {datumaro.__version__}")
PY
echo "$want" > "$stamp"
step "done: activate with 'source .venv/bin/activate', then run 'otxlite --help'"
