"""Time the dataset import of 10,000 images: a COCO instances file (target: under 30 s), or 10,000 labelme JSON
files written by labelme's own ``LabelFile`` with 20 polygons each (target: under 60 s and 2 GB).

    python scripts/benchmark_import.py [--format coco|labelme] [--images 10000] [--objects N] [--data DIR]
                                       [--profile] [--json benchmarks/import_labelme.json]

The dataset is written once (one small JPEG hard-linked per image, polygon annotations) into
``--data`` (default ``~/.cache/otxlite/benchmark_import[_labelme]``); the timed part is
``prepare_training_data``: detection, import, the seeded 80/20 split, conversion and writing the
COCO files. Peak memory is the process's maximum resident set. ``--profile`` prints the top functions by
cumulative time (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otxlite.core.fileio import write_json_atomic  # noqa: E402
from otxlite.core.measure import cpu_model_and_flags  # noqa: E402
from otxlite.data.prepare import prepare_training_data  # noqa: E402

LABELS = ("car", "person", "bicycle", "dog", "cat")
IMAGE_SIZE = (480, 640)  # height, width written into the COCO file and the JPEG


def _polygon(rng: np.random.Generator, height: int, width: int) -> list[float]:
    """A random star-like polygon of 12-24 vertices inside the image."""
    n = int(rng.integers(12, 25))
    cx, cy = rng.uniform(60, width - 60), rng.uniform(60, height - 60)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(15, 55, n)
    xs, ys = cx + radii * np.cos(angles), cy + radii * np.sin(angles)
    return np.round(np.stack([xs, ys], 1).reshape(-1), 1).tolist()


def write_benchmark_dataset(root: Path, num_images: int, objects: int, seed: int = 0) -> Path:
    """``root/annotations/instances_train.json`` + ``root/images/train/`` (hard links to one JPEG)."""
    ann_file = root / "annotations" / "instances_train.json"
    if ann_file.is_file() and json.loads(ann_file.read_text()).get("info", {}).get("key") == [num_images, objects]:
        return root
    height, width = IMAGE_SIZE
    image_dir = root / "images" / "train"
    image_dir.mkdir(parents=True, exist_ok=True)
    source = root / "images" / "source.jpg"
    cv2.imwrite(str(source), np.full((height, width, 3), 127, np.uint8))
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for index in range(num_images):
        name = f"{index:06d}.jpg"
        target = image_dir / name
        if not target.exists():
            os.link(source, target)
        images.append({"id": index + 1, "file_name": name, "width": width, "height": height})
        for _ in range(objects):
            points = _polygon(rng, height, width)
            xs, ys = points[0::2], points[1::2]
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1, "category_id": int(rng.integers(len(LABELS))) + 1,
                "segmentation": [points], "area": 1.0, "iscrowd": 0,
                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
            })
    coco = {"info": {"key": [num_images, objects]}, "images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(LABELS)]}
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    ann_file.write_text(json.dumps(coco))
    return root


def write_labelme_dataset(root: Path, num_images: int, objects: int, seed: int = 0) -> Path:
    """``root/NNNNNN.json`` written by labelme's ``LabelFile`` beside ``root/NNNNNN.jpg`` (hard links to one JPEG)."""
    from labelme import LabelFile

    done = root / "done.txt"
    if done.is_file() and done.read_text() == f"{num_images} {objects}":
        return root
    root.mkdir(parents=True, exist_ok=True)
    height, width = IMAGE_SIZE
    source = root.parent / f"{root.name}_source.jpg"
    cv2.imwrite(str(source), np.full((height, width, 3), 127, np.uint8))
    rng = np.random.default_rng(seed)
    for index in range(num_images):
        image = root / f"{index:06d}.jpg"
        if not image.exists():
            os.link(source, image)
        shapes = [{"label": LABELS[int(rng.integers(len(LABELS)))],
                   "points": np.asarray(_polygon(rng, height, width)).reshape(-1, 2).tolist(), "group_id": None,
                   "description": "", "shape_type": "polygon", "flags": {}, "mask": None} for _ in range(objects)]
        LabelFile().save(str(image.with_suffix(".json")), shapes, image.name, height, width)
    done.write_text(f"{num_images} {objects}")
    return root


def main(argv: list[str] | None = None) -> None:
    """Write (or reuse) the dataset, time ``prepare_training_data`` on it and print the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("coco", "labelme"), default="coco")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--objects", type=int, help="polygons per image (default: 5 for coco, 20 for labelme)")
    parser.add_argument("--data", type=Path, help="dataset folder (default: under ~/.cache/otxlite)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary")
    parser.add_argument("--json", type=Path, help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    objects = args.objects or (20 if args.format == "labelme" else 5)
    suffix = "" if args.format == "coco" else f"_{args.format}"
    data = args.data or Path.home() / ".cache" / "otxlite" / f"benchmark_import{suffix}"
    write = write_benchmark_dataset if args.format == "coco" else write_labelme_dataset
    target_s = 30 if args.format == "coco" else 60

    start = time.perf_counter()
    root = write(data, args.images, objects)
    print(f"dataset: {root} ({args.images} images, {args.images * objects} polygons), "
          f"ready in {time.perf_counter() - start:.1f} s")
    with tempfile.TemporaryDirectory() as out:
        profiler = cProfile.Profile() if args.profile else None
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        prepared = prepare_training_data(root, None, Path(out))
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - start
    images = sum(subset.stats.images for subset in prepared.subsets.values())
    instances = sum(sum(subset.stats.instances.values()) for subset in prepared.subsets.values())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    met = seconds < target_s and (args.format == "coco" or peak_mib < 2048)
    print(f"prepare_training_data ({args.format}): {seconds:.1f} s for {images} images, {instances} instances "
          f"({images / seconds:.0f} images/s), peak {peak_mib:.0f} MiB; target < {target_s} s"
          f"{'' if args.format == 'coco' else ' and < 2 GB'}: {'met' if met else 'NOT met'}")
    if args.json:
        cpu, flags = cpu_model_and_flags()
        write_json_atomic(args.json, {
            "format": args.format, "images": images, "instances": instances, "seconds": round(seconds, 2),
            "images_per_s": round(images / seconds), "peak_rss_mib": round(peak_mib), "target_s": target_s,
            "met": met, "cpu": cpu, "cpu_flags": flags, "cores": os.cpu_count(), "python": platform.python_version()})
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
