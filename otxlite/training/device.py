"""Where training and PyTorch evaluation run (``--device auto|cuda|cpu``), and what CUDA changes in the config.

Mask R-CNN and SOLOv2 need mmcv's compiled ops (RoIAlign, NMS) on the device the model runs on; an mmcv built
for the CPU has no CUDA kernels, and the first RoIAlign on a CUDA tensor would fail deep inside training. So
the device is chosen up front, before anything in this process starts CUDA (a fall-back to the CPU hides the
GPUs through ``CUDA_VISIBLE_DEVICES``, which CUDA reads once, when it starts):

    probe = probe_cuda()                      # facts: GPUs (NVML), torch's CUDA, mmcv's compiled CUDA, a tiny op
    choice = choose_device(requested, probe)  # pure: "cuda", or "cpu" with at most one warning, or OtxliteError
    use_device(requested)                     # both, then hides the GPUs when the choice is the CPU

On CUDA, ``cuda_settings`` turns on automatic mixed precision (mmengine's ``AmpOptimWrapper``, FP16 as OTX
trains; ``learning_parameters.precision`` picks bf16 or fp32) and pinned host memory for the data loaders.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from otxlite.core.errors import OtxliteError
from otxlite.core.templates import PRECISIONS

DEVICES = ("auto", "cuda", "cpu")
AMP_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}
MMCV_VERSION = "2.1.0"

# NMS and RoIAlign of mmcv on the GPU (under torchrun, this rank's): run in a child process, so this one can
# still fall back to the CPU.
_OP_CHECK = """
import os, torch, mmcv.ops
torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]], device="cuda")
mmcv.ops.nms(boxes, torch.tensor([0.9, 0.8], device="cuda"), 0.5)
rois = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]], device="cuda")
mmcv.ops.roi_align(torch.rand(1, 1, 8, 8, device="cuda"), rois, (2, 2), 1.0, 0, "avg", True)
torch.cuda.synchronize()
"""
# The CUDA version mmcv's ops were compiled with, also asked in a child process: a build made with the wrong
# compiler segfaults right there (seen with a GCC wrapper on an H100 image), which must not kill the trainer.
_VERSION_CHECK = "from mmcv.ops import get_compiling_cuda_version; print(get_compiling_cuda_version())"


@dataclass(frozen=True)
class CudaProbe:
    """What decides whether this machine can train on CUDA.

    Attributes:
        gpus: visible NVIDIA GPUs (counted through NVML, so CUDA is not started).
        torch_cuda: the CUDA version torch was built with (``None``: a CPU-only torch).
        mmcv_cuda: the CUDA version mmcv's ops were compiled with (``None``: CPU-only ops).
        compute_capability: the GPUs' compute capabilities (``nvidia-smi``), e.g. ``"9.0"``; for the rebuild hint.
        op_error: the error of mmcv's NMS/RoIAlign on the GPU, if they were run and failed.
    """

    gpus: int
    torch_cuda: str | None
    mmcv_cuda: str | None
    compute_capability: str | None = None
    op_error: str | None = None


@dataclass(frozen=True)
class DeviceChoice:
    """The device to use (``"cuda"`` or ``"cpu"``) and the one warning to show about it, if any."""

    device: str
    warning: str | None = None


def _check_requested(requested: str) -> None:
    if requested not in DEVICES:
        raise OtxliteError(f"--device {requested}: choose one of {', '.join(DEVICES)}.")


def _major(version: str) -> str:
    return version.split(".")[0]


def rebuild_hint(probe: CudaProbe) -> str:
    """How to get mmcv's ops with CUDA kernels (one or two sentences)."""
    cuda = probe.torch_cuda or "13.0"
    arch = probe.compute_capability or "your GPU's compute capability (nvidia-smi --query-gpu=compute_cap --format=csv)"
    compiler = f"a CUDA {_major(cuda)}.x compiler (nvcc of a CUDA toolkit"
    if int(_major(cuda)) >= 13:  # PyPI's CUDA 13 compiler packages install beside torch's CUDA libraries
        pins = " ".join(f'"{name}=={cuda}.*"' for name in
                        ("nvidia-cuda-nvcc", "nvidia-cuda-cccl", "nvidia-nvvm", "nvidia-cuda-crt"))
        compiler += f", or PyPI's: .venv/bin/pip install {pins}"
    return (f"To build mmcv's ops with CUDA, install {compiler}) and run `bash scripts/setup.sh` again: with an "
            f"NVIDIA GPU and nvcc it rebuilds mmcv {MMCV_VERSION} with MMCV_WITH_OPS=1 FORCE_CUDA=1 "
            f"TORCH_CUDA_ARCH_LIST={arch} and caches the wheel. Or train on the CPU with --device cpu.")


def _mmcv_problem(probe: CudaProbe) -> str | None:
    """Why mmcv's ops cannot run on this GPU, or ``None`` if they can."""
    if probe.mmcv_cuda is None and probe.op_error:
        return (f"an NVIDIA GPU is present, but {probe.op_error}: mmcv {MMCV_VERSION} was probably built with "
                "another compiler than torch's. Rebuild it with the system compiler: "
                "CC=/usr/bin/gcc CXX=/usr/bin/g++ bash scripts/setup.sh.")
    if probe.mmcv_cuda is None:
        return (f"an NVIDIA GPU is present, but mmcv's compiled ops have no CUDA kernels (mmcv {MMCV_VERSION} was "
                "built for the CPU, FORCE_CUDA=0), so RoIAlign and NMS cannot run on it.")
    if probe.torch_cuda and _major(probe.mmcv_cuda) != _major(probe.torch_cuda):
        return (f"mmcv's ops were compiled with CUDA {probe.mmcv_cuda}, but torch uses CUDA {probe.torch_cuda}; "
                "they must share the major version.")
    if probe.op_error:
        return (f"mmcv's ops were compiled with CUDA {probe.mmcv_cuda}, but its NMS/RoIAlign failed on this GPU "
                f"({probe.op_error}); they were probably built for another GPU architecture.")
    return None


def choose_device(requested: str, probe: CudaProbe) -> DeviceChoice:
    """The device for ``--device requested`` on a machine described by ``probe``.

    ``auto`` takes the GPU when mmcv's ops run on it, else the CPU (with one warning when a GPU is there but
    unusable); ``cuda`` raises ``OtxliteError`` instead of falling back; ``cpu`` is always the CPU.
    """
    _check_requested(requested)
    if requested == "cpu":
        return DeviceChoice("cpu")
    if probe.torch_cuda is None or probe.gpus == 0:
        if requested == "auto":
            return DeviceChoice("cpu")
        if probe.torch_cuda is None:
            raise OtxliteError("--device cuda: this torch is a CPU-only build, so it cannot use a GPU. Install "
                               "PyPI's default torch build (it includes CUDA: `bash scripts/setup.sh` without "
                               "OTXLITE_TORCH_INDEX), or use --device cpu.")
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise OtxliteError("--device cuda: no NVIDIA GPU is visible here"
                           f"{f' (CUDA_VISIBLE_DEVICES={hidden!r})' if hidden is not None else ''}. "
                           "Check that `nvidia-smi` lists one, or use --device cpu.")
    problem = _mmcv_problem(probe)
    if problem is None:
        return DeviceChoice("cuda")
    if requested == "cuda":
        raise OtxliteError(f"--device cuda: {problem} {rebuild_hint(probe)}")
    return DeviceChoice("cpu", f"{problem[0].upper()}{problem[1:]} Training runs on the CPU instead, which is much "
                               f"slower. {rebuild_hint(probe)}")


def _compute_capability() -> str | None:
    """The visible GPUs' compute capabilities from ``nvidia-smi`` (``"8.6;9.0"``), or ``None``."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    caps = sorted({line.strip() for line in out.splitlines() if line.strip()}, key=lambda c: float(c))
    return ";".join(caps) or None


def cuda_op_error() -> str | None:
    """Run mmcv's NMS and RoIAlign on the GPU in a child process; the last line of its error, or ``None``."""
    try:
        result = subprocess.run([sys.executable, "-c", _OP_CHECK], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return "NMS/RoIAlign on the GPU did not finish within 300 s"
    if result.returncode == 0:
        return None
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"the check exited with code {result.returncode}"


def mmcv_cuda_version() -> tuple[str | None, str | None]:
    """The CUDA version of mmcv's compiled ops (``None``: CPU-only ops), asked in a child process; and, if
    asking crashed that process, what happened (else ``None``)."""
    try:
        result = subprocess.run([sys.executable, "-c", _VERSION_CHECK], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return None, "asking mmcv's ops for their CUDA version did not finish within 300 s"
    if result.returncode != 0:
        crash = f"signal {-result.returncode}" if result.returncode < 0 else f"exit code {result.returncode}"
        return None, f"asking mmcv's compiled ops for their CUDA version crashed the process ({crash})"
    compiled = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "not available"
    return (None if compiled == "not available" else compiled), None


def probe_cuda(run_op: bool = True) -> CudaProbe:
    """Look at this machine without starting CUDA in this process (see ``CudaProbe``); ``run_op``: also run
    mmcv's ops on the GPU (in a child process) when everything else says they should work."""
    import torch

    try:
        importlib.import_module("mmcv.ops")  # the compiled extension loads here
    except ImportError as err:
        raise OtxliteError(f"mmcv's compiled ops do not import ({err}). Run `bash scripts/setup.sh` again to "
                           f"rebuild mmcv {MMCV_VERSION} for this torch ({torch.__version__}).") from err
    torch_cuda = torch.version.cuda
    gpus = torch.cuda.device_count() if torch_cuda else 0  # NVML where it can, which does not start CUDA
    mmcv_cuda, crash = mmcv_cuda_version() if gpus else (None, None)  # without a GPU, the CPU is the only choice
    probe = CudaProbe(gpus=gpus, torch_cuda=torch_cuda, mmcv_cuda=mmcv_cuda,
                      compute_capability=_compute_capability() if gpus else None, op_error=crash)
    if run_op and gpus and _mmcv_problem(probe) is None:
        probe = CudaProbe(**{**probe.__dict__, "op_error": cuda_op_error()})
    return probe


def use_device(requested: str, probe: CudaProbe | None = None) -> str:
    """Check ``--device requested`` and make this process use the chosen device; returns ``"cuda"`` or ``"cpu"``.

    Call it before anything starts CUDA. ``probe`` defaults to ``probe_cuda()`` (pass one to decide for
    another machine). The CPU is chosen by hiding the GPUs (``CUDA_VISIBLE_DEVICES=""``); a warning is shown
    once (by rank 0 under torchrun).
    """
    _check_requested(requested)
    if requested == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return "cpu"
    choice = choose_device(requested, probe or probe_cuda())
    if choice.warning and os.environ.get("RANK", "0") == "0":
        from otxlite.core.console import err_console

        err_console.print(f"[yellow]Warning:[/] {choice.warning}", soft_wrap=True)
    if choice.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        if choice.warning:  # a GPU is there. CUDA reads the variable when it starts; had it started already
            import torch  # (counting GPUs without NVML starts it), mmengine would still put the model on the GPU

            if torch.cuda.is_available():
                raise OtxliteError("--device auto: CUDA had already started in this process, so the GPU cannot be "
                                   "hidden for the fall-back to the CPU. Run again with --device cpu.")
    return choice.device


def check_precision(precision: str, cuda: bool) -> None:
    """A one-paragraph error for a ``learning_parameters.precision`` the device cannot train in."""
    if precision not in PRECISIONS:
        raise OtxliteError(f"learning_parameters.precision={precision!r}: choose one of {', '.join(PRECISIONS)}.")
    if not cuda and precision in AMP_DTYPES:
        raise OtxliteError(f"learning_parameters.precision={precision}: mixed precision needs a CUDA GPU, and this "
                           "run is on the CPU. Use precision=auto or fp32 (or train on a GPU with --device cuda).")


def cuda_settings(cfg: dict[str, Any], precision: str, cuda: bool) -> None:
    """Adapt a runner config dict to its device: on CUDA, mixed precision (``AmpOptimWrapper`` with a dynamic
    loss scale, unless ``precision`` is ``fp32``) and pinned host memory in the data loaders."""
    check_precision(precision, cuda)
    dtype = AMP_DTYPES.get("fp16" if precision == "auto" else precision) if cuda else None
    if dtype is not None:
        cfg["optim_wrapper"].update(type="AmpOptimWrapper", loss_scale="dynamic", dtype=dtype)
    for key in ("train_dataloader", "val_dataloader"):
        if key in cfg:
            cfg[key]["pin_memory"] = cuda
