"""The shared rich console (stdout) and error console (stderr), and how much of the libraries' chatter
reaches them: without ``--verbose`` only otxlite's own output does."""

from __future__ import annotations

import io
import logging
import os
from contextlib import contextmanager, redirect_stdout
from typing import Iterator

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# Loggers whose warnings are noise for a user: torch's "No CUDA runtime is found, using CUDA_HOME=..."
# (a CUDA toolkit without a GPU) is logged on importing torch.utils.cpp_extension, which mmcv/mmengine do.
QUIET_LOGGERS = ("torch.utils.cpp_extension",)
_verbose = False


def set_verbose(verbose: bool) -> None:
    """``--verbose`` lets the libraries' own messages through; otherwise they are dropped or go to log files."""
    global _verbose
    _verbose = verbose
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.ERROR)
    if not verbose:  # torch's C++ warnings (e.g. the ONNX tracer's shape inference notes), read at torch's import
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")


def is_verbose() -> bool:
    """Whether ``--verbose`` was given."""
    return _verbose


class _LogLines(io.TextIOBase):
    """A text stream that logs each non-empty line."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        self.logger, self.level = logger, level

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.logger.log(self.level, line)
        return len(text)


@contextmanager
def prints_to_log(logger: logging.Logger, level: int = logging.INFO) -> Iterator[None]:
    """Send what library code ``print``s (mmengine's "Loads checkpoint by local backend ...") to ``logger``,
    whose handlers decide where it goes: the run's log file, the console only with ``--verbose``."""
    with redirect_stdout(_LogLines(logger, level)):
        yield
