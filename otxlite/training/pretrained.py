"""Pretrained starts: a COCO-pretrained detector, else an ImageNet backbone, else random weights.

Weights are downloaded once into torch's hub cache (where mmengine's URL loader looks); a start that
cannot be had (offline, a moved URL) falls back to the next one with a single warning.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from otxlite.core.console import err_console

COCO, IMAGENET, RANDOM = "COCO", "ImageNet", "random"


def cached_checkpoint(url: str) -> Path:
    """Where mmengine's URL loader caches ``url`` (torch hub's checkpoints folder)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])


def fetch_checkpoint(url: str, timeout: float = 20.0) -> str | None:
    """Make one checkpoint (URL or local path) available offline; None if it is, else why it is not."""
    import torch

    if not url.startswith(("http://", "https://")):
        return None if Path(url).is_file() else f"{url} does not exist"
    target = cached_checkpoint(url)
    if target.is_file():
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        torch.hub.download_url_to_file(url, str(target), progress=True)
    except Exception as err:  # offline, DNS, HTTP errors: all mean "not reachable"
        return f"cannot download {url} ({type(err).__name__}); with internet access rerun, or put the file at {target}"
    finally:
        socket.setdefaulttimeout(previous)
    return None


def choose_pretrained_start(coco_checkpoint: str | None, backbone_checkpoints: list[str]) -> str:
    """The best start whose weights are here (downloading them once): ``COCO``, ``ImageNet`` or ``random``."""
    problems = []
    if coco_checkpoint:
        problem = fetch_checkpoint(coco_checkpoint)
        if problem is None:
            return COCO
        problems.append(f"COCO-pretrained detector: {problem}")
    if backbone_checkpoints:
        backbone_problems = [p for p in map(fetch_checkpoint, backbone_checkpoints) if p is not None]
        if not backbone_problems:
            if problems:
                err_console.print(f"[yellow]Warning:[/] {problems[0]}. Training starts from the ImageNet backbone "
                                  "instead, which needs more epochs to reach the same accuracy.")
            return IMAGENET
        problems.append(f"ImageNet backbone: {backbone_problems[0]}")
    err_console.print(f"[yellow]Warning:[/] no pretrained weights ({'; '.join(problems)}). Training starts from "
                      "random weights, which needs far more epochs and data.")
    return RANDOM
