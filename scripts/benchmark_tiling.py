r"""Tiling on small objects in large images: mask mAP with and without tiling at the same training budget, and
what tiled inference costs.

A generated set (``otxlite.data.sample_data.make_small_objects_dataset``: large images, discs and squares of
10-30 px) is trained twice with the same template from random weights and the same number of training samples
(iterations x batch): once on whole images resized to ``--whole-input``, once on ``--tile`` px tiles at that
input size. Both are exported and evaluated with ``otxlite eval`` on the IR (the tiled one runs on its
tiles, merged, as predict and serve do). Latency on one validation image (OpenVINO, LATENCY hint, f32 pinned):
one tile through the network and decoding, the whole tiled prediction (all windows through the request pool),
against the issue's bound (tiles + 1) x single-tile / 1.5.

    .venv/bin/python scripts/benchmark_tiling.py                      # about an hour on 2 cores
    .venv/bin/python scripts/benchmark_tiling.py --size 1024 --objects 60 --output /tmp/tiling_1024.json

COCO mAP counts the best 100 detections of an image, so the default set keeps under 100 objects per image.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from otxlite.core.fileio import write_json_atomic  # noqa: E402
from otxlite.core.measure import cpu_model_and_flags, spread, time_calls  # noqa: E402


def otxlite(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "otxlite.cli", *args], check=True, stdout=subprocess.DEVNULL)


def validation_only(data: Path, out: Path) -> Path:
    """A dataset folder holding only the validation subset of ``data`` (what ``otxlite eval`` scores)."""
    shutil.copytree(data / "images" / "val", out / "images" / "val", dirs_exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    shutil.copy(data / "annotations" / "instances_val.json", out / "annotations")
    return out


def train_and_evaluate(name: str, data: Path, work: Path, args: argparse.Namespace, tiled: bool) -> dict[str, Any]:
    """Train (same number of samples either way), export, and evaluate the IR on the validation images."""
    import cv2

    from otxlite.core.tiling import TilingSettings, tile_windows

    input_size = args.tile if tiled else args.whole_input
    per_epoch = args.train_images
    if tiled:
        grid = TilingSettings(enable=True, tile_size=args.tile, overlap=args.overlap)
        per_epoch = args.train_images * len(tile_windows(args.size, args.size, grid))
    epochs = max(1, round(args.samples / per_epoch))
    params = ["--param", f"data.input_size=[{input_size},{input_size}]", "--param",
              f"learning_parameters.num_iters={epochs}", "--param", f"learning_parameters.batch_size={args.batch}",
              "--param", "learning_parameters.num_workers=0"]
    if tiled:
        params += ["--param", "tiling.enable=true", "--param", f"tiling.tile_size={args.tile}",
                   "--param", f"tiling.overlap={args.overlap}"]
    run = work / name
    otxlite("train", args.template, "--train-data-roots", str(data), "--no-pretrained", "-o", str(run / "train"),
            *params)
    otxlite("export", "--load-weights", str(run / "train" / "models" / "weights.pth"), "-o", str(run / "ir"))
    xml = run / "ir" / "openvino.xml"
    otxlite("eval", "--load-weights", str(xml), "--test-data-roots", str(validation_only(data, work / "val")), "-o",
            str(run / "eval"))
    performance = json.loads((run / "eval" / "performance.json").read_text())
    image = cv2.imread(str(sorted((data / "images" / "val").glob("*.png"))[0]))
    return dict(name=name, input_size=input_size, epochs=epochs, samples=epochs * per_epoch,
                mask_mAP=performance["mask_mAP"], mask_mAP_50=performance["mask_mAP_50"],
                latency=latency(xml, image, args.repeats))


def latency(xml: Path, image: Any, repeats: int) -> dict[str, Any]:
    """ms of one prediction of ``image`` at the model's threshold as predict compiles it (THROUGHPUT hint: a
    tiled prediction keeps several infer requests busy), and (tiled models) of one tile alone with the LATENCY
    hint, with the issue's bound: (tiles + 1) x one tile / 1.5."""
    from otxlite.core.tiling import tile_windows
    from otxlite.runtime.predictor import Predictor

    predictor = Predictor(xml, hint="THROUGHPUT")
    threshold = predictor.metadata.confidence_threshold
    result: dict[str, Any] = {"prediction_ms": spread(time_calls(lambda: predictor.predict(image, threshold), 2,
                                                                 repeats)), "infer_requests": predictor.pool.size}
    predictor = Predictor(xml, hint="LATENCY")
    if predictor.metadata.tiling is not None:
        windows = tile_windows(image.shape[1], image.shape[0], predictor.metadata.tiling)
        x0, y0, x1, y1 = windows[-1]
        tile = image[y0:y1, x0:x1]
        one = spread(time_calls(lambda: predictor.postprocess(predictor.pool.infer(predictor.preprocess(tile)),
                                                              y1 - y0, x1 - x0, threshold), 2, repeats))
        tiles = len(windows) - predictor.metadata.tiling.full_image
        result.update(windows=len(windows), single_tile_ms=one, bound_ms=round((tiles + 1) * one["median"] / 1.5, 1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", default="RTMDet-Ins-tiny")
    parser.add_argument("--size", type=int, default=2048, help="side of the generated images")
    parser.add_argument("--objects", type=int, default=100, help="objects tried per image (non-touching kept)")
    parser.add_argument("--train-images", type=int, default=4)
    parser.add_argument("--val-images", type=int, default=2)
    parser.add_argument("--tile", type=int, default=256, help="tile side; also the tiled model's input size")
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--whole-input", type=int, default=512, help="input size of the whole-image model")
    parser.add_argument("--samples", type=int, default=640, help="training samples (iterations x batch) per model")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--sides", nargs="+", choices=("whole image", "tiled"), default=["whole image", "tiled"],
                        help="which models to train (the whole-image one takes most of the time)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "tiling.json")
    parser.add_argument("--work-dir", type=Path, help="keep the data, runs and IRs here (default: a temporary folder)")
    args = parser.parse_args()

    from otxlite.data.sample_data import make_small_objects_dataset

    with tempfile.TemporaryDirectory(prefix="otxlite-tiling-") as tmp:
        work = args.work_dir or Path(tmp)
        data = make_small_objects_dataset(work / "data", args.train_images, args.val_images, args.size,
                                          args.objects)
        rows = [train_and_evaluate(side, data, work, args, tiled=side == "tiled") for side in args.sides]
    cpu, flags = cpu_model_and_flags()
    report = {"machine": {"cpu": cpu, "flags": [name for name, present in flags.items() if present]},
              "settings": {k: str(v) for k, v in vars(args).items()}, "results": rows}
    write_json_atomic(args.output, report)
    print(f"{args.template}, {args.train_images} + {args.val_images} images of {args.size} px with 10-30 px objects; "
          f"{cpu} ({', '.join(report['machine']['flags'])})\n")
    print("| model | input | epochs | samples | mask mAP | mask mAP50 | prediction ms | windows | one tile ms | "
          "bound ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        lat = row["latency"]
        print(f"| {row['name']} | {row['input_size']} | {row['epochs']} | {row['samples']} | {row['mask_mAP']:.4f} | "
              f"{row['mask_mAP_50']:.4f} | {lat['prediction_ms']['median']:.1f} | {lat.get('windows', 1)} | "
              f"{lat.get('single_tile_ms', {}).get('median', float('nan')):.1f} | {lat.get('bound_ms', '')} |")
    by_side = {row["name"]: row for row in rows}
    if len(by_side) == 2:
        whole, tiled = by_side["whole image"], by_side["tiled"]
        ratio = tiled["mask_mAP"] / whole["mask_mAP"] if whole["mask_mAP"] else float("inf")
        print(f"\ntiled / whole-image mask mAP: {ratio:.2f}x (target >= 2x)")
    if "tiled" in by_side:
        tiled = by_side["tiled"]["latency"]
        print(f"tiled prediction {tiled['prediction_ms']['median']:.1f} ms vs bound {tiled['bound_ms']} ms "
              "((tiles + 1) x one tile / 1.5)")


if __name__ == "__main__":
    main()
