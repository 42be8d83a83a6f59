"""Small real-photo instance segmentation sets, labelled by classical segmentation.

The photos ship with scikit-image (``pip install scikit-image``; no download at run time). Each set
is one photo cut into tiles: the validation tile is kept out of training. Instances are the connected
components of a classical segmentation (watershed, thresholds, colour deconvolution); blobs too
large to be one object (merged glands in ``ihc``) become crowd regions, ignored in training and
evaluation. Instances cut by a tile edge keep their visible part; slivers are dropped.

* ``coins``: 24 coins on a dark background (303x384 grey), left part train, right part val.
* ``hubble``: stars and galaxies of the Hubble deep field (872x1000), 2x2 tiles, 3 train 1 val.
* ``ihc``: cell nuclei in an immunohistochemistry stain (512x512), 2x2 tiles, 3 train 1 val.

Layout written (COCO, as ``otxlite.data.sample_data``)::

    OUT/annotations/instances_{train,val}.json
    OUT/images/{train,val}/NAME_N.png

Usage: ``python tests/real_photos.py coins OUT_DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from otxlite.core.fileio import atomic_path, write_text_atomic  # noqa: E402

MIN_PART_PIXELS = 20  # an instance cut by a tile edge keeps its part only if it has this many pixels


@dataclass
class Photo:
    """One labelled photo: RGB image, an instance id map (0 = background) and a crowd mask."""

    name: str
    label: str
    image: np.ndarray
    instances: np.ndarray
    crowd: np.ndarray
    tiles: tuple[int, int]  # rows, columns
    val_tile: int  # index of the validation tile, row-major


def _skimage_image(filename: str) -> np.ndarray:
    try:
        import skimage
        from skimage import io
    except ImportError as err:
        raise SystemExit("The real-photo sets need scikit-image: pip install scikit-image") from err
    return io.imread(str(Path(skimage.data.__path__[0]) / filename))


def coins() -> Photo:
    """Coins: watershed on the Sobel gradient from dark/bright markers (scikit-image's own tutorial)."""
    from scipy import ndimage as ndi
    from skimage import filters, measure, morphology, segmentation

    grey = _skimage_image("coins.png")
    markers = np.zeros_like(grey)
    markers[grey < 30], markers[grey > 150] = 1, 2
    foreground = ndi.binary_fill_holes(segmentation.watershed(filters.sobel(grey), markers) == 2)
    foreground = morphology.remove_small_objects(foreground, max_size=50)
    return Photo("coins", "coin", cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB), measure.label(foreground),
                 np.zeros_like(foreground), tiles=(1, 3), val_tile=2)


def hubble() -> Photo:
    """Stars and galaxies: a brightness threshold, holes filled, specks removed."""
    from scipy import ndimage as ndi
    from skimage import color, measure, morphology

    image = _skimage_image("hubble_deep_field.jpg")
    foreground = morphology.remove_small_objects(color.rgb2gray(image) > 0.25, max_size=40)
    foreground = ndi.binary_fill_holes(foreground)
    return Photo("hubble", "object", image, measure.label(foreground), np.zeros_like(foreground),
                 tiles=(2, 2), val_tile=3)


def ihc() -> Photo:
    """Nuclei: haematoxylin channel of a colour deconvolution, Otsu threshold, opening; merged glands are crowd."""
    from scipy import ndimage as ndi
    from skimage import color, filters, measure, morphology

    image = _skimage_image("ihc.png")
    haematoxylin = color.rgb2hed(image)[..., 0]
    foreground = morphology.binary_opening(haematoxylin > filters.threshold_otsu(haematoxylin), morphology.disk(2))
    foreground = ndi.binary_fill_holes(morphology.remove_small_objects(foreground, max_size=60))
    labels = measure.label(foreground)
    areas = np.bincount(labels.ravel())
    too_big = np.flatnonzero(areas > 800)
    too_big = too_big[too_big > 0]
    crowd = np.isin(labels, too_big)
    labels[crowd] = 0
    return Photo("ihc", "nucleus", image, measure.label(labels > 0), crowd, tiles=(2, 2), val_tile=3)


PHOTOS = {"coins": coins, "hubble": hubble, "ihc": ihc}


def _cuts(length: int, parts: int, occupied: np.ndarray) -> list[int]:
    """Tile edges along one axis, each moved (within 10 %) to the line crossing the fewest object pixels."""
    edges = [0]
    window = max(1, length // 10)
    for k in range(1, parts):
        target = round(k * length / parts)
        lo, hi = max(1, target - window), min(length - 1, target + window)
        edges.append(lo + int(np.argmin(occupied[lo:hi])))
    return edges + [length]


def _annotation(mask: np.ndarray, ann_id: int, image_id: int, crowd: bool) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    x, y, w, h = mask_utils.toBbox(rle).tolist()
    if crowd:
        segmentation: object = {"size": rle["size"], "counts": rle["counts"].decode()}
    else:
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        segmentation = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "segmentation": segmentation,
            "area": float(mask.sum()), "bbox": [x, y, w, h], "iscrowd": int(crowd)}


def make_real_photo_dataset(name: str, out_dir: Path) -> Path:
    """Write the set ``name`` (see ``PHOTOS``) as a COCO dataset with train and val subsets under ``out_dir``."""
    photo = PHOTOS[name]()
    rows = _cuts(photo.image.shape[0], photo.tiles[0], (photo.instances > 0).sum(axis=1))
    cols = _cuts(photo.image.shape[1], photo.tiles[1], (photo.instances > 0).sum(axis=0))
    subsets: dict[str, dict] = {s: {"images": [], "annotations": [], "categories": [{"id": 1, "name": photo.label}]}
                                for s in ("train", "val")}
    ann_id = 0
    for index, (r, c) in enumerate((r, c) for r in range(photo.tiles[0]) for c in range(photo.tiles[1])):
        subset = "val" if index == photo.val_tile else "train"
        window = np.s_[rows[r]:rows[r + 1], cols[c]:cols[c + 1]]
        tile, ids, crowd = photo.image[window], photo.instances[window], photo.crowd[window]
        image_id = index + 1
        filename = f"{photo.name}_{index}.png"
        path = out_dir / "images" / subset / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            cv2.imwrite(str(tmp), cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))
        data = subsets[subset]
        data["images"].append({"id": image_id, "file_name": filename, "height": tile.shape[0], "width": tile.shape[1]})
        for instance in np.unique(ids[ids > 0]):
            mask = ids == instance
            if mask.sum() >= MIN_PART_PIXELS:
                ann_id += 1
                data["annotations"].append(_annotation(mask, ann_id, image_id, crowd=False))
        if crowd.any():
            ann_id += 1
            data["annotations"].append(_annotation(crowd, ann_id, image_id, crowd=True))
    for subset, data in subsets.items():
        write_text_atomic(out_dir / "annotations" / f"instances_{subset}.json", json.dumps(data))
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(PHOTOS))
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    make_real_photo_dataset(args.name, args.output)
    for subset in ("train", "val"):
        data = json.loads((args.output / "annotations" / f"instances_{subset}.json").read_text())
        print(f"{subset}: {len(data['images'])} images, {len(data['annotations'])} instances")


if __name__ == "__main__":
    main()
