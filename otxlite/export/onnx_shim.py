"""Run mmdeploy's ``torch.onnx.export`` call with the TorchScript-based exporter.

torch >= 2.9 makes ``torch.onnx.export`` default to ``dynamo=True``. The dynamo exporter traces with
``torch.export`` and never sees the function and symbolic rewrites that mmdeploy installs (NMS, RoI
feature extraction, mask heads), so mmdeploy 1.3.1 fails or produces an unusable graph. mmdeploy calls
``torch.onnx.export`` without a ``dynamo`` argument; :func:`torchscript_onnx_export` fills it in as
``False``, only while the ``with`` block runs, and restores the original function afterwards, also
when the export raises.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def torchscript_onnx_export() -> Iterator[None]:
    """Inside the block, ``torch.onnx.export(...)`` means ``torch.onnx.export(..., dynamo=False)``."""
    import torch.onnx

    original = torch.onnx.export

    @functools.wraps(original)
    def export(*args: Any, **kwargs: Any) -> Any:
        kwargs["dynamo"] = False
        return original(*args, **kwargs)

    torch.onnx.export = export
    try:
        yield
    finally:
        torch.onnx.export = original
