"""Run the model in this folder with OpenVINO Model API: one JSON line per image on stdout.

    python run_model_api.py IMAGE [IMAGE ...]

Model API reads the model type, labels and thresholds from the IR itself (``rt_info``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import openvino as ov
from model_api.adapters import OpenvinoAdapter
from model_api.models import Model

MODEL = Path(__file__).resolve().parent / "openvino.xml"
F32 = {"INFERENCE_PRECISION_HINT": "f32"}  # as otxlite measured it; drop it to let OpenVINO pick bf16 where it can


def main(paths: list[str]) -> int:
    model = Model.create_model(OpenvinoAdapter(ov.Core(), str(MODEL), device="CPU", plugin_config=F32))
    for path in paths:
        image = cv2.imread(path)  # BGR, as the IR expects (its normalisation is inside the graph)
        if image is None:
            print(f"{path}: cannot be read as an image", file=sys.stderr)
            return 1
        result = model(image)
        detections = [{"label": label, "score": round(float(score), 4), "box": [int(v) for v in box],
                       "mask_pixels": int(mask.astype(bool).sum())}
                      for label, score, box, mask in zip(result.label_names or [], result.scores, result.bboxes,
                                                         result.masks)]
        print(json.dumps({"image": path, "detections": detections}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
