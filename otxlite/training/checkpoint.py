"""Loading mmengine's own resume checkpoints with ``weights_only`` (the otxlite ``weights.pth`` is
:mod:`otxlite.core.artifacts`)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


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
