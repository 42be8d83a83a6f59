"""scripts/setup.sh and scripts/mmcv_build_plan.sh: which mmcv build a machine gets (CPU, or CUDA for its GPUs).

A GPU machine is simulated with a fake ``nvidia-smi`` and a fake CUDA toolkit (an ``nvcc`` that only prints
its version, headers, a versioned ``libcudart``). setup.sh runs against a ``.venv/bin/python`` that records pip
commands instead of running them and otherwise is this test's Python, so nothing is installed or built.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import slow_fixture

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "scripts" / "mmcv_build_plan.sh"
PIP = "-m pip --disable-pip-version-check"  # how setup.sh runs pip, as the recording python sees it


def write_executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def fake_nvidia_smi(bin_dir: Path, *capabilities: str) -> Path:
    lines = "".join(f"echo {cap}\n" for cap in capabilities)
    return write_executable(bin_dir / "nvidia-smi", f"#!/bin/sh\n{lines}")


def fake_toolkit(home: Path, version: str) -> Path:
    """What mmcv_build_plan.sh looks at in a CUDA toolkit; PyPI's packages have no unversioned libcudart.so."""
    write_executable(home / "bin" / "nvcc", f"#!/bin/sh\necho 'Cuda compilation tools, release {version}, V{version}.1'\n")
    (home / "include" / "nv").mkdir(parents=True)
    (home / "include" / "nv" / "target").write_text("")
    (home / "include" / "cuda_runtime.h").write_text("")
    (home / "lib").mkdir()
    (home / "lib" / f"libcudart.so.{version.split('.')[0]}").write_text("")
    return home


def fake_python(path: Path, torch_cuda: str, site: Path) -> Path:
    """Answers the two questions mmcv_build_plan.sh asks Python: torch's CUDA version, the venv's site-packages."""
    return write_executable(path, f"""#!/bin/sh
case "$2" in
  *torch*) echo {shlex.quote(torch_cuda)} ;;
  *sysconfig*) echo {shlex.quote(str(site))} ;;
esac
""")


def environment(bin_dir: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_HOME", "CUDA_PATH", "OTXLITE_MMCV_CUDA")}
    if bin_dir is not None:
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return {**env, **extra}


def plan(python: Path | str, env: dict[str, str]) -> tuple[int, dict[str, str], str]:
    result = subprocess.run(["bash", str(PLAN), str(python)], capture_output=True, text=True, env=env, timeout=120)
    values = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        values[key] = shlex.split(value)[0] if value else ""
    return result.returncode, values, result.stderr


no_real_gpu = pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")


def cpu_reason_here() -> str:
    """Why this machine gets the CPU build: a CPU-only torch is asked about first, then the GPU."""
    return "no NVIDIA GPU: nvidia-smi not found" if torch.version.cuda else "torch is a CPU-only build"


# ---------------------------------------------------------------- mmcv_build_plan.sh


@no_real_gpu
def test_plan_without_a_gpu_is_the_cpu_build(tmp_path: Path) -> None:
    rc, values, _ = plan(sys.executable, environment())
    assert rc == 0
    assert values == {"MMCV_BUILD": "cpu", "MMCV_REASON": cpu_reason_here()}
    rc, values, _ = plan(fake_python(tmp_path / "python", "12.1", tmp_path / "site"), environment())
    assert (rc, values) == (0, {"MMCV_BUILD": "cpu", "MMCV_REASON": "no NVIDIA GPU: nvidia-smi not found"})
    rc, values, _ = plan(fake_python(tmp_path / "cpu_torch", "", tmp_path / "site"), environment())
    assert (rc, values) == (0, {"MMCV_BUILD": "cpu", "MMCV_REASON": "torch is a CPU-only build"})


def test_plan_with_a_gpu_and_pypi_compiler_in_the_venv(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    home = fake_toolkit(site / "nvidia" / "cu11", "11.8")  # CUDA 11: no real toolkit on the machine gets chosen
    fake_nvidia_smi(tmp_path / "bin", "9.0", "8.6", "9.0")
    rc, values, err = plan(fake_python(tmp_path / "python", "11.8", site), environment(tmp_path / "bin"))
    assert rc == 0, err
    assert values["MMCV_BUILD"] == "cuda"
    assert values["CUDA_HOME"] == str(home)
    assert values["TORCH_CUDA_ARCH_LIST"] == "8.6;9.0+PTX"
    assert values["MMCV_CACHE_TAG"] == "cuda11.8-sm86_90"
    assert values["MMCV_CUDART"] == str(home / "lib" / "libcudart.so.11")
    assert "sm_86, sm_90" in values["MMCV_REASON"] and "nvcc 11.8" in values["MMCV_REASON"]


def test_plan_with_cuda_home_set(tmp_path: Path) -> None:
    home = fake_toolkit(tmp_path / "cuda", "11.8")
    (home / "lib64").mkdir()
    (home / "lib64" / "libcudart.so").write_text("")
    fake_nvidia_smi(tmp_path / "bin", "12.0")
    rc, values, err = plan(fake_python(tmp_path / "python", "11.8", tmp_path / "site"),
                           environment(tmp_path / "bin", CUDA_HOME=str(home)))
    assert rc == 0, err
    assert (values["CUDA_HOME"], values["TORCH_CUDA_ARCH_LIST"]) == (str(home), "12.0+PTX")
    assert "MMCV_CUDART" not in values


def test_plan_with_a_gpu_but_no_matching_compiler_builds_for_the_cpu(tmp_path: Path) -> None:
    fake_toolkit(tmp_path / "other", "12.4")
    fake_nvidia_smi(tmp_path / "bin", "9.0")
    python = fake_python(tmp_path / "python", "11.8", tmp_path / "site")
    rc, values, _ = plan(python, environment(tmp_path / "bin", CUDA_HOME=str(tmp_path / "other")))
    assert rc == 0
    assert values["MMCV_BUILD"] == "cpu"
    assert "NVIDIA GPU (sm_90) is present, but no CUDA 11 compiler" in values["MMCV_REASON"]
    assert f"nvcc 12.4 at {tmp_path / 'other'} (not CUDA 11)" in values["MMCV_REASON"]

    rc, values, _ = plan(fake_python(tmp_path / "python14", "14.1", tmp_path / "site"), environment(tmp_path / "bin"))
    assert values["MMCV_BUILD"] == "cpu"  # CUDA 13+: PyPI's compiler packages are offered, pinned to torch's CUDA
    assert '.venv/bin/pip install "nvidia-cuda-nvcc==14.1.*" "nvidia-cuda-cccl==14.1.*"' in values["MMCV_REASON"]


def test_plan_forced(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "bin", "9.0")
    python = fake_python(tmp_path / "python", "11.8", tmp_path / "site")
    rc, values, _ = plan(python, environment(tmp_path / "bin", OTXLITE_MMCV_CUDA="0"))
    assert (rc, values) == (0, {"MMCV_BUILD": "cpu", "MMCV_REASON": "OTXLITE_MMCV_CUDA=0"})
    rc, _, err = plan(fake_python(tmp_path / "cpu_torch", "", tmp_path / "site"),
                      environment(tmp_path / "bin", OTXLITE_MMCV_CUDA="1"))
    assert rc == 1 and "OTXLITE_MMCV_CUDA=1, but torch is a CPU-only build" in err


# ---------------------------------------------------------------- setup.sh with recorded pip


@slow_fixture()
def checkout(tmp_path: Path) -> Path:
    """A checkout with setup.sh and a .venv whose python records pip commands (with the build variables)."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("scripts/setup.sh", "scripts/mmcv_build_plan.sh", "pyproject.toml"):
        shutil.copy(ROOT / name, repo / name)
    write_executable(repo / ".venv" / "bin" / "python", f"""#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = pip ]; then
    echo "$* | FORCE_CUDA=$FORCE_CUDA TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST CUDA_HOME=$CUDA_HOME LIBRARY_PATH=$LIBRARY_PATH" >> "$PIP_LOG"
    exit 0
fi
exec {shlex.quote(sys.executable)} "$@"
""")
    return repo


def run_setup(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/setup.sh"], cwd=repo, capture_output=True, text=True, timeout=600,
                          env={**env, "PYTHON": sys.executable, "PIP_LOG": str(repo / "pip.log"),
                               "XDG_CACHE_HOME": str(repo / "cache")})


def cpu_mmcv_here() -> None:
    from mmcv.ops import get_compiling_cuda_version

    if get_compiling_cuda_version() != "not available":
        pytest.skip("this machine's mmcv has CUDA ops")


@no_real_gpu
def test_setup_on_a_cpu_machine_keeps_the_cpu_mmcv(checkout: Path) -> None:
    cpu_mmcv_here()
    result = run_setup(checkout, environment())
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"mmcv 2.1.0: CPU ops ({cpu_reason_here()})" in out
    assert "mmcv 2.1.0 with compiled ops: already installed" in out
    assert "(ops ok: CPU)" in out
    pip = (checkout / "pip.log").read_text()
    assert f"{PIP} wheel" not in pip and f"{PIP} uninstall" not in pip
    again = run_setup(checkout, environment())
    assert "environment is up to date" in again.stdout, again.stdout + again.stderr


def test_setup_on_a_gpu_machine_builds_mmcv_with_cuda(checkout: Path, tmp_path: Path) -> None:
    """A CPU-only mmcv on a GPU machine with a compiler is replaced by a CUDA build for the GPU's architecture."""
    cpu_mmcv_here()
    if not torch.version.cuda:
        pytest.skip("a CPU-only torch gets no CUDA build")
    if shutil.which("g++") is None:
        pytest.skip("setup.sh needs g++ before it builds")
    home = fake_toolkit(tmp_path / "toolkit", torch.version.cuda)
    fake_nvidia_smi(tmp_path / "bin", "9.0")
    result = run_setup(checkout, environment(tmp_path / "bin", CUDA_HOME=str(home)))
    out = result.stdout + result.stderr
    assert f"mmcv 2.1.0: CUDA ops (NVIDIA GPU sm_90, nvcc {torch.version.cuda} at {home})" in out
    assert "building from source with CUDA ops for TORCH_CUDA_ARCH_LIST=9.0+PTX" in out
    # The recorded pip is not a compiler: no wheel appears, and setup says how to fall back.
    assert result.returncode == 1 and "OTXLITE_MMCV_CUDA=0" in out
    pip = (checkout / "pip.log").read_text().splitlines()
    uninstall = next(i for i, line in enumerate(pip) if line.startswith(f"{PIP} uninstall -q -y mmcv"))
    lookup = next(i for i, line in enumerate(pip) if f"--no-index --no-deps --find-links {checkout / 'cache'}" in line)
    assert uninstall < lookup, "the CPU mmcv goes before the CUDA cache is looked at (same wheel name)"
    wheel = next(line for line in pip if line.startswith(f"{PIP} wheel"))
    assert "--no-cache-dir" in wheel and "--no-binary mmcv mmcv==2.1.0" in wheel
    cache = checkout / "cache" / "otxlite" / "wheels"
    assert [p.name.rsplit("-", 2)[1:] for p in cache.iterdir()] == [[f"cuda{torch.version.cuda}", "sm90"]]
    assert f"FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0+PTX CUDA_HOME={home} LIBRARY_PATH=" in wheel
    assert not wheel.endswith("LIBRARY_PATH="), "PyPI-style toolkit: a libcudart.so link for the linker"


@no_real_gpu
def test_setup_removes_an_mmcv_build_that_crashes_and_says_which_compiler_built_it(checkout: Path) -> None:
    """Seen on an H100 machine whose CC/CXX named a compiler wrapper: mmcv built and imported, and its first call
    (get_compiling_cuda_version) crashed. setup.sh must not call that 'no CUDA kernels', nor keep the wheel."""
    if shutil.which("g++") is None:
        pytest.skip("setup.sh needs g++ before it builds")
    write_executable(checkout / ".venv" / "bin" / "python", f"""#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = pip ]; then
    echo "$*" >> "$PIP_LOG"
    out=""; for arg in "$@"; do [ "$prev" = "-w" ] && out=$arg; prev=$arg; done
    [ -n "$out" ] && touch "$out/mmcv-2.1.0-cp312-cp312-linux_x86_64.whl"
    exit 0
fi
[ "$1" = "-" ] && kill -SEGV $$  # the mmcv check: its call into the compiled ops crashes
exec {shlex.quote(sys.executable)} "$@"
""")
    wrapper = write_executable(checkout / "wrapper" / "g++", '#!/bin/sh\nexec g++ "$@"\n')
    result = run_setup(checkout, environment(CXX=str(wrapper), CC="/opt/wrapper/gcc"))
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "building from source with ops" in out
    assert f"(CXX={wrapper}, CC=/opt/wrapper/gcc), but calling its compiled ops crashes (signal 11)" in out
    assert "CC=/usr/bin/gcc CXX=/usr/bin/g++ bash scripts/setup.sh" in out
    assert "no CUDA kernels" not in out
    assert not list((checkout / "cache").rglob("mmcv-*.whl")), "the broken wheel is not kept for the next run"
