r"""Training speed and memory of otxlite versus the same config run through plain MMDetection.

For each template, at its default input size and at a small one, one training epoch (validation
off, random weights) is run twice, each in its own fresh Python process:

* ``otxlite``: the full ``otxlite.app.train.train()`` path (data preparation, config building,
  ``build_runner``, otxlite's hooks RunFolderHook/ResultsCsvHook/PlotsHook/ProgressHook, run folder),
  with ``--param`` overrides for ``num_iters=1``, the input size, batch size and workers. The only
  change: ``build_runner_config`` is called with ``val_ann=None``, so no validation runs.
* ``plain``: the same Config (model, pipelines, batch size, workers, SGD, clipping, warmup, EMA,
  seed 0), minus everything otxlite: MMDetection's ``CocoDataset`` instead of ``QuietCocoDataset``,
  no ``otxlite.training.registry`` import, no otxlite hooks, mmengine's own ``CheckpointHook``
  (one checkpoint per epoch, as a plain MMDetection config has) instead of RunFolderHook, written to
  a ``.py`` file and run with ``Config.fromfile`` + ``Runner.from_cfg`` + ``runner.train()``.
  It reads otxlite's converted train COCO file, so both sides see the same annotations.

What is timed (the same hook, registered on both runners at priority LOWEST, so it runs after every
other hook): the wall time between the end of ``after_train_iter`` of the last warm-up iteration
and the end of ``after_train_iter`` of the epoch's last iteration. That window holds, per
iteration, data loading (dataloader workers), all ``before/after_train_iter`` hooks (otxlite's and
mmengine's: timer, logger, scheduler, EMA) and the forward/backward/optimizer step. It excludes data
preparation, model building, the warm-up iterations (dataloader start-up, first allocations) and the
epoch end (checkpoint writing, reported separately as ``epoch end s``). images/s = images in the
window / window seconds; overhead = otxlite seconds per image / plain seconds per image (target
<= 1.05). CPU overhead: the same ratio of the measuring process's CPU time (``time.process_time``,
all its threads, not the dataloader workers) over the window; it moves less than wall time when
other jobs share the machine. With ``--repeats R`` each side runs R times (alternating which goes first) and the median
images/s is reported.

Peak memory: ``ru_maxrss`` of the measuring process (whole lifetime, so otxlite's includes its data
preparation; the peak before ``runner.train()`` is in the JSON too) and the largest dataloader
worker's ``ru_maxrss`` (RUSAGE_CHILDREN after the workers are joined).

Also per run (JSON, and a line under the table): the milliseconds per iteration each hook spends
in ``before/after_train_iter`` and the seconds hooks spend at the epoch end and after the run. The
otxlite process runs with ``TTY_COMPATIBLE=1 TTY_INTERACTIVE=1``, so rich draws its live progress
bar as in a terminal (into the worker log), which is what a user's console costs; ``--console pipe``
measures it as with redirected output instead.

A check that both sides run the same training: with the same seed they must report the same first
iteration loss (``same start`` in the table).

Timings are only comparable on an otherwise idle machine: the load average at start and end is in
the JSON. Every measuring process trains with the same threads (torch's default) and dataloader
workers (the template's, or ``--workers``).

Smoke test (1 template, 128 px, 8 images; about 1-2 minutes)::

    .venv/bin/python scripts/benchmark_training.py --templates MaskRCNN-ResNet18 --sizes 128 --images 8 \
        --batch-size 2 --output /tmp/training.json

Quick subset (1 template, 256 px, 16 images, 6 timed iterations per side; well under 10 minutes)::

    .venv/bin/python scripts/benchmark_training.py --templates MaskRCNN-ResNet18 --sizes 256 --images 16 \
        --batch-size 2 --output /tmp/training.json

Full set (all 8 templates at their default size and at 256 px, 32 images of 512 px, batch 4, so 6
timed iterations per run; several hours on a 2-core CPU, the 1024 px ResNet-101/152 runs dominate)::

    .venv/bin/python scripts/benchmark_training.py [--repeats 3]

Writes a Markdown table to stdout and ``benchmarks/training.json`` (atomically, after every row).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from otxlite.core.fileio import write_json_atomic  # noqa: E402
from otxlite.core.measure import machine_info  # noqa: E402

MARKER = "BENCHMARK_RESULT "
TIMED_STAGES = ("before_train_iter", "after_train_iter", "after_train_epoch", "after_train", "after_run")
DEFAULT_OUTPUT = REPO / "benchmarks" / "training.json"
DEFAULT_DATA = Path.home() / ".cache" / "otxlite" / "benchmark_training"


# --------------------------------------------------------------------------------------------
# Measuring process (``--worker SPEC``): one training epoch, one JSON line on stdout.
# --------------------------------------------------------------------------------------------

def _maxrss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # Linux: KiB


def _timing_hook(warmup: int) -> Any:
    """A hook that records when each training iteration (and the epoch end) finished."""
    from mmengine.hooks import Hook

    class EpochTimingHook(Hook):
        priority = "LOWEST"

        def __init__(self) -> None:
            self.iter_end: list[float] = []
            self.iter_cpu: list[float] = []  # process CPU time (all threads of the measuring process)
            self.batch: list[int] = []
            self.losses: list[float] = []
            self.epoch_start = self.epoch_end = 0.0
            self.rss_at_start = 0.0
            self.run_start = self.run_end = 0.0  # runner.train()'s before_run and after_run
            self.hook_s: dict[tuple[str, str], float] = {}

        def before_run(self, runner: Any) -> None:
            self.run_start = time.perf_counter()

        def after_run(self, runner: Any) -> None:
            self.run_end = time.perf_counter()

        def timings(self, start: float) -> dict[str, float]:
            """Seconds from ``start`` to the run (setup), of runner.train()'s run, and in all until now."""
            return {"setup_s": round(self.run_start - start, 4), "train_call_s": round(self.run_end - self.run_start, 4),
                    "total_s": round(time.perf_counter() - start, 4)}

        def before_train_epoch(self, runner: Any) -> None:
            for other in runner.hooks:
                if other is not self:
                    for stage in TIMED_STAGES:
                        self._time_calls(other, stage)
            self.rss_at_start = _maxrss_mib()
            self.epoch_start = time.perf_counter()
            self.epoch_start_cpu = time.process_time()

        def _time_calls(self, hook: Any, stage: str) -> None:
            """Add up the seconds ``hook`` spends in ``stage`` (the wrapper costs about a microsecond)."""
            method = getattr(hook, stage)
            key = (type(hook).__name__, stage)
            self.hook_s.setdefault(key, 0.0)

            def timed(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return method(*args, **kwargs)
                finally:
                    self.hook_s[key] += time.perf_counter() - start

            setattr(hook, stage, timed)

        def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
            self.iter_end.append(time.perf_counter())
            self.iter_cpu.append(time.process_time())
            self.batch.append(len(data_batch["inputs"]) if data_batch else 0)
            loss = (outputs or {}).get("loss", float("nan"))
            self.losses.append(float(loss.detach() if hasattr(loss, "detach") else loss))

        def after_train_epoch(self, runner: Any) -> None:
            self.epoch_end = time.perf_counter()

        def result(self) -> dict[str, Any]:
            n = len(self.iter_end)
            if n <= warmup:
                raise SystemExit(f"only {n} iterations, not more than --warmup {warmup}: "
                                 "use more --images or a smaller --batch-size")
            window = self.iter_end[-1] - self.iter_end[warmup - 1] if warmup else self.iter_end[-1] - self.epoch_start
            images = sum(self.batch[warmup:])
            cpu = self.iter_cpu[-1] - (self.iter_cpu[warmup - 1] if warmup else self.epoch_start_cpu)
            starts = [self.epoch_start, *self.iter_end[:-1]]
            return dict(
                iterations=n, timed_iterations=n - warmup, timed_images=images, timed_s=round(window, 4),
                images_per_s=round(images / window, 4), timed_cpu_s=round(cpu, 4),
                cpu_s_per_image=round(cpu / images, 4),
                iter_s=[round(end - start, 4) for start, end in zip(starts, self.iter_end)],
                epoch_s=round(self.epoch_end - self.epoch_start, 4),
                epoch_end_s=round(self.epoch_end - self.iter_end[-1], 4),
                first_loss=self.losses[0], last_loss=self.losses[-1],
                peak_rss_before_train_mib=self.rss_at_start,
                hook_ms_per_iter={f"{name}.{stage}": round(1000 * t / n, 3) for (name, stage), t in self.hook_s.items()
                                  if stage.endswith("_iter") and t * 1e6 / n >= 1},
                hook_s={f"{name}.{stage}": round(t, 4) for (name, stage), t in self.hook_s.items()
                        if not stage.endswith("_iter") and t >= 1e-3},
            )

    return EpochTimingHook()


def _run_otxlite(spec: dict[str, Any]) -> dict[str, Any]:
    from otxlite.app.train import train

    hook = _timing_hook(spec["warmup"])
    size = spec["input_size"]
    params = [
        "learning_parameters.num_iters=1",
        f"data.input_size=[{size},{size}]",
        f"learning_parameters.batch_size={spec['batch_size']}",
        f"learning_parameters.num_workers={spec['workers']}",
    ]
    start = time.perf_counter()
    train(spec["template"], Path(spec["data"]), output=Path(spec["work_dir"]) / "run", params=params,
          pretrained=False, extra_hooks=[hook], validate=False)
    return {**hook.result(), **hook.timings(start)}


def _run_plain(spec: dict[str, Any]) -> dict[str, Any]:
    from mmengine.config import Config
    from mmengine.runner import Runner

    hook = _timing_hook(spec["warmup"])
    start = time.perf_counter()
    cfg = Config.fromfile(spec["config"])
    cfg.work_dir = str(Path(spec["work_dir"]) / "run")
    runner = Runner.from_cfg(cfg)
    runner.register_hook(hook)
    runner.train()
    del runner
    return {**hook.result(), **hook.timings(start)}


def worker(spec: dict[str, Any]) -> None:
    import torch

    result = _run_otxlite(spec) if spec["side"] == "otxlite" else _run_plain(spec)
    gc.collect()  # drops the runner: persistent dataloader workers are joined, so RUSAGE_CHILDREN counts them
    result.update(side=spec["side"], torch_threads=torch.get_num_threads(), peak_rss_mib=_maxrss_mib(),
                  worker_peak_rss_mib=_maxrss_mib(resource.RUSAGE_CHILDREN))
    print(MARKER + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# Driver: data, configs, subprocesses, table, JSON.
# --------------------------------------------------------------------------------------------

def prepare_dataset(root: Path, images: int, image_size: int) -> tuple[Path, Path, list[str]]:
    """The generated sample dataset and otxlite's converted train COCO file (for the plain side)."""
    from otxlite.data.prepare import prepare_training_data
    from otxlite.data.sample_data import make_sample_dataset

    folder = root / f"sample_{images}x{image_size}"
    make_sample_dataset(folder / "dataset", num_train=images, num_val=2, size=image_size, seed=0)
    data = prepare_training_data(folder / "dataset", None, folder / "prepared")
    return folder / "dataset", data.subsets["train"].ann_file, data.labels


def plain_config(template: Any, input_size: int, batch_size: int, workers: int, train_ann: Path,
                 labels: list[str], path: Path) -> Path:
    """otxlite's Config for this run with everything otxlite-specific taken out, as a config file."""
    from otxlite.training.config import build_runner_config
    from otxlite.core.templates import apply_overrides

    hyper_parameters = apply_overrides(template.hyper_parameters, [
        "learning_parameters.num_iters=1", f"data.input_size=[{input_size},{input_size}]",
        f"learning_parameters.batch_size={batch_size}", f"learning_parameters.num_workers={workers}"],
        template.family.input_size_multiple)
    cfg = build_runner_config(template, hyper_parameters, labels, train_ann, None, path.parent / "unused",
                              num_train_images=1, pretrained_start="random")  # no validation: the size sets nothing
    imports = [name for name in cfg.custom_imports["imports"] if not name.startswith("otxlite.training")]
    cfg.custom_imports = dict(imports=imports, allow_failed_imports=False)
    cfg.train_dataloader.dataset.type = "CocoDataset"
    cfg.custom_hooks = [hook for hook in cfg.custom_hooks if hook["type"] != "BatchNormStatisticsHook"]
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=1)
    assert not any(str(hook["type"]).endswith(("RunFolderHook", "ResultsCsvHook", "PlotsHook", "ProgressHook"))
                   for hook in cfg.custom_hooks)
    cfg.dump(str(path))
    return path


def run_worker(spec: dict[str, Any], log: Path, timeout: int, terminal: bool = True) -> dict[str, Any]:
    # terminal: rich draws its live progress bar as it does in a terminal (into the log file)
    tty = "1" if terminal else "0"
    env = {**os.environ, "TTY_COMPATIBLE": tty, "TTY_INTERACTIVE": tty, "COLUMNS": "120"}
    with open(log, "w") as out:
        try:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                                  stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout, cwd=str(REPO))
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    text = log.read_text(errors="replace")
    for line in reversed(text.splitlines()):
        if MARKER in line:  # rich may have put terminal control codes before it
            return json.loads(line.split(MARKER, 1)[1])
    tail = "\n".join(text.splitlines()[-15:])
    return {"side": spec["side"], "error": f"exit {code}; log tail:\n{tail}"}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[-1]["error"], "runs": runs}
    median = lambda key: round(statistics.median(r[key] for r in ok), 4)  # noqa: E731
    return dict(
        images_per_s=median("images_per_s"), s_per_image=round(1 / median("images_per_s"), 4),
        cpu_s_per_image=median("cpu_s_per_image"), epoch_end_s=median("epoch_end_s"),
        train_call_s=median("train_call_s"), setup_s=median("setup_s"),
        peak_rss_mib=max(r["peak_rss_mib"] for r in ok),
        peak_rss_before_train_mib=max(r["peak_rss_before_train_mib"] for r in ok),
        worker_peak_rss_mib=max(r["worker_peak_rss_mib"] for r in ok),
        first_loss=ok[0]["first_loss"], hook_ms_per_iter=ok[0]["hook_ms_per_iter"], hook_s=ok[0]["hook_s"],
        runs=runs,
    )


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| template | input | batch | otxlite img/s | plain img/s | overhead | CPU overhead | otxlite peak MiB "
             "| plain peak MiB | worker peak MiB (otx/plain) | epoch end s (otx/plain) | same start |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        o, p = row["otxlite"], row["plain"]
        if "error" in o or "error" in p:
            lines.append(f"| {row['template']} | {row['input_size']} | {row['batch_size']} | "
                         f"{'error' if 'error' in o else o['images_per_s']} | "
                         f"{'error' if 'error' in p else p['images_per_s']} | - | - | - | - | - | - | - |")
            continue
        same = "yes" if abs(o["first_loss"] - p["first_loss"]) <= 1e-4 * max(1.0, abs(p["first_loss"])) else "NO"
        lines.append(
            f"| {row['template']} | {row['input_size']} | {row['batch_size']} | {o['images_per_s']:.3f} | "
            f"{p['images_per_s']:.3f} | {row['overhead']:.3f} | {row['overhead_cpu']:.3f} | {o['peak_rss_mib']:.0f} | "
            f"{p['peak_rss_mib']:.0f} | "
            f"{o['worker_peak_rss_mib']:.0f} / {p['worker_peak_rss_mib']:.0f} | "
            f"{o['epoch_end_s']:.2f} / {p['epoch_end_s']:.2f} | {same} |")
    notes = []
    for row in rows:
        o, p = row["otxlite"], row["plain"]
        if "error" in o or "error" in p:
            continue
        costs = {**{k: (v, p["hook_ms_per_iter"].get(k)) for k, v in o["hook_ms_per_iter"].items()},
                 **{k: (o["hook_ms_per_iter"].get(k), v) for k, v in p["hook_ms_per_iter"].items()
                    if k not in o["hook_ms_per_iter"]}}
        shown = ", ".join(f"{k} {_ms(a)}/{_ms(b)}" for k, (a, b) in
                          sorted(costs.items(), key=lambda item: -max(item[1][0] or 0, item[1][1] or 0))
                          if max(a or 0, b or 0) >= 0.05)
        ends = ", ".join(f"{k} {v:.2f}" for k, v in o["hook_s"].items())
        plain_ends = ", ".join(f"{k} {v:.2f}" for k, v in p["hook_s"].items())
        notes.append(f"- {row['template']} @ {row['input_size']}: hook ms per iteration (otxlite/plain): {shown}; "
                     f"hook s outside iterations: otxlite {ends or '-'}; plain {plain_ends or '-'}")
    return "\n".join(lines + ([""] + notes if notes else []))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="What is timed, and example runs: see the top of this script.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--templates", nargs="+", help="template names or ids (default: all shipped templates)")
    parser.add_argument("--sizes", nargs="+", default=["default", "256"],
                        help="input sizes: 'default' (the template's) and/or pixels (default: default 256)")
    parser.add_argument("--images", type=int, default=32, help="training images in the epoch (default 32)")
    parser.add_argument("--image-size", type=int, default=512, help="side of the generated images (default 512)")
    parser.add_argument("--batch-size", type=int, help="default: the template's")
    parser.add_argument("--workers", type=int, help="dataloader workers (default: the template's)")
    parser.add_argument("--warmup", type=int, default=2, help="first iterations left out of the timing (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side; the median is reported (default 1)")
    parser.add_argument("--timeout", type=int, default=7200, help="seconds per measuring process (default 7200)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"dataset cache (default {DEFAULT_DATA})")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="JSON results (default benchmarks/training.json)")
    parser.add_argument("--console", choices=("terminal", "pipe"), default="terminal",
                        help="terminal (default): rich draws its live progress bar as in a terminal; "
                             "pipe: as when output is redirected (no live rendering)")
    parser.add_argument("--keep", action="store_true", help="keep the run folders and worker logs (printed)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for size in args.sizes:
        if size != "default" and not size.isdigit():
            parser.error(f"--sizes: '{size}' is neither 'default' nor a number of pixels")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    from otxlite.core.templates import list_templates, load_template

    templates = [load_template(name) for name in args.templates] if args.templates else list_templates()
    import torch

    info = machine_info(("torch", "mmengine", "mmdet", "mmcv", "otxlite")) | {"torch_threads": torch.get_num_threads()}
    _, train_ann, labels = prepare_dataset(args.data, args.images, args.image_size)
    data_root = args.data / f"sample_{args.images}x{args.image_size}" / "dataset"
    scratch = Path(tempfile.mkdtemp(prefix="otxlite-bench-"))
    report: dict[str, Any] = dict(
        machine=info,
        settings=dict(images=args.images, image_size=args.image_size, sizes=args.sizes, batch_size=args.batch_size,
                      workers=args.workers, warmup=args.warmup, repeats=args.repeats, console=args.console),
        timed=("wall time from the end of the last warm-up iteration to the end of the epoch's last iteration "
               "(after all after_train_iter hooks): data loading, per-iteration hooks, forward/backward/step; "
               "not data preparation, model building, warm-up or epoch-end checkpointing"),
        results=[],
    )
    print(f"# {info['cpu']}, {info['usable_cores']} cores, torch threads {info['torch_threads']}, "
          f"load average {info['load_average_at_start']}", file=sys.stderr)
    try:
        for template in templates:
            learning = template.hyper_parameters["learning_parameters"]
            batch = args.batch_size or int(learning["batch_size"])
            workers = int(learning["num_workers"]) if args.workers is None else args.workers
            default_size = int(template.hyper_parameters["data"]["input_size"][0])
            sizes = list(dict.fromkeys(default_size if s == "default" else int(s) for s in args.sizes))
            for size in sizes:
                tag = f"{template.name}@{size}"
                config = plain_config(template, size, batch, workers, train_ann, labels,
                                      scratch / f"{template.name}_{size}_plain.py")
                runs: dict[str, list[dict[str, Any]]] = {"otxlite": [], "plain": []}
                for repeat in range(args.repeats):
                    order = ["otxlite", "plain"] if repeat % 2 == 0 else ["plain", "otxlite"]
                    for side in order:
                        work = scratch / f"{template.name}_{size}_{side}_{repeat}"
                        work.mkdir()
                        spec = dict(side=side, template=template.name, input_size=size, batch_size=batch,
                                    workers=workers, warmup=args.warmup, data=str(data_root), config=str(config),
                                    work_dir=str(work))
                        print(f"# {tag} {side} run {repeat + 1}/{args.repeats} ...", file=sys.stderr, flush=True)
                        result = run_worker(spec, scratch / f"{work.name}.log", args.timeout,
                                            args.console == "terminal")
                        if "error" in result:
                            print(f"#   failed: {result['error']}", file=sys.stderr)
                        else:
                            print(f"#   {result['images_per_s']:.3f} img/s, peak {result['peak_rss_mib']:.0f} MiB",
                                  file=sys.stderr)
                        runs[side].append(result)
                        if not args.keep:
                            shutil.rmtree(work, ignore_errors=True)
                otx, plain = summarize(runs["otxlite"]), summarize(runs["plain"])
                row = dict(template=template.name, input_size=size, batch_size=batch, workers=workers,
                           otxlite=otx, plain=plain)
                if "error" not in otx and "error" not in plain:
                    row["overhead"] = round(otx["s_per_image"] / plain["s_per_image"], 4)
                    row["overhead_cpu"] = round(otx["cpu_s_per_image"] / plain["cpu_s_per_image"], 4)
                    row["overhead_train_call"] = round(otx["train_call_s"] / plain["train_call_s"], 4)
                report["results"].append(row)
                report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
                write_json_atomic(args.output, report)
    finally:
        if args.keep:
            print(f"# run folders and logs kept in {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(table(report["results"]))
    print(f"\nimages/s over the epoch's iterations after {args.warmup} warm-up iteration(s); overhead = otxlite "
          f"time / plain time per image (target <= 1.05). {info['cpu']}, {info['usable_cores']} cores, "
          f"torch threads {info['torch_threads']}. Details: {args.output}")
    failed = any("overhead" not in row for row in report["results"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
