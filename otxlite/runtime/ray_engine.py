"""``--engine ray``: the same per-image scoring on Ray Data, for a cluster (or every core of one machine).

The driver lists the images; Ray Data hands them out in small batches to ``workers`` actors, each holding one
compiled model (``threads`` OpenVINO threads); each actor returns one JSON line per image, and the driver writes
them through the same resumable files as the one-process engine (so resuming and deduplicating are the same
code). Ray is an optional extra, imported only here and only when this engine runs."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable

from otxlite.core.console import is_verbose
from otxlite.core.errors import OtxliteError
from otxlite.runtime.batch import OnLine
from otxlite.runtime.images import InputImage

BATCH_SIZE = 8  # images per map_batches call: enough to keep an actor's infer requests busy, few lost on a kill


def import_ray() -> Any:
    """The ``ray`` module, or the paragraph saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the Data library is part of the extra, not of every Ray install)
    except ImportError as err:
        raise OtxliteError(
            f"--engine ray needs Ray with Ray Data, an optional extra that is not installed here ({err}). Install it "
            "with `pip install 'otxlite[ray]'` (on every machine of the cluster, beside otxlite), or score without Ray: "
            "the default engine in one process, and --shard I/N to split the images over several processes or "
            "machines.") from err
    return ray


class ScoringActor:
    """One Ray actor: one scorer (one compiled model), kept for every batch it is given."""

    def __init__(self, make_scorer: Callable[..., Any], threads: int) -> None:
        self.scorer = make_scorer(threads=threads)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        """A batch of ``name``/``path`` columns -> ``name``/``kind``/``line``/``detections`` columns, a row an image."""
        rows: dict[str, list[Any]] = {"name": [], "kind": [], "line": [], "detections": []}

        def collect(name: str, kind: str, line: str, detections: int) -> None:
            for column, value in zip(rows, (name, kind, line, detections)):
                rows[column].append(value)

        images = [InputImage(str(name), Path(str(path))) for name, path in zip(batch["name"], batch["path"])]
        self.scorer.score(images, collect)
        return rows


def score_on_ray(images: list[InputImage], make_scorer: Callable[..., Any], on_line: OnLine, workers: int | None,
                 threads: int | None, address: str | None) -> tuple[int, int]:
    """Score ``images`` on Ray: a local Ray started for the run (and stopped after it), or the cluster at
    ``address``. ``make_scorer(threads=...)`` builds an actor's scorer; ``on_line`` runs on this (the driver's)
    process for each image. Returns the (workers, threads per worker) used."""
    ray = import_ray()
    quiet = not is_verbose()
    if quiet:  # Ray's own log lines only with --verbose; errors still reach the driver
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # after importing ray.data, which sets it up
    options = {"logging_level": "ERROR" if quiet else "INFO", "log_to_driver": not quiet}
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **options)
    try:
        workers, threads = _actor_sizes(ray, workers, threads, address)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        dataset = ray.data.from_items([{"name": image.name, "path": str(image.path)} for image in images])
        with warnings.catch_warnings():  # max_restarts has no named parameter yet in Ray 2.60-2.63
            warnings.simplefilter("ignore", DeprecationWarning)
            # An actor that dies ends the run (rerunning it resumes) instead of coming back without its arguments.
            scored = dataset.map_batches(ScoringActor, batch_size=BATCH_SIZE, num_cpus=threads,
                                         compute=ray.data.ActorPoolStrategy(size=workers),
                                         fn_constructor_kwargs={"make_scorer": make_scorer, "threads": threads},
                                         max_restarts=0)
        for row in scored.iter_rows():
            on_line(row["name"], row["kind"], row["line"], int(row["detections"]))
    finally:
        ray.shutdown()  # stops the local Ray this run started; from a cluster, only disconnects
    return workers, threads


def _actor_sizes(ray: Any, workers: int | None, threads: int | None, address: str | None) -> tuple[int, int]:
    """Workers (default: one per machine) and threads each (default: a machine's cores over its workers), checked
    against the CPUs Ray has: an actor that fits nowhere would wait forever."""
    node_cpus = [int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"]]
    node_cpus = [cpus for cpus in node_cpus if cpus > 0] or [0]
    workers = workers or len(node_cpus)
    threads = threads or max(1, min(max(node_cpus), sum(node_cpus) // workers))
    fits = sum(cpus // threads for cpus in node_cpus)
    if fits < workers:
        where = f"the cluster at {address}" if address else "the local Ray of this machine"
        raise OtxliteError(f"--workers {workers} x --threads {threads}: {where} has room for {fits} such workers "
                           f"(CPUs per machine: {', '.join(map(str, node_cpus))}). Ask for fewer workers or fewer "
                           "threads each.")
    return workers, threads
