#!/usr/bin/env bash
# How scripts/setup.sh builds mmcv's compiled ops on this machine: with CUDA kernels for its NVIDIA GPUs, or
# for the CPU. Prints shell assignments for `eval`:
#
#   MMCV_BUILD=cuda|cpu    MMCV_REASON=why, in words
#   and for cuda: CUDA_HOME (the toolkit: nvcc, headers, libcudart), TORCH_CUDA_ARCH_LIST (the GPUs' compute
#   capabilities, the highest also as PTX for newer GPUs), MMCV_CACHE_TAG (nvcc version + architectures, for
#   the wheel cache), MMCV_CUDART (set when the toolkit has no unversioned libcudart.so to link against).
#
#   bash scripts/mmcv_build_plan.sh .venv/bin/python
#   OTXLITE_MMCV_CUDA=0   always the CPU build;  OTXLITE_MMCV_CUDA=1   a GPU without a usable compiler is an error
#
# CUDA needs: torch built with CUDA, `nvidia-smi` listing a GPU, and a toolkit whose nvcc has torch's CUDA
# major version: $CUDA_HOME, the nvcc on PATH, /usr/local/cuda, or PyPI's CUDA 13+ compiler packages
# installed into the venv beside torch's CUDA libraries (site-packages/nvidia/cu13).
set -euo pipefail
PY=${1:?usage: mmcv_build_plan.sh PYTHON}
want=${OTXLITE_MMCV_CUDA:-auto}

say() { printf '%s=%q\n' "$1" "$2"; }
cpu() {
    [ "$want" = 1 ] && { echo "mmcv_build_plan: OTXLITE_MMCV_CUDA=1, but $1" >&2; exit 1; }
    say MMCV_BUILD cpu
    say MMCV_REASON "$1"
    exit 0
}

[ "$want" = 0 ] && cpu "OTXLITE_MMCV_CUDA=0"
torch_cuda=$("$PY" -c 'import torch; print(torch.version.cuda or "")')
[ -n "$torch_cuda" ] || cpu "torch is a CPU-only build"
command -v nvidia-smi >/dev/null || cpu "no NVIDIA GPU: nvidia-smi not found"
caps=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d ' \r' \
    | grep -E '^[0-9]+\.[0-9]+$' | sort -u -t. -k1,1n -k2,2n | paste -sd';' - || true)
[ -n "$caps" ] || cpu "no NVIDIA GPU: nvidia-smi lists none"
sm="sm_${caps//./}"
sm="${sm//;/, sm_}"
major=${torch_cuda%%.*}

site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
on_path=$(command -v nvcc || true)
candidates=("${CUDA_HOME:-}" "${on_path:+$(dirname "$(dirname "$(readlink -f "$on_path")")")}" /usr/local/cuda
            "$site/nvidia/cu$major")
home="" rejected=""
for candidate in "${candidates[@]}"; do
    [ -n "$candidate" ] && [ -x "$candidate/bin/nvcc" ] || continue
    version=$("$candidate/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
    if [ "${version%%.*}" != "$major" ]; then
        rejected+=" nvcc ${version:-?} at $candidate (not CUDA $major);"
    elif [ ! -f "$candidate/include/cuda_runtime.h" ]; then
        rejected+=" $candidate has no CUDA runtime headers;"
    elif [ ! -e "$candidate/include/nv/target" ] && [ ! -e "$candidate/include/cccl/nv/target" ]; then
        rejected+=" $candidate has no CCCL headers (nvidia-cuda-cccl);"
    else
        home=$candidate
        break
    fi
done
if [ -z "$home" ]; then
    pypi=""
    if [ "$major" -ge 13 ]; then
        pypi=" or the PyPI compiler (.venv/bin/pip install"
        for name in nvidia-cuda-nvcc nvidia-cuda-cccl nvidia-nvvm nvidia-cuda-crt; do
            pypi+=" \"$name==$torch_cuda.*\""
        done
        pypi+=")"
    fi
    cpu "an NVIDIA GPU ($sm) is present, but no CUDA $major compiler was found;$rejected for CUDA ops install a CUDA $torch_cuda toolkit$pypi and rerun"
fi

arch="${caps}+PTX"
say MMCV_BUILD cuda
say MMCV_REASON "NVIDIA GPU $sm, nvcc $version at $home"
say CUDA_HOME "$home"
say TORCH_CUDA_ARCH_LIST "$arch"
say MMCV_CACHE_TAG "cuda$version-sm$(tr -d . <<<"$caps" | tr ';' _)"
if [ ! -e "$home/lib64/libcudart.so" ] && [ ! -e "$home/lib/libcudart.so" ]; then
    cudart=$(ls "$home"/lib*/libcudart.so.* 2>/dev/null | head -n1 || true)
    [ -n "$cudart" ] && say MMCV_CUDART "$cudart"
fi
exit 0
