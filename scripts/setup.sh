#!/usr/bin/env bash
# Create .venv and install otxlite with its OpenMMLab / OpenVINO stack.
# Idempotent: a second run only checks what is installed.
#
#   PYTHON=python3.11 bash scripts/setup.sh      # choose the interpreter
#   PIP_FIND_LINKS=/path/to/wheels               # a prebuilt mmcv 2.1.0 wheel is taken from here
#   OTXLITE_TORCH_INDEX=https://download.pytorch.org/whl/cpu   # CPU-only torch on a fresh machine
#   OTXLITE_MMCV_CUDA=0 | 1                      # mmcv's ops: never with CUDA | with CUDA or fail (default: auto)
#
# mmcv's ops get CUDA kernels when an NVIDIA GPU (nvidia-smi) and a CUDA compiler of torch's CUDA version are
# present (scripts/mmcv_build_plan.sh says which and why); otherwise they are built for the CPU.
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

# The mmcv build this machine gets (CPU, or CUDA for its GPUs); needs torch, so empty on a fresh .venv.
plan() { if "$PY" -c 'import torch' 2>/dev/null; then bash scripts/mmcv_build_plan.sh "$PY"; fi; }
fingerprint() {  # of the setup and of the mmcv build this machine gets: a new GPU or compiler reruns setup
    { cat pyproject.toml scripts/setup.sh scripts/mmcv_build_plan.sh; grep -E '^(MMCV_BUILD|MMCV_CACHE_TAG)=' <<<"$1" || true; } \
        | sha256sum | cut -d' ' -f1
}
stamp=.venv/.otxlite-setup
want="$(fingerprint "$(plan)")"
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

build_plan="$(plan)"
eval "$build_plan"  # MMCV_BUILD, MMCV_REASON; for cuda: CUDA_HOME, TORCH_CUDA_ARCH_LIST, MMCV_CACHE_TAG, MMCV_CUDART
mmcv_ok() {  # mmcv's compiled ops import and answer, with CUDA kernels when this machine's build wants them.
    # Status: 0 yes; 2 no CUDA kernels; 3 they do not import; 128+N the call crashed with signal N.
    "$PY" - "$MMCV_BUILD" <<'PY' 2>/dev/null
import sys
try:
    from mmcv.ops import get_compiling_cuda_version
except ImportError:
    sys.exit(3)
sys.exit(2 if sys.argv[1] == "cuda" and get_compiling_cuda_version() == "not available" else 0)
PY
}
if [ "$MMCV_BUILD" = cuda ]; then
    step "mmcv $MMCV_VERSION: CUDA ops ($MMCV_REASON)"
else
    step "mmcv $MMCV_VERSION: CPU ops ($MMCV_REASON)"
fi

if mmcv_ok; then
    step "mmcv $MMCV_VERSION with compiled ops: already installed"
else
    torch_tag=$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')
    py_tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/otxlite/wheels/$py_tag-torch$torch_tag${MMCV_CACHE_TAG:+-$MMCV_CACHE_TAG}"
    mkdir -p "$cache"
    if [ "$MMCV_BUILD" = cuda ]; then
        # Only the CUDA cache: a CPU wheel elsewhere (PIP_FIND_LINKS) has the same name. Replace a CPU mmcv.
        "${PIP[@]}" uninstall -q -y mmcv 2>/dev/null || true
        step "mmcv $MMCV_VERSION: looking for a prebuilt CUDA wheel ($cache)"
        found() { PIP_FIND_LINKS="" "${PIP[@]}" install -q --no-index --no-deps --find-links "$cache" "mmcv==$MMCV_VERSION" 2>/dev/null; }
    else
        step "mmcv $MMCV_VERSION: looking for a prebuilt wheel (PIP_FIND_LINKS, $cache)"
        found() { "${PIP[@]}" install -q --no-deps --only-binary=:all: --find-links "$cache" "mmcv==$MMCV_VERSION" 2>/dev/null; }
    fi
    if ! found || ! mmcv_ok; then
        step "mmcv $MMCV_VERSION: no usable prebuilt wheel"
        command -v "${CXX:-g++}" >/dev/null || die "no C++ compiler found to build mmcv's ops. Install one (Debian/Ubuntu: apt-get install g++) and rerun."
        inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
        [ -f "$inc/Python.h" ] || die "Python headers missing ($inc/Python.h). Install them (Debian/Ubuntu: apt-get install python3-dev) and rerun."
        "${PIP[@]}" uninstall -q -y mmcv 2>/dev/null || true
        build_env=(MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}")
        build_args=()
        if [ "$MMCV_BUILD" = cuda ]; then
            step "mmcv $MMCV_VERSION: building from source with CUDA ops for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST (once per machine: about 45 minutes on 2 cores, under 10 on 16)"
            build_env=(MMCV_WITH_OPS=1 FORCE_CUDA=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" CUDA_HOME="$CUDA_HOME"
                       TORCH_CUDA_ARCH_LIST="$TORCH_CUDA_ARCH_LIST" PATH="$CUDA_HOME/bin:$PATH")
            build_args=(--no-cache-dir)  # never pip's cached wheel of the same source (it may be a CPU build)
            if [ -n "${MMCV_CUDART:-}" ]; then  # PyPI's CUDA libraries have no unversioned libcudart.so to link
                link_dir=$(mktemp -d)
                ln -s "$MMCV_CUDART" "$link_dir/libcudart.so"
                build_env+=(LIBRARY_PATH="$link_dir${LIBRARY_PATH:+:$LIBRARY_PATH}")
            fi
        else
            step "mmcv $MMCV_VERSION: building from source with ops (about 15 minutes on 2 cores, once per machine)"
        fi
        env "${build_env[@]}" \
            "${PIP[@]}" wheel -v ${build_args[@]+"${build_args[@]}"} --no-deps --no-build-isolation --no-binary mmcv "mmcv==$MMCV_VERSION" -w "$cache" \
            2>&1 | grep --line-buffered -E '^\s*\[[0-9]+/[0-9]+\]|error:|Error' || true
        [ "$MMCV_BUILD" = cuda ] && retry="; or build for the CPU with OTXLITE_MMCV_CUDA=0" || retry=""
        ls "$cache"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1 || die "the mmcv build failed; rerun with the command above to see the compiler output$retry."
        "${PIP[@]}" install -q --no-deps "$cache"/mmcv-"$MMCV_VERSION"-*.whl
        step "cached the mmcv wheel in $cache"
    fi
    "$PY" -c 'import mmcv.ops' || die "mmcv is installed but its compiled ops do not import (see above)."
    status=0
    mmcv_ok || status=$?
    if [ "$status" -ge 128 ]; then  # seen with a CC/CXX compiler wrapper: the build links, its first call crashes
        rm -f "$cache"/mmcv-"$MMCV_VERSION"-*.whl
        die "mmcv $MMCV_VERSION was built (CXX=${CXX:-g++}, CC=${CC:-gcc}), but calling its compiled ops crashes (signal $((status - 128))). Rebuild with the system compiler: CC=/usr/bin/gcc CXX=/usr/bin/g++ bash scripts/setup.sh (the broken wheel was removed from $cache)."
    fi
    [ "$status" = 2 ] && die "mmcv is installed, but its ops have no CUDA kernels (is a CPU-built wheel in $cache?)."
    [ "$status" = 0 ] || die "mmcv is installed but its compiled ops do not import (status $status)."
fi

step "otxlite and its dependencies (editable, with the dev extra)"
"${PIP[@]}" install -q -e ".[dev]"

step "mmdeploy 1.3.1 (--no-deps: its protobuf pin conflicts with onnx/openvino)"
"${PIP[@]}" install -q --no-deps "mmdeploy==1.3.1"

step "checking the stack"
"$PY" - <<'PY'
import mmcv, mmcv.ops, mmdet, mmengine, torch, openvino, nncf, datumaro  # noqa: F401
ops = mmcv.ops.get_compiling_cuda_version()
ops = "CPU" if ops == "not available" else f"CUDA {ops}"
print(f"torch {torch.__version__}, mmcv {mmcv.__version__} (ops ok: {ops}), mmdet {mmdet.__version__}, "
      f"mmengine {mmengine.__version__}, openvino {openvino.__version__}, nncf {nncf.__version__}, "
      f"datumaro {datumaro.__version__}")
PY
fingerprint "$build_plan" > "$stamp"
step "done: activate with 'source .venv/bin/activate', then run 'otxlite --help'"
