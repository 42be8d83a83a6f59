"""otxlite's self-contained ``weights.pth`` and safe loading of checkpoints.

``weights.pth`` holds only tensors and plain Python values, so ``torch.load(weights_only=True)``
reads it: state dict, resolved config (a plain dict: reading a model file never runs Python code from
it), labels, confidence threshold, otxlite version.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from otxlite import __version__
from otxlite.errors import OtxliteError
from otxlite.fileio import atomic_path

FORMAT_VERSION = 2


def save_weights(path: Path, state_dict: dict[str, torch.Tensor], config: dict[str, Any], labels: list[str],
                 confidence_threshold: float, template_id: str, metrics: dict[str, float] | None = None) -> Path:
    """Write a self-contained ``weights.pth`` atomically."""
    payload = {
        "otxlite_format": FORMAT_VERSION,
        "otxlite_version": __version__,
        "state_dict": {key: value.detach().cpu() for key, value in state_dict.items()},
        "config": config,
        "labels": list(labels),
        "confidence_threshold": float(confidence_threshold),
        "template_id": template_id,
        "metrics": {key: float(value) for key, value in (metrics or {}).items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_weights(path: Path) -> dict[str, Any]:
    """Read an otxlite ``weights.pth`` (weights only: no code runs from the file)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise OtxliteError(
            f"--load-weights {path}: this is not a readable PyTorch checkpoint (corrupt, truncated or another "
            f"format; {type(err).__name__}: {err}). Use the models/weights.pth of an otxlite training run."
        ) from err
    if not isinstance(payload, dict) or "otxlite_format" not in payload:
        raise OtxliteError(f"--load-weights {path}: this is not an otxlite weights.pth (no otxlite metadata). "
                           "Use the models/weights.pth of an otxlite training run.")
    if payload["otxlite_format"] != FORMAT_VERSION:
        raise OtxliteError(
            f"--load-weights {path}: written by otxlite {payload.get('otxlite_version')} in format "
            f"{payload['otxlite_format']}; this otxlite ({__version__}) reads format {FORMAT_VERSION}. "
            "Use the otxlite version that trained it, or retrain."
        )
    return payload


def weights_config(payload: dict[str, Any]) -> Any:
    """The mmengine Config stored in a loaded ``weights.pth``."""
    from mmengine.config import Config

    return Config(payload["config"])


@contextmanager
def trusted_mmengine_checkpoints() -> Iterator[None]:
    """Allow the classes mmengine puts into its own resume checkpoints (the user's own run):
    its HistoryBuffer of logged scalars and the numpy arrays, scalars and dtypes inside it."""
    import numpy as np
    from mmengine.logging import HistoryBuffer

    allowed = [HistoryBuffer, np.ndarray, np.dtype, np._core.multiarray._reconstruct, np._core.multiarray.scalar,
               getattr, *(getattr(np.dtypes, name) for name in np.dtypes.__all__)]
    with torch.serialization.safe_globals(allowed):
        yield
