"""The peers users compare otxlite with, measured by ``scripts/benchmark.py`` in the same run.

Ultralytics YOLO segmentation models (``yolo11n-seg``, ``yolo26n-seg``: random weights built from their
YAML, so nothing is downloaded; the first torch seed whose build answers the worst load, since some random builds
score nothing at all) exported with Ultralytics' own OpenVINO exporter, FP32 and INT8. INT8 is
Ultralytics' own recipe (NNCF, mixed preset, its detection head left in FP32) calibrated on the images
otxlite's INT8 calibrates on, letterboxed as Ultralytics' calibration loader does (its own loader would
download a dataset). Each is timed with the LATENCY hint and f32 like otxlite's IRs:

* network: one infer request on a preprocessed tensor (what otxlite's ``latency_ms`` is);
* end to end: ``YOLO(ir).predict(image_path, retina_masks=True, conf=0, max_det=N)``: read and decode the
  image, letterbox, infer, NMS and N instance masks at the image's own size, for each load of ``LOADS``
  (otxlite's side decodes the N best detections of its IR the same way: its ``end_to_end_<load>_ms``),
  compiled with the same f32 pin.

Ultralytics is not an otxlite dependency: install it beside (``pip install -e .[benchmark]``, or into
a folder on ``PYTHONPATH``); without it the peer rows say so.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from otxlite.core.measure import spread, time_calls

PEERS = ("yolo11n-seg", "yolo26n-seg")
LOADS = {"worst": 100, "typical": 10}  # detections per image: the cap of otxlite's templates, and a usual answer
SEEDS = 20  # random builds tried for one that answers the worst load


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


@contextmanager
def _calibrating_on(images: list[str], size: int) -> Iterator[None]:
    """Ultralytics' INT8 export calibrates on ``images`` (letterboxed to ``size``, RGB, uint8 CHW, as its own
    calibration loader gives them) instead of a dataset it would download."""
    import cv2
    import torch
    from ultralytics.data.augment import LetterBox
    from ultralytics.engine.exporter import Exporter

    letterbox = LetterBox(new_shape=(size, size), auto=False)
    batches = [{"img": torch.from_numpy(letterbox(image=cv2.imread(path))[..., ::-1].transpose(2, 0, 1).copy())[None]}
               for path in images]
    original = Exporter.get_int8_calibration_dataloader
    Exporter.get_int8_calibration_dataloader = lambda self, prefix="": batches
    try:
        yield
    finally:
        Exporter.get_int8_calibration_dataloader = original


def phase_peer(spec: dict[str, Any]) -> dict[str, Any]:
    """Export one peer at ``spec["size"]`` in FP32 and INT8 and time each: network (compiled with
    ``spec["config"]``, otxlite's LATENCY f32 settings) and end to end at every load."""
    import torch
    from ultralytics import YOLO

    os.chdir(spec["work_dir"])  # Ultralytics writes its export beside the model it was built from
    size = int(spec["size"])
    seed = _answering_seed(spec["model"], spec["image"], size)
    result: dict[str, Any] = dict(model=spec["model"], input_size=size, ultralytics=_version(),
                                  calibration_images=len(spec["calibration"]), seed=seed)
    for precision, options in (("FP32", {}), ("INT8", {"int8": True, "data": "coco8-seg.yaml"})):
        torch.manual_seed(seed)  # the same random weights in both
        with _calibrating_on(spec["calibration"], size):
            exported = Path(YOLO(f"{spec['model']}.yaml", task="segment").export(
                format="openvino", imgsz=size, half=False, dynamic=False, verbose=False, **options))
        result[precision] = _measure(exported, spec)
    return result


def _answering_seed(model: str, image: str, size: int) -> int:
    """The first torch seed whose random build of ``model`` returns the worst load's detections on ``image`` in
    PyTorch (at confidence 0, as timed)."""
    import torch
    from ultralytics import YOLO

    for seed in range(SEEDS):
        torch.manual_seed(seed)
        found = YOLO(f"{model}.yaml", task="segment").predict(image, imgsz=size, conf=0.0, max_det=LOADS["worst"],
                                                               verbose=False)
        if len(found[0].boxes) == LOADS["worst"]:
            return seed
    raise RuntimeError(f"no random build of {model} out of {SEEDS} returns {LOADS['worst']} detections")


def _measure(exported: Path, spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import openvino as ov
    from ultralytics import YOLO

    size = int(spec["size"])
    xml = next(exported.glob("*.xml"))
    compiled = ov.Core().compile_model(str(xml), "CPU", spec["config"])
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(np.zeros((1, 3, size, size), np.float32)))
    result: dict[str, Any] = dict(latency_ms=spread(time_calls(request.infer, spec["warmup"], spec["repeats"])),
                                  end_to_end_ms={}, detections={})
    del request, compiled
    with _compiled_with(spec["config"]):  # Ultralytics compiles with the LATENCY hint only: bf16 where the CPU has it
        model = YOLO(str(exported), task="segment")
        for load, count in LOADS.items():
            def predict(count: int = count) -> Any:  # conf 0: every candidate competes for the count
                return model.predict(spec["image"], imgsz=size, retina_masks=True, conf=0.0, max_det=count,
                                     verbose=False)

            result["end_to_end_ms"][load] = spread(time_calls(predict, spec["warmup"], spec["repeats"]))
            result["detections"][load] = len(predict()[0].boxes)
    result["bin_mb"] = round(sum(p.stat().st_size for p in exported.glob("*.bin")) / 1e6, 2)
    return result


def _version() -> str:
    import ultralytics

    return ultralytics.__version__
