#!/usr/bin/env python
r"""Batch scoring throughput of ``otxlite predict``: one process, two shards at once, Ray Data with 1 and 2 workers,
overlays on and off, and the resident memory over many images.

1. Model: RTMDet-Ins-tiny trained from random weights on the ``coins`` photo (``scripts/real_photos.py``, 60 epochs
   at 256 px, as tests/test_rtmdet.py), exported, and quantized to INT8 with ``otxlite optimize``.
2. Images: ``--images`` real-size JPEGs (long side 640-1280 px) cut from scikit-image's photos: coins (the model
   finds its coins) and five others (astronaut, coffee, chelsea, rocket, hubble), resized, cropped and flipped at
   random (seed 0); and ``--small-images`` small ones (96 px) for the memory run.
3. Every run is ``otxlite predict`` in its own process(es), timed from start to exit (start-up included: Python
   imports, compiling the model; measured apart on one image), without overlays unless said:
   ``one process`` (OpenVINO's THROUGHPUT hint, every core), ``two shards`` (``--shard 0/2`` and ``1/2`` at once,
   ``--threads`` cores each), ``ray 1 worker``, ``ray 2 workers`` (a local Ray started by the run), and
   ``--overlay-images`` images with and without ``--overlays``. The shard union and each Ray run are checked equal
   to the one-process output, line for line.
4. Memory: the one-process run over the small images, its RSS sampled every 0.2 s against the lines written.
5. The driver's share: the cost per line of writing a result (``otxlite.app.predict._Outputs``), which bounds what
   one Ray driver can collect; file and line sizes, which bound what storage must deliver and take.
6. On paper: the core-milliseconds per image of the one-process run (start-up left out) scaled to 50 machines of
   16 cores, and the storage, output and Ray driver load that would make.

OpenVINO runs with ``INFERENCE_PRECISION_HINT=f32`` (otxlite's predictor pins it): INT8 layers in INT8, the rest
in f32, on any CPU.

    .venv/bin/python scripts/benchmark_batch.py --work-dir /tmp/batch     # about 25 minutes on 2 cores
    .venv/bin/python scripts/benchmark_batch.py --images 200 --small-images 2000 --output /tmp/batch.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from otxlite.core.fileio import write_json_atomic  # noqa: E402
from otxlite.core.measure import cpu_model_and_flags  # noqa: E402

PHOTOS = ("coins.png", "astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "hubble_deep_field.jpg")
COINS_PARAMS = ["learning_parameters.num_iters=60", "learning_parameters.batch_size=2",
                "learning_parameters.learning_rate_warmup_iters=5", "data.input_size=[256,256]",
                "learning_parameters.num_workers=0"]


def otxlite_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "otxlite.cli", *args]


def run(*args: str) -> None:
    subprocess.run(otxlite_command(*args), check=True, stdout=subprocess.DEVNULL)


def int8_model(work: Path) -> Path:
    """The INT8 RTMDet-Ins-tiny of the coins photo (made once per work folder)."""
    xml = work / "int8" / "openvino.xml"
    if xml.is_file():
        return xml
    spec = importlib.util.spec_from_file_location("real_photos", REPO / "scripts" / "real_photos.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    coins = module.make_real_photo_dataset("coins", work / "coins")
    params = [arg for param in COINS_PARAMS for arg in ("--param", param)]
    run("train", "RTMDet-Ins-tiny", "--train-data-roots", str(coins), "-o", str(work / "train"), "--no-pretrained",
        *params)
    run("export", "--load-weights", str(work / "train" / "models" / "weights.pth"), "-o", str(work / "fp32"))
    run("optimize", "--load-weights", str(work / "fp32" / "openvino.xml"), "--train-data-roots", str(coins),
        "-o", str(work / "int8"))
    return xml


def make_images(folder: Path, count: int, smallest: int, largest: int, seed: int = 0) -> Path:
    """``count`` JPEGs whose long side is ``smallest``-``largest`` px, cut from scikit-image's photos (made once)."""
    import cv2
    import numpy as np
    import skimage
    from skimage import io

    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for name in PHOTOS:
        image = io.imread(str(Path(skimage.data.__path__[0]) / name))
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else cv2.cvtColor(image[..., :3],
                                                                                             cv2.COLOR_RGB2BGR)
        photos.append(image)
    random = np.random.default_rng(seed)
    for index in range(count):
        photo = photos[0] if index % 2 == 0 else photos[1 + index // 2 % (len(photos) - 1)]  # half of them coins
        height, width = photo.shape[:2]
        keep = random.uniform(0.7, 1.0)  # a crop of 70-100% of each side
        h, w = int(height * keep), int(width * keep)
        top, left = random.integers(0, height - h + 1), random.integers(0, width - w + 1)
        crop = photo[top:top + h, left:left + w]
        if random.random() < 0.5:
            crop = crop[:, ::-1]
        side = int(random.integers(smallest, largest + 1))
        scale = side / max(h, w)
        resized = cv2.resize(crop, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"img_{index:06d}.jpg"), resized, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def timed(commands: list[list[str]], sample_rss_of: Path | None = None) -> dict[str, Any]:
    """Run ``commands`` at once; wall seconds until the last exits (and, with ``sample_rss_of``, the first one's
    RSS every 0.2 s beside the lines written so far into that predictions.jsonl)."""
    start = time.perf_counter()
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in commands]
    samples: list[tuple[int, float]] = []
    if sample_rss_of is not None:
        def sample() -> None:
            status = Path(f"/proc/{processes[0].pid}/status")
            while processes[0].poll() is None:
                try:
                    rss = next(int(line.split()[1]) for line in status.read_text().splitlines()
                               if line.startswith("VmRSS"))
                    lines = sample_rss_of.read_bytes().count(b"\n") if sample_rss_of.exists() else 0
                except (OSError, StopIteration):
                    break
                samples.append((lines, rss / 1024))
                time.sleep(0.2)
        sampler = threading.Thread(target=sample)
        sampler.start()
    for process in processes:
        _, err = process.communicate()
        if process.returncode:
            raise RuntimeError(f"{' '.join(process.args)} failed:\n{err[-3000:]}")
    wall = time.perf_counter() - start
    if sample_rss_of is not None:
        sampler.join()
    return {"wall_s": round(wall, 2), "rss": samples}


def lines_of(*files: Path) -> list[str]:
    return sorted(line for file in files for line in file.read_text().splitlines())


def throughput(name: str, images: int, wall: float, **extra: Any) -> dict[str, Any]:
    result = {"run": name, "images": images, "wall_s": wall, "images_per_s": round(images / wall, 2), **extra}
    print(json.dumps(result), flush=True)
    return result


def driver_cost(predictions: Path, repeats: int = 3) -> dict[str, Any]:
    """Microseconds the driver spends per line it writes (``_Outputs.on_line``: dedupe, one write, count), best of
    ``repeats`` passes over ``predictions``' lines."""
    from otxlite.app.predict import PREDICTION, _Outputs

    lines = predictions.read_text().splitlines()
    names = [json.loads(line)["filename"] for line in lines]
    best = float("inf")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            outputs = _Outputs(Path(folder), None)
            start = time.perf_counter()
            for name, line in zip(names, lines):
                outputs.on_line(name, PREDICTION, line, 0)
            outputs.close()
            best = min(best, time.perf_counter() - start)
    sizes = [len(line) + 1 for line in lines]
    return {"us_per_line": round(best / len(lines) * 1e6, 1), "mean_line_bytes": round(sum(sizes) / len(sizes))}


def projection(report: dict[str, Any], machines: int = 50, cores: int = 16) -> dict[str, Any]:
    """On paper, from the one-process run: what ``machines`` of ``cores`` give, and what storage, output and one
    Ray driver must then carry."""
    one = report["throughput"][0]
    steady = one["images"] / (one["wall_s"] - report["startup_s"])  # start-up left out
    core_ms = 1000 * report["machine"]["cores"] / steady
    total = machines * cores * 1000 / core_ms
    return {"steady_images_per_s_one_process": round(steady, 1), "core_ms_per_image": round(core_ms, 1),
            f"images_per_s_per_{cores}_core_machine": round(cores * 1000 / core_ms),
            f"images_per_s_{machines}_machines": round(total),
            f"storage_mb_per_s_{machines}_machines": round(total * report["images"]["mean_file_kib"] * 1024 / 1e6),
            f"output_mb_per_s_{machines}_machines": round(total * report["driver"]["mean_line_bytes"] / 1e6),
            "ray_driver_lines_per_s_ceiling": round(1e6 / report["driver"]["us_per_line"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="real-size images for the throughput runs")
    parser.add_argument("--small-images", type=int, default=20000, help="96 px images for the memory run")
    parser.add_argument("--overlay-images", type=int, default=100, help="images timed with and without overlays")
    parser.add_argument("--threads", type=int, default=1, help="OpenVINO threads of each shard (two at once)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "batch_scoring.json")
    parser.add_argument("--work-dir", type=Path, help="keep the model and images here (default: a temporary folder)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temporary:
        work = args.work_dir or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        xml = int8_model(work)
        images = make_images(work / f"images_{args.images}", args.images, 640, 1280)
        small = make_images(work / f"small_{args.small_images}", args.small_images, 96, 96)
        runs_dir = Path(tempfile.mkdtemp(dir=work, prefix="runs_"))
        model = ["--load-weights", str(xml)]

        def predict(source: Path, out: str, *extra: str) -> list[str]:
            return otxlite_command("predict", *model, "-i", str(source), "-o", str(runs_dir / out), *extra)

        first = sorted(images.glob("*.jpg"))[0]
        startup = timed([predict(first, "startup", "--no-overlays")])["wall_s"]
        results = []
        one = timed([predict(images, "one", "--no-overlays")])["wall_s"]
        results.append(throughput("one process", args.images, one))
        reference = lines_of(runs_dir / "one" / "predictions.jsonl")
        detections = sum(len(json.loads(line)["boxes"]) for line in reference)

        two = timed([predict(images, f"shard{i}", "--no-overlays", "--shard", f"{i}/2", "--threads", str(args.threads))
                     for i in range(2)])["wall_s"]
        union = lines_of(*(runs_dir / f"shard{i}" / "predictions.jsonl" for i in range(2)))
        results.append(throughput("two shards at once", args.images, two, threads_each=args.threads,
                                  equal_to_one_process=union == reference))
        for workers in (1, 2):
            out = f"ray{workers}"
            wall = timed([predict(images, out, "--no-overlays", "--engine", "ray", "--workers", str(workers))])["wall_s"]
            results.append(throughput(f"ray {workers} worker{'s' if workers > 1 else ''}", args.images, wall,
                                      equal_to_one_process=lines_of(runs_dir / out / "predictions.jsonl") == reference))

        subset = Path(tempfile.mkdtemp(dir=work, prefix="subset_"))
        for image in sorted(images.glob("*.jpg"))[:args.overlay_images]:
            os.symlink(image, subset / image.name)
        overlays = {}
        for flag in ("--no-overlays", "--overlays"):
            wall = timed([predict(subset, flag.strip("-"), flag)])["wall_s"]
            overlays[flag] = throughput(f"{args.overlay_images} images {flag}", args.overlay_images, wall)

        memory = timed([predict(small, "small", "--no-overlays")], sample_rss_of=runs_dir / "small" / "predictions.jsonl")
        rss = [mib for lines, mib in memory["rss"] if lines > 0]
        by_tenth = {}
        for lines, mib in memory["rss"]:
            tenth = min(10, lines * 10 // args.small_images)
            if lines:
                by_tenth[tenth * 10] = round(mib, 1)
        memory_report = {"images": args.small_images, "side_px": 96, "wall_s": memory["wall_s"],
                         "images_per_s": round(args.small_images / memory["wall_s"], 1),
                         "rss_mib_first_line": round(rss[0], 1), "rss_mib_max": round(max(rss), 1),
                         "rss_mib_at_percent_done": by_tenth}
        print(json.dumps(memory_report), flush=True)

        cpu, flags = cpu_model_and_flags()
        import openvino

        sizes = [image.stat().st_size for image in images.glob("*.jpg")]
        report = {
            "machine": {"cpu": cpu, "cores": os.cpu_count(), "flags": flags, "openvino": openvino.get_version(),
                        "inference_precision": "f32 pinned (INT8 layers in INT8)", "python": sys.version.split()[0]},
            "model": {"template": "RTMDet-Ins-tiny", "precision": "INT8", "input_px": 256,
                      "trained": "coins photo, 60 epochs from random weights"},
            "images": {"count": args.images, "long_side_px": [640, 1280], "mean_file_kib": round(sum(sizes) / len(sizes) / 1024, 1),
                       "detections": detections},
            "startup_s": startup,
            "throughput": results,
            "overlays": {"images": args.overlay_images,
                         "images_per_s_without": overlays["--no-overlays"]["images_per_s"],
                         "images_per_s_with": overlays["--overlays"]["images_per_s"]},
            "memory": memory_report,
            "driver": driver_cost(runs_dir / "one" / "predictions.jsonl"),
        }
        report["projection"] = projection(report)
        write_json_atomic(args.output, report)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
