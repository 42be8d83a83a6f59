"""Deterministic synthetic COCO instance-segmentation dataset: the bundled demo and test data.

Three shape classes (``disc``, ``star``, ``ring``) with class-specific colour palettes and
textures are drawn on a noisy background. Later shapes occlude earlier ones and every mask
is the visible part of its object. Discs and stars are stored as polygons; rings (objects
with a hole) as RLE: uncompressed in train, compressed in val. One train image carries an
extra crowd region (``iscrowd: 1``) and each subset has exactly one image without objects.
The layout is the one Datumaro's ``coco_instances`` importer expects::

    OUT/annotations/instances_{train,val}.json
    OUT/images/{train,val}/{subset}_NNNN.jpg
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from otxlite.core.fileio import atomic_path, write_text_atomic
from otxlite.core.images import write_image

CLASSES = ("disc", "star", "ring")
SUBSETS = ("train", "val")

# OpenCV HSV hue ranges (0-180): red/orange discs, yellow/green stars, blue/violet rings.
_HUE_RANGES = {"disc": (0, 16), "star": (26, 72), "ring": (98, 150)}
_SIZE_RANGE = (0.15, 0.45)  # object diameter as a fraction of the image side
_MIN_VISIBLE_FRACTION = 0.4  # an occluded object keeps at least this share of its area
_MIN_PART_FRACTION = 0.0015  # smallest connected visible part, as a fraction of image area
_PLACEMENT_TRIES = 25
_JPEG_QUALITY = 95
_SHIFT = 4  # cv2 fixed-point bits for sub-pixel drawing
DISC_POINTS = 24  # polygon points of a generated small disc

ShapeDrawer = Callable[[np.ndarray, np.ndarray], None]  # draw(mask, center) fills the shape with 1


@dataclass
class _Instance:
    """One drawn object: its class, unoccluded in-image mask and currently visible mask."""

    label: str
    center: tuple[float, float]
    radius: float
    full: np.ndarray
    visible: np.ndarray
    is_crowd: bool = False


def make_sample_dataset(
    out_dir: Path, num_train: int = 24, num_val: int = 8, size: int = 192, seed: int = 0
) -> Path:
    """Write the sample dataset under ``out_dir`` and return ``out_dir``.

    The output depends only on the arguments: rerunning overwrites every file with the
    same bytes (each file is written atomically) and removes generated images that a
    previous run with more images left behind.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(
            f"each subset needs at least one image, got train={num_train}, val={num_val}"
        )
    if size < 64:
        raise ValueError(f"image size must be at least 64 px, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    out_dir = Path(out_dir)
    for subset_index, (subset, num_images) in enumerate(zip(SUBSETS, (num_train, num_val))):
        rng = np.random.default_rng([seed, subset_index])
        _write_subset(out_dir, subset, num_images, size, rng)
    return out_dir


def summarize_sample_dataset(out_dir: Path) -> str:
    """One line: images and instances per class of each subset under ``out_dir``."""
    parts = []
    for subset in SUBSETS:
        coco = json.loads((Path(out_dir) / "annotations" / f"instances_{subset}.json").read_text())
        names = {cat["id"]: cat["name"] for cat in coco["categories"]}
        counts = {name: 0 for name in names.values()}
        crowds = 0
        for ann in coco["annotations"]:
            if ann["iscrowd"]:
                crowds += 1
            else:
                counts[names[ann["category_id"]]] += 1
        per_class = ", ".join(f"{name} {count}" for name, count in counts.items())
        crowd_note = f", {crowds} crowd" if crowds else ""
        parts.append(f"{subset}: {len(coco['images'])} images ({per_class}{crowd_note})")
    return f"{out_dir}: " + "; ".join(parts)


def _write_subset(
    out_dir: Path, subset: str, num_images: int, size: int, rng: np.random.Generator
) -> None:
    """Render ``num_images`` images of one subset and write them with their COCO JSON."""
    image_dir = out_dir / "images" / subset
    image_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)

    empty_index = int(rng.integers(num_images))
    crowd_index = -1
    if subset == "train" and num_images > 1:  # a crowd region in one train image that has objects
        crowd_index = int(rng.choice([i for i in range(num_images) if i != empty_index]))
    labels = _label_bag(rng)
    images, annotations = [], []
    for index in range(num_images):
        image_id = index + 1
        file_name = f"{subset}_{image_id:04d}.jpg"
        num_objects = 0 if index == empty_index else int(rng.integers(1, 5))
        image_labels = [next(labels) for _ in range(num_objects)]
        image, instances = _render_image(size, image_labels, index == crowd_index, rng)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"OpenCV could not encode {file_name} as JPEG")
        with atomic_path(image_dir / file_name) as tmp:
            tmp.write_bytes(encoded.tobytes())
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        for instance in instances:
            ann = _annotation(instance, uncompressed_rle=subset == "train")
            ann.update(id=len(annotations) + 1, image_id=image_id)
            annotations.append(ann)

    written = {image["file_name"] for image in images}
    for stale in image_dir.glob(f"{subset}_[0-9][0-9][0-9][0-9].jpg"):
        if stale.name not in written:
            stale.unlink()
    coco = {
        "info": {"description": "otxlite synthetic shapes sample dataset"},
        "licenses": [],
        "categories": [
            {"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)
        ],
        "images": images,
        "annotations": annotations,
    }
    write_text_atomic(out_dir / "annotations" / f"instances_{subset}.json", json.dumps(coco))


def _label_bag(rng: np.random.Generator) -> Iterator[str]:
    """Endless class names in shuffled rounds of all classes, so that classes stay balanced."""
    while True:
        yield from (CLASSES[i] for i in rng.permutation(len(CLASSES)))


def _render_image(
    size: int, labels: list[str], with_crowd: bool, rng: np.random.Generator
) -> tuple[np.ndarray, list[_Instance]]:
    """Draw background, optional crowd cluster and objects in order; return image and instances."""
    image = _background(size, rng)
    instances: list[_Instance] = []
    if with_crowd:
        crowd = _crowd_instance(size, rng)
        _paint(image, crowd.full, "disc", rng)
        instances.append(crowd)
    for label in labels:
        instance = _place_object(label, size, instances, rng)
        if instance is None:
            continue
        for earlier in instances:
            earlier.visible &= ~instance.full
        _paint(image, instance.full, label, rng)
        instances.append(instance)
    noise = rng.normal(0.0, 4.0, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), instances


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Dim, low-saturation background: tinted gradient, blotches and fine noise (float BGR)."""
    base = rng.uniform(55, 105) + rng.uniform(-12, 12, 3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * xx + np.sin(angle) * yy - 0.5) * rng.uniform(20, 50)
    blotches = cv2.resize(rng.normal(0, 12, (6, 6)), (size, size), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 6, (size, size, 1))
    return base + (gradient + blotches)[..., None] + grain


def _crowd_instance(size: int, rng: np.random.Generator) -> _Instance:
    """A cluster of small discs annotated as a single crowd region of class ``disc``."""
    radius = size * 0.13
    center = rng.uniform(radius, size - radius, 2)
    mask = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(6, 11))):
        offset = rng.uniform(-0.8, 0.8, 2) * radius
        _circle(mask, center + offset, size * rng.uniform(0.02, 0.035))
    full = mask.astype(bool)
    xy = (float(center[0]), float(center[1]))
    return _Instance("disc", xy, radius, full, full.copy(), is_crowd=True)


def _place_object(
    label: str, size: int, instances: list[_Instance], rng: np.random.Generator
) -> _Instance | None:
    """Choose shape and position so that no object becomes too hidden; None if no try fits."""
    radius = size * rng.uniform(*_SIZE_RANGE) / 2
    draw = _shape_drawer(label, radius, rng)
    full_area = _full_area(radius, draw)
    targets = [inst for inst in instances if not inst.is_crowd]
    mode = rng.choice(["free", "overlap", "border"], p=[0.4, 0.35, 0.25])
    if mode == "overlap" and not targets:
        mode = "free"
    for _ in range(_PLACEMENT_TRIES):
        center = _sample_center(mode, radius, size, targets, rng)
        mask = np.zeros((size, size), np.uint8)
        draw(mask, center)
        full = mask.astype(bool)
        if full.sum() < 0.5 * full_area or not _parts_large_enough(full):
            continue
        if all(_still_visible(earlier, full) for earlier in instances):
            return _Instance(label, (float(center[0]), float(center[1])), radius, full, full.copy())
    return None


def _sample_center(
    mode: str, radius: float, size: int, targets: list[_Instance], rng: np.random.Generator
) -> np.ndarray:
    """Object centre: anywhere inside, touching/overlapping an earlier object, or on a border."""
    center = rng.uniform(radius, size - radius, 2)
    if mode == "overlap":
        other = targets[int(rng.integers(len(targets)))]
        angle = rng.uniform(0, 2 * np.pi)
        distance = (other.radius + radius) * rng.uniform(0.5, 0.95)
        center = np.asarray(other.center) + distance * np.array([np.cos(angle), np.sin(angle)])
    elif mode == "border":
        axis = int(rng.integers(2))
        inset = radius * rng.uniform(-0.3, 0.6)
        center[axis] = inset if rng.random() < 0.5 else size - 1 - inset
    return center


def _still_visible(earlier: _Instance, occluder: np.ndarray) -> bool:
    """Whether ``earlier`` stays a clean annotation once ``occluder`` is drawn on top of it."""
    visible = earlier.visible & ~occluder
    if visible.sum() < _MIN_VISIBLE_FRACTION * earlier.full.sum():
        return False
    if earlier.is_crowd:
        return True
    if not _parts_large_enough(visible):
        return False
    # Polygons cannot express holes: a disc or star must not get one from an occluder.
    return earlier.label == "ring" or not _has_hole(visible)


def _parts_large_enough(mask: np.ndarray) -> bool:
    """Every connected part of ``mask`` covers at least the minimum part area."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return bool((stats[1:, cv2.CC_STAT_AREA] >= _MIN_PART_FRACTION * mask.size).all())


def _has_hole(mask: np.ndarray) -> bool:
    """Whether some part of ``mask`` encloses background."""
    _, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hierarchy is not None and bool((hierarchy[0][:, 3] >= 0).any())


def _shape_drawer(label: str, radius: float, rng: np.random.Generator) -> ShapeDrawer:
    """Fix the shape's random parameters; return ``draw(mask, center)`` that fills it with 1."""
    if label == "disc":
        return lambda mask, center: _circle(mask, center, radius)
    if label == "ring":
        hole = radius * rng.uniform(0.4, 0.6)

        def draw_ring(mask: np.ndarray, center: np.ndarray) -> None:
            _circle(mask, center, radius)
            _circle(mask, center, hole, value=0)

        return draw_ring
    points = int(rng.integers(5, 8))
    inner = rng.uniform(0.4, 0.55)
    angles = rng.uniform(0, 2 * np.pi) + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, radius, radius * inner)
    outline = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)

    def draw_star(mask: np.ndarray, center: np.ndarray) -> None:
        vertices = np.round((outline + center) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(mask, [vertices], 1, lineType=cv2.LINE_8, shift=_SHIFT)

    return draw_star


def _full_area(radius: float, draw: ShapeDrawer) -> float:
    """Area of the whole (unclipped) shape, measured on a canvas that holds it entirely."""
    side = int(np.ceil(2 * radius)) + 4
    mask = np.zeros((side, side), np.uint8)
    draw(mask, np.array([side / 2, side / 2]))
    return float(mask.sum())


def _circle(mask: np.ndarray, center: np.ndarray, radius: float, value: int = 1) -> None:
    """Fill a circle with sub-pixel centre and radius."""
    scale = 1 << _SHIFT
    cv2.circle(
        mask,
        (int(round(center[0] * scale)), int(round(center[1] * scale))),
        int(round(radius * scale)),
        value,
        thickness=-1,
        lineType=cv2.LINE_8,
        shift=_SHIFT,
    )


def _paint(image: np.ndarray, mask: np.ndarray, label: str, rng: np.random.Generator) -> None:
    """Fill ``mask`` in ``image`` with a saturated colour of the class palette and a texture."""
    hue = rng.uniform(*_HUE_RANGES[label])
    hsv = np.array([[[hue, rng.uniform(150, 255), rng.uniform(185, 250)]]]).astype(np.uint8)
    color = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float64)
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(0, np.pi)
    along = np.cos(angle) * xx + np.sin(angle) * yy
    texture = rng.integers(3)
    if texture == 0:  # stripes
        stripes = np.sign(np.sin(2 * np.pi * along / rng.uniform(5, 12)))
        shade = 1.0 + rng.uniform(0.1, 0.2) * stripes
    elif texture == 1:  # linear gradient across the object
        ys, xs = np.nonzero(mask)
        span = along[ys, xs]
        shade = 0.75 + 0.35 * (along - span.min()) / max(float(np.ptp(span)), 1.0)
    else:  # speckle
        shade = 1.0 + rng.normal(0, 0.08, (size, size))
    image[mask] = np.clip(color * shade[mask][:, None], 0, 255)


def _annotation(instance: _Instance, uncompressed_rle: bool) -> dict:
    """COCO annotation (without ids) of the visible part of ``instance``."""
    visible = instance.visible
    ys, xs = np.nonzero(visible)
    x0, y0 = int(xs.min()), int(ys.min())
    bbox = [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]
    if instance.label == "ring" or instance.is_crowd:
        segmentation = _uncompressed_rle(visible) if uncompressed_rle else _compressed_rle(visible)
    else:
        segmentation = _polygons(visible)
    return {
        "category_id": CLASSES.index(instance.label) + 1,
        "segmentation": segmentation,
        "area": int(visible.sum()),
        "bbox": bbox,
        "iscrowd": int(instance.is_crowd),
    }


def _polygons(mask: np.ndarray) -> list[list[int]]:
    """One flat ``[x, y, ...]`` polygon per connected part; parts under 3 points are dropped."""
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    return [contour.reshape(-1).tolist() for contour in contours if len(contour) >= 3]


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE: run lengths over column-major pixels, starting with a 0-run."""
    pixels = mask.flatten(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(pixels)) + 1
    bounds = np.concatenate([[0], changes, [pixels.size]])
    counts = np.diff(bounds).tolist()
    if pixels[0]:
        counts.insert(0, 0)
    return {"counts": counts, "size": list(mask.shape)}


def _compressed_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE (pycocotools), with ``counts`` as a JSON string."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"counts": rle["counts"].decode("ascii"), "size": [int(v) for v in rle["size"]]}


def make_small_objects_dataset(out_dir: Path, num_train: int = 4, num_val: int = 2, size: int = 1024,
                               objects: int = 40, object_px: tuple[int, int] = (10, 30), seed: int = 0) -> Path:
    """Large images with many small objects (discs and squares of ``object_px`` pixels across, never touching),
    the case tiling is for; COCO layout as ``make_sample_dataset``, masks as polygons (a disc's has 24 points;
    each shape is painted from its own polygon)."""
    out_dir = Path(out_dir)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    angles = np.linspace(0, 2 * np.pi, DISC_POINTS, endpoint=False)
    for subset_index, (subset, count) in enumerate(zip(SUBSETS, (num_train, num_val))):
        rng = np.random.default_rng([seed, 7, subset_index])
        image_dir = out_dir / "images" / subset
        image_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, count + 1):
            image = np.clip(_background(size, rng), 0, 255).astype(np.uint8)
            taken = np.zeros((size, size), bool)
            for _ in range(objects):
                side = int(rng.integers(*object_px))
                label = int(rng.integers(2))  # 0 disc, 1 square
                x0, y0 = (int(v) for v in rng.integers(0, size - side, 2))
                if taken[max(y0 - 2, 0):y0 + side + 2, max(x0 - 2, 0):x0 + side + 2].any():
                    continue
                if label == 0:
                    points = np.stack([x0 + side / 2 * (1 + np.cos(angles)), y0 + side / 2 * (1 + np.sin(angles))], 1)
                else:
                    points = np.array([[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]], float)
                taken[y0:y0 + side, x0:x0 + side] = True
                colour = (40, 40, 220) if label == 0 else (220, 160, 40)
                cv2.fillPoly(image, [np.round(points).astype(np.int32)], colour)
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                                    "iscrowd": 0, "area": float(cv2.contourArea(points.astype(np.float32))),
                                    "bbox": [float(x0), float(y0), float(side), float(side)],
                                    "segmentation": [[round(float(v), 2) for v in points.reshape(-1)]]})
            file_name = f"{subset}_{image_id:04d}.png"
            with atomic_path(image_dir / file_name) as tmp:
                write_image(tmp, image)
            images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        coco = {"images": images, "annotations": annotations,
                "categories": [{"id": 1, "name": "disc"}, {"id": 2, "name": "square"}]}
        with atomic_path(out_dir / "annotations" / f"instances_{subset}.json") as tmp:
            tmp.write_text(json.dumps(coco))
    return out_dir
