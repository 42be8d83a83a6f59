"""Deterministic train/validation split that keeps every label on both sides where possible."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

VALIDATION_SUBSETS = ("val", "valid", "validation")


def label_set(item: Any) -> frozenset:
    """Labels of an item's annotations."""
    return frozenset(ann.label for ann in item.annotations if ann.label is not None)


def split_train_val(items: list[Any], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """Split items ~80/20, seeded; each label with two or more images lands in both parts."""
    pool = sorted(items, key=lambda item: (item.subset or "", item.id))
    random.Random(seed).shuffle(pool)
    n_val = max(1, round(len(pool) * val_fraction)) if len(pool) > 1 else 0
    in_pool = Counter(label for item in pool for label in label_set(item))
    val: list[Any] = []

    def can_move(item: Any) -> bool:
        # Moving an item to validation must not take a label's last image away from training.
        return len(val) < n_val and all(in_pool[label] >= 2 for label in label_set(item))

    def move(item: Any) -> None:
        pool.remove(item)
        val.append(item)
        in_pool.subtract(label_set(item))

    for label, _ in sorted(in_pool.items(), key=lambda kv: (kv[1], str(kv[0]))):  # rarest label first
        if any(label in label_set(item) for item in val):
            continue
        candidate = next((item for item in pool if label in label_set(item) and can_move(item)), None)
        if candidate is not None:
            move(candidate)
    for item in list(pool):
        if len(val) >= n_val:
            break
        if can_move(item):
            move(item)
    return pool, val


def pick_validation_subset(items: list[Any]) -> tuple[list[Any], list[Any]] | None:
    """If the items carry a validation subset (``val``, ``valid``...), return (train, val) by subset."""
    is_val = [(item.subset or "").lower() in VALIDATION_SUBSETS for item in items]
    if not any(is_val) or all(is_val):
        return None
    return [i for i, v in zip(items, is_val) if not v], [i for i, v in zip(items, is_val) if v]


def subset_from_file_name(path: Path) -> str:
    """Subset named by an annotation file's name (``train.jsonl``, ``coco_val.record-00000-of-00004``):
    ``train``, ``val``, ``test`` or Datumaro's default."""
    from datumaro.components.dataset_base import DEFAULT_SUBSET_NAME

    stem = Path(path).stem.lower()
    words = set(re.split(r"[^a-z0-9]+", stem))
    if "train" in stem:
        return "train"
    if words & {"val", "valid", "validation"}:
        return "val"
    if "test" in words:
        return "test"
    return DEFAULT_SUBSET_NAME
