"""Run the model in this folder with otxlite's own OpenVINO runtime (shipped here in ``otxlite/``; no PyTorch):
one JSON line per image on stdout, as ``run_model_api.py`` prints them.

    python run_runtime.py IMAGE [IMAGE ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the runtime's modules beside this script

from otxlite.core.images import read_image  # noqa: E402
from otxlite.runtime.predictor import Predictor  # noqa: E402


def main(paths: list[str]) -> int:
    predictor = Predictor(HERE / "openvino.xml")  # f32 pinned, as otxlite measures
    labels = predictor.metadata.labels
    for path in paths:
        image = read_image(Path(path))  # BGR, EXIF orientation applied
        if image is None:
            print(f"{path}: cannot be read as an image", file=sys.stderr)
            return 1
        found = predictor.predict(image, predictor.metadata.confidence_threshold)
        detections = [{"label": labels[label], "score": round(float(score), 4), "box": [int(round(v)) for v in box],
                       "mask_pixels": int(mask.sum())}
                      for label, score, box, mask in zip(found.labels, found.scores, found.boxes, found.masks)]
        print(json.dumps({"image": path, "detections": detections}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
