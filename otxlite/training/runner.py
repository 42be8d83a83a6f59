"""Building mmengine's Runner quietly: its INFO log goes to ``logs/``, the console shows only errors
(everything with ``--verbose``)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import logging
import os
import signal
import sys
import warnings
from typing import Any, Iterator

from mmengine.config import Config
from mmengine.runner import Runner

from otxlite.core.console import is_verbose, prints_to_log


class QuietRunner(Runner):
    """mmengine's Runner, except that what it prints while loading ``load_from`` or resuming ("Loads checkpoint
    by local backend from path: ...") goes to its logger like its other INFO messages."""

    def load_or_resume(self) -> None:
        with prints_to_log(self.logger):
            super().load_or_resume()


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a forked child (a DataLoader worker): ask Linux to kill it when its parent dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux/glibc: workers notice their parent's end themselves, later
        pass


@functools.cache
def workers_die_with_parent() -> None:
    """Make every process forked from now on (DataLoader workers) die when this one dies: a trainer killed by
    kill -9, the OOM killer or a CI timeout leaves no workers holding memory behind. Registered once."""
    os.register_at_fork(after_in_child=_die_with_parent)


def build_runner(cfg: Config) -> Any:
    """``QuietRunner.from_cfg`` with its console handler moved to stdout at ERROR level (INFO with --verbose)."""
    workers_die_with_parent()
    from mmengine.utils import import_modules_from_strings

    if cfg.get("custom_imports"):  # Config.fromfile would do this; configs built in memory need it done here
        import_modules_from_strings(**cfg.custom_imports)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.cuda.amp.autocast")  # mmdet's CSPNeXt
    if cfg.get("launcher") == "pytorch":
        _init_distributed()
    with contextlib.redirect_stdout(io.StringIO()):  # the start-up dump (environment, config) stays in the log file
        runner = QuietRunner.from_cfg(cfg)
    from mmengine.logging import MMLogger

    for logger in MMLogger._instance_dict.values():
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.setStream(sys.stdout)
                handler.setLevel(logging.INFO if is_verbose() else logging.ERROR)
    return runner


def _init_distributed() -> None:
    """Join torchrun's process group ourselves: mmengine's ``init_dist`` calls ``torch.cuda.set_device``,
    which a CPU-only torch lacks. The Runner then sees an initialised group and skips its own.
    On GPUs: NCCL, one GPU per process (torchrun's ``LOCAL_RANK``), which the Runner moves the model to."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl")
    else:
        dist.init_process_group(backend="gloo")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so both stop training the same clean way."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
