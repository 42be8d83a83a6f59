"""Load testing ``otxlite serve``: a local server process and N concurrent clients sending ``/score`` requests.

Used by the test suite and by ``scripts/load_test.py`` (FP32 vs INT8 comparisons); not part of the package.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np


@dataclass
class LoadResult:
    """Latencies of the successful requests, and what the failed ones answered."""

    concurrency: int
    images_per_request: int
    wall_s: float
    latencies_s: list[float]
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """requests, errors, requests/s, images/s and latency mean / p50 / p95 / p99 / max in milliseconds."""
        ms = np.asarray(self.latencies_s) * 1000 if self.latencies_s else np.zeros(1)
        done = len(self.latencies_s)
        return {"requests": done + len(self.errors), "errors": len(self.errors), "concurrency": self.concurrency,
                "images_per_request": self.images_per_request, "wall_s": round(self.wall_s, 2),
                "requests_per_s": round(done / self.wall_s, 2),
                "images_per_s": round(done * self.images_per_request / self.wall_s, 2),
                "mean_ms": round(float(ms.mean()), 1),
                **{f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)},
                "max_ms": round(float(ms.max()), 1)}


def score_body(image: bytes, images_per_request: int = 1) -> bytes:
    """A ``/score`` request body carrying ``image`` (encoded file bytes) ``images_per_request`` times."""
    encoded = base64.b64encode(image).decode()
    return json.dumps({"input_data": {"columns": ["image"], "index": list(range(images_per_request)),
                                      "data": [encoded] * images_per_request}}).encode()


def run_load(url: str, body: bytes, requests: int, concurrency: int, api_key: str | None = None,
             images_per_request: int = 1, timeout_s: float = 120.0) -> LoadResult:
    """Send ``requests`` POST /score from ``concurrency`` clients at once (each waits for its answer)."""
    return asyncio.run(_run_load(url, body, requests, concurrency, api_key, images_per_request, timeout_s))


async def _run_load(url: str, body: bytes, requests: int, concurrency: int, api_key: str | None,
                    images_per_request: int, timeout_s: float) -> LoadResult:
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {api_key}"} if api_key else {})}
    latencies: list[float] = []
    errors: list[str] = []
    todo = iter(range(requests))  # shared: each client takes the next request until none are left
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits, trust_env=False) as client:

        async def one_client() -> None:
            for _ in todo:
                start = time.perf_counter()
                try:
                    response = await client.post("/score", content=body, headers=headers)
                except httpx.HTTPError as err:
                    errors.append(f"{type(err).__name__}: {err}")
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors.append(f"HTTP {response.status_code}: {response.text[:200]}")

        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return LoadResult(concurrency, images_per_request, wall, latencies, errors)


class ServerProcess:
    """``otxlite serve`` in a child process on a free loopback port; ``url`` once it answers ``/health`` 200.

    Use as a context manager; leaving it sends SIGTERM and waits for the exit code (``returncode``).
    """

    def __init__(self, model: Path, *args: str, log: Path, startup_timeout_s: float = 120.0,
                 env: dict[str, str] | None = None) -> None:
        self.command = [sys.executable, "-m", "otxlite.cli", "serve", "--load-weights", str(model), "--port", "0",
                        *args]
        self.log = Path(log)
        self.startup_timeout_s = startup_timeout_s
        self.env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1", **(env or {})}
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.returncode: int | None = None

    def __enter__(self) -> "ServerProcess":
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"otxlite serve exited with {self.process.returncode}:\n{self.log_text()}")
            if not self.url:
                found = re.search(r" on (http://\S+?:\d+) ", self.log_text())
                self.url = found.group(1) if found else ""
            elif httpx.get(f"{self.url}/health", timeout=5, trust_env=False).status_code == 200:
                return
            time.sleep(0.2)
        raise RuntimeError(f"otxlite serve was not ready after {self.startup_timeout_s:g} s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self) -> None:
        """Send SIGTERM (the server finishes requests in flight, then exits)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 90.0) -> int:
        """SIGTERM, then the exit code (SIGKILL if it does not exit within ``timeout_s``)."""
        self.terminate()
        try:
            self.returncode = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.returncode = self.process.wait()
        return self.returncode
