"""The peers users compare otxlite with, measured by ``scripts/benchmark.py`` in the same run.

Ultralytics YOLO segmentation models (``yolo11n-seg``, ``yolov8s-seg``: random weights built from their
YAML, so nothing is downloaded) exported with Ultralytics' own OpenVINO exporter, then timed two ways,
each with the LATENCY hint and f32 like otxlite's IRs:

* network: one infer request on a preprocessed tensor (what otxlite's ``latency_ms`` is);
* end to end: ``YOLO(ir).predict(image_path, retina_masks=True, conf=0, max_det=100)``: read and
  decode the image, letterbox, infer, NMS and the instance masks at the image's own size (what
  otxlite's ``end_to_end_ms`` is: ``Predictor.predict(cv2.imread(path))``), compiled with the same f32
  pin, on 100 detections like otxlite's templates (random weights score under any usual threshold).

Ultralytics is not an otxlite dependency: install it beside (``pip install -e .[benchmark]``, or into
a folder on ``PYTHONPATH``); without it the peer rows say so.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from otxlite.core.measure import spread, time_calls

PEERS = ("yolo11n-seg", "yolov8s-seg")
MAX_DETECTIONS = 100  # otxlite's templates keep at most 100 per image


@contextmanager
def _compiled_with(pinned: dict[str, Any]) -> Iterator[None]:
    """Every ``openvino.Core.compile_model`` call inside also gets ``pinned`` (otxlite's f32 pin)."""
    import openvino as ov

    original = ov.Core.compile_model

    def compile_model(self: Any, model: Any, device_name: str | None = None, config: dict | None = None,
                      **kwargs: Any) -> Any:
        return original(self, model, device_name, {**(config or {}), **pinned}, **kwargs)

    ov.Core.compile_model = compile_model
    try:
        yield
    finally:
        ov.Core.compile_model = original


def phase_peer(spec: dict[str, Any]) -> dict[str, Any]:
    """Export one peer at ``spec["size"]`` and time its network (compiled with ``spec["config"]``, otxlite's
    LATENCY f32 settings) and its end-to-end prediction."""
    import numpy as np
    import openvino as ov
    from ultralytics import YOLO

    os.chdir(spec["work_dir"])  # Ultralytics writes its export beside the model it was built from
    size = int(spec["size"])
    exported = Path(YOLO(f"{spec['model']}.yaml", task="segment").export(format="openvino", imgsz=size,
                                                                          half=False, dynamic=False, verbose=False))
    xml = next(exported.glob("*.xml"))
    compiled = ov.Core().compile_model(str(xml), "CPU", spec["config"])
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(np.zeros((1, 3, size, size), np.float32)))
    result: dict[str, Any] = dict(model=spec["model"], input_size=size, ultralytics=_version(),
                                  latency_ms=spread(time_calls(request.infer, spec["warmup"], spec["repeats"])))
    del request, compiled
    with _compiled_with(spec["config"]):  # Ultralytics compiles with the LATENCY hint only: bf16 where the CPU has it
        model = YOLO(str(exported), task="segment")

        def predict() -> Any:  # every candidate scores, so NMS and the masks run on 100, as otxlite's are timed
            return model.predict(spec["image"], imgsz=size, retina_masks=True, conf=0.0, max_det=MAX_DETECTIONS,
                                 verbose=False)

        result["end_to_end_ms"] = spread(time_calls(predict, spec["warmup"], spec["repeats"]))
        result["detections"] = len(predict()[0].boxes)
    result["bin_mb"] = round(sum(p.stat().st_size for p in exported.glob("*.bin")) / 1e6, 2)
    return result


def _version() -> str:
    import ultralytics

    return ultralytics.__version__
