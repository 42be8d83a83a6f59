"""Pretrained backbone weights: downloaded once into torch's hub cache, or training starts from scratch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from otxlite.console import err_console


def cached_checkpoint(url: str) -> Path:
    """Where mmengine's URL loader caches ``url`` (torch hub's checkpoints folder)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])


def fetch_pretrained(urls: list[str], timeout: float = 20.0) -> bool:
    """Make every pretrained checkpoint available offline; False (with one warning) if one cannot be had."""
    import torch

    for url in urls:
        if not url.startswith(("http://", "https://")):
            if Path(url).is_file():
                continue
            err_console.print(f"[yellow]Warning:[/] pretrained checkpoint {url} not found; training from random weights.")
            return False
        target = cached_checkpoint(url)
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout)
        try:
            torch.hub.download_url_to_file(url, str(target), progress=True)
        except Exception as err:  # offline, DNS, HTTP errors: all mean "not reachable"
            err_console.print(
                f"[yellow]Warning:[/] cannot download the pretrained backbone ({url}: {type(err).__name__}). "
                "Training starts from random weights, which needs far more epochs. With internet access, rerun "
                f"to cache it, or put the file at {target}."
            )
            return False
        finally:
            socket.setdefaulttimeout(previous)
    return True
