"""Training recipes: the augmentation, optimizer and learning-rate schedule a template trains with.

A model family names its recipe (``otxlite.families``; ``sgd_plateau`` unless it says otherwise):

- ``sgd_plateau``: OTX's instance-segmentation recipe: resize + flip, SGD with
  momentum, linear warmup, then ReduceLROnPlateau on validation mask mAP.
- ``mosaic_adamw``: MMDetection's real-time (RTMDet) recipe, scaled to the run: cached mosaic and mix-up over
  random-scale crops with HSV jitter, then, for the last epochs, the deployment's own resize (the
  "stage 2" of MMDetection, which there keeps the aspect ratio; otxlite deploys with a plain resize and
  ends on exactly that); AdamW without weight decay on norms and biases; linear warmup, the base
  rate for the first half, and a cosine decay to 5 % of it over the second half.
  ``data.augmentation`` chooses the first stage: ``mosaic``, ``plain`` (stage 2 throughout: resize,
  HSV jitter, flip) or ``auto``: mosaic from ``MOSAIC_MIN_IMAGES`` training images on, plain below.
  Measured on the 2-image coins photo set from random weights at 256 px: plain reached mask mAP
  0.47 after 30 epochs, mosaic stayed under 0.13 for 150 (mosaic pays off with data to mix).

Both recipes share the loading, the test pipeline (a plain resize to ``data.input_size``), EMA,
BatchNorm statistics and lazy early stopping (see ``otxlite.training.config``).

Masks: on large images with polygon masks (``data.prepare.keep_polygon_masks``) they stay polygons through
the resize, crop and flip and the head rasterizes them at the input size (``poly2mask=False``): a 2048 px
image with 226 objects otherwise decodes 226 full-size bitmaps (1 GB) per sample only to shrink them. Other
datasets, and RLE masks (MMDetection would ignore them as polygons), load as bitmaps. Evaluation pipelines load
no ground truth: the metric reads the COCO file.
"""

from __future__ import annotations

from typing import Any

from otxlite.families.family import MOSAIC_ADAMW

PAD_VALUE = 114  # grey of RTMDet's mosaic, crop and mix-up padding
STAGE2_FRACTION = 20 / 300  # MMDetection: the last 20 of 300 epochs without mosaic and mix-up
COSINE_FLOOR = 0.05  # the cosine decay ends at this fraction of the base learning rate
MOSAIC_MIN_IMAGES = 100  # auto: fewer training images than this train without mosaic and mix-up


def _load(polygons: bool) -> list[dict[str, Any]]:
    return [dict(type="LoadViewedImage"),
            dict(type="LoadAnnotations", with_bbox=True, with_mask=True, poly2mask=not polygons)]


def test_pipeline(input_size: tuple[int, int]) -> list[dict[str, Any]]:
    """What evaluation and deployment see: a plain resize to ``input_size`` (width, height)."""
    return [
        dict(type="LoadViewedImage"),
        dict(type="Resize", scale=tuple(input_size), keep_ratio=False),
        dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
    ]


def whole_image_pipeline() -> list[dict[str, Any]]:
    """Validation of a model trained on tiles: whole images at their own size (the loop cuts the tiles)."""
    return [
        dict(type="LoadViewedImage"),
        dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape")),
    ]


def _plain_train_pipeline(input_size: tuple[int, int], color_jitter: bool, polygons: bool) -> list[dict[str, Any]]:
    jitter = [dict(type="YOLOXHSVRandomAug")] if color_jitter else []
    return [*_load(polygons), dict(type="Resize", scale=tuple(input_size), keep_ratio=False), *jitter,
            dict(type="RandomFlip", prob=0.5), dict(type="PackDetInputs")]


def _mosaic_train_pipeline(input_size: tuple[int, int], polygons: bool) -> list[dict[str, Any]]:
    size = tuple(input_size)
    return [
        *_load(polygons),
        dict(type="CachedMosaic", img_scale=size, pad_val=float(PAD_VALUE), max_cached_images=20, random_pop=False),
        dict(type="RandomResize", scale=(2 * size[0], 2 * size[1]), ratio_range=(0.5, 2.0), keep_ratio=True),
        dict(type="RandomCrop", crop_size=size, recompute_bbox=True, allow_negative_crop=True),
        dict(type="YOLOXHSVRandomAug"),
        dict(type="RandomFlip", prob=0.5),
        dict(type="Pad", size=size, pad_val=dict(img=(PAD_VALUE,) * 3)),
        dict(type="CachedMixUp", img_scale=size, ratio_range=(1.0, 1.0), max_cached_images=10, random_pop=False,
             pad_val=(PAD_VALUE,) * 3, prob=0.5),
        dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1)),
        dict(type="PackDetInputs"),
    ]


def stage2_epochs(epochs: int) -> int:
    """Epochs at the end of an RTMDet run trained on the deployment resize alone (at least one)."""
    return max(1, round(epochs * STAGE2_FRACTION))


def uses_mosaic(recipe: str, augmentation: str, num_train_images: int) -> bool:
    """Whether the run starts with mosaic and mix-up (see the module docstring)."""
    if recipe != MOSAIC_ADAMW or augmentation == "plain":
        return False
    return augmentation == "mosaic" or num_train_images >= MOSAIC_MIN_IMAGES


def describe_augmentation(augmentation: str, num_train_images: int) -> str:
    """One line for the console: which first stage an RTMDet run trains with, and why."""
    if augmentation != "auto":
        return f"Augmentation: {augmentation} (data.augmentation={augmentation})."
    if uses_mosaic(MOSAIC_ADAMW, augmentation, num_train_images):
        return f"Augmentation: mosaic and mix-up ({num_train_images} training images >= {MOSAIC_MIN_IMAGES})."
    return (f"Augmentation: plain resize, colour jitter and flip ({num_train_images} training images < "
            f"{MOSAIC_MIN_IMAGES}; --param data.augmentation=mosaic to mix them anyway).")


def train_pipeline(recipe: str, input_size: tuple[int, int], mosaic: bool, polygons: bool) -> list[dict[str, Any]]:
    """The training pipeline the run starts with (``polygons``: every training mask is a polygon)."""
    if mosaic:
        return _mosaic_train_pipeline(input_size, polygons)
    return _plain_train_pipeline(input_size, color_jitter=recipe == MOSAIC_ADAMW, polygons=polygons)


def recipe_hooks(input_size: tuple[int, int], epochs: int, mosaic: bool, polygons: bool) -> list[dict[str, Any]]:
    """Hooks of the recipe itself: after mosaic, the switch to the deployment resize for the last epochs."""
    if not mosaic:
        return []
    return [dict(type="PipelineSwitchHook", switch_epoch=epochs - stage2_epochs(epochs),
                 switch_pipeline=_plain_train_pipeline(input_size, color_jitter=True, polygons=polygons))]


def optimizer(recipe: str, learning_rate: float) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The optimizer config and its ``paramwise_cfg`` (None: one setting for every parameter)."""
    if recipe == MOSAIC_ADAMW:
        return (dict(type="AdamW", lr=learning_rate, weight_decay=0.05),
                dict(norm_decay_mult=0.0, bias_decay_mult=0.0, bypass_duplicate=True))
    return dict(type="SGD", lr=learning_rate, momentum=0.9, weight_decay=1e-4), None


def cosine_decay(learning_rate: float, epochs: int) -> list[dict[str, Any]]:
    """RTMDet's schedule after warmup: the base rate for the first half, cosine to 5 % over the second."""
    half = epochs // 2
    if half < 1:
        return []
    return [dict(type="CosineAnnealingLR", eta_min=learning_rate * COSINE_FLOOR, begin=half, end=epochs,
                 T_max=epochs - half, by_epoch=True, convert_to_iter_based=True)]
