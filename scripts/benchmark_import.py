"""Time the dataset import on a synthetic 10,000-image COCO instances file (target: under 30 s).

    python scripts/benchmark_import.py [--images 10000] [--objects 5] [--data DIR] [--profile]

The dataset is written once (one small JPEG hard-linked per image, polygon annotations) into
``--data`` (default ``~/.cache/otxlite/benchmark_import``); the timed part is
``prepare_training_data``: Datumaro import, the seeded 80/20 split, conversion and writing the
COCO files. ``--profile`` prints the top functions by cumulative time (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def main(argv: list[str] | None = None) -> None:
    """Write (or reuse) the dataset, time ``prepare_training_data`` on it and print the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--objects", type=int, default=5, help="polygons per image")
    parser.add_argument("--data", type=Path, default=Path.home() / ".cache" / "otxlite" / "benchmark_import")
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    root = write_benchmark_dataset(args.data, args.images, args.objects)
    print(f"dataset: {root} ({args.images} images, {args.images * args.objects} polygons), "
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
    print(f"prepare_training_data: {seconds:.1f} s for {images} images, {instances} instances "
          f"({images / seconds:.0f} images/s); target < 30 s: {'met' if seconds < 30 else 'NOT met'}")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
