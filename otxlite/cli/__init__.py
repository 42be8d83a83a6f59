"""The ``otxlite`` command line: one thin function per verb; the work happens in the functions they call.

Heavy libraries (torch, mmdet, openvino) are imported inside the verbs, so ``otxlite --help`` is fast.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer

from otxlite import __version__
from otxlite.core.console import console, err_console, set_verbose
from otxlite.data.formats import FORMATS, DataOptions
from otxlite.core.errors import OtxliteError, resource_problem
from otxlite.core.templates import DEFAULT_HYPER_PARAMETERS
from otxlite.serve.settings import ServeSettings

SERVE_DEFAULTS = ServeSettings()
INT8_DEFAULTS = DEFAULT_HYPER_PARAMETERS["optimization"]

app = typer.Typer(
    name="otxlite",
    help="Train, evaluate, export and quantize instance segmentation models for Intel CPUs.\n\n"
    "Typical flow: otxlite find -> otxlite train -> otxlite eval -> otxlite export -> otxlite optimize -> "
    "otxlite predict (or serve). To look closer: otxlite explain (saliency maps) and otxlite benchmark (every "
    "form of a model on your data). Every verb writes into one run folder (-o) and prints where.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

Output = Annotated[Optional[Path], typer.Option("--output", "-o", help="Run folder (default: a new folder under otxlite-runs/).")]
Verbose = Annotated[bool, typer.Option("--verbose", help="Show full tracebacks on errors, and the libraries' own log messages.")]
DataFormat = Annotated[Optional[str], typer.Option("--data-format", help=f"Force a dataset format: {', '.join(FORMATS)} (default: detected).")]
DataRoot = Annotated[Optional[Path], typer.Option("--data-root", help="Where the images of a Label Studio or AzureML export lie, when not beside the export (e.g. Label Studio's media folder).")]
Device = Annotated[str, typer.Option("--device", help="auto (the GPU when mmcv's ops have CUDA kernels, else the CPU with a warning), cuda or cpu.")]


def _version(value: bool) -> None:
    if value:
        console.print(f"otxlite {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """otxlite: instance segmentation from YAML templates, for Intel CPUs."""


@app.command()
def find(verbose: Verbose = False) -> None:
    """List the model templates: name, GFLOPs, size, input size, id and path (one plain line each when piped)."""
    from otxlite.app.find import print_templates
    from otxlite.core.templates import list_templates

    print_templates(list_templates())


@app.command()
def train(
    template: Annotated[str, typer.Argument(help="Template YAML path, id or name (see `otxlite find`).")],
    train_data_roots: Annotated[Path, typer.Option("--train-data-roots", help="Training dataset folder.")],
    val_data_roots: Annotated[Optional[Path], typer.Option("--val-data-roots", help="Validation dataset folder (default: the train folder's val subset, or an 80/20 split).")] = None,
    output: Output = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", help="Override a hyper-parameter: KEY=VALUE, e.g. learning_parameters.num_iters=2 or data.input_size=[320,320]. Repeatable.")] = None,
    load_weights: Annotated[Optional[Path], typer.Option("--load-weights", help="Start from an otxlite weights.pth or an MMDetection checkpoint.")] = None,
    resume_from: Annotated[Optional[Path], typer.Option("--resume-from", help="Continue an interrupted run from its models/last.pth.")] = None,
    no_pretrained: Annotated[bool, typer.Option("--no-pretrained", help="Do not download ImageNet backbone weights.")] = False,
    data_format: DataFormat = None,
    data_root: DataRoot = None,
    skip_bad_images: Annotated[bool, typer.Option("--skip-bad-images", help="Skip unreadable images instead of stopping.")] = False,
    device: Device = "auto",
    verbose: Verbose = False,
) -> None:
    """Train a template on a dataset; writes models/weights.pth, results.csv, plots/ and performance.json.

    Example: otxlite train MaskRCNN-EfficientNetB2B --train-data-roots data/sample -o runs/effnet
    """
    from otxlite.app.train import train as run_training
    from otxlite.cli.render import print_summary

    result = run_training(template, train_data_roots, val_root=val_data_roots, output=output, params=param or [],
                          load_weights=load_weights, resume_from=resume_from, pretrained=not no_pretrained,
                          data_options=DataOptions(data_format, data_root), skip_bad_images=skip_bad_images, device=device)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return
    print_summary("Training finished", result.performance, {
        "weights": result.weights, "label schema": result.weights.parent / "label_schema.json",
        "results": result.run_dir / "results.csv", "plots": result.run_dir / "plots",
        "logs": result.run_dir / "logs", "config": result.run_dir / "config.py",
        "performance": result.run_dir / "performance.json"})


@app.command()
def tune(
    templates: Annotated[list[str], typer.Argument(help="One or more templates (YAML path, id or name) to choose from.")],
    train_data_roots: Annotated[Path, typer.Option("--train-data-roots", help="Training dataset folder.")],
    time_budget: Annotated[float, typer.Option("--time-budget", help="Wall-clock seconds for the whole search; the trial running at the end is stopped and counts as pruned.")],
    val_data_roots: Annotated[Optional[Path], typer.Option("--val-data-roots", help="Validation dataset folder (default: the train folder's val subset, or an 80/20 split).")] = None,
    trials: Annotated[Optional[int], typer.Option("--trials", help="Stop once the study has this many finished or pruned trials (earlier runs and other processes included).")] = None,
    storage: Annotated[Optional[str], typer.Option("--storage", help="Study database URL shared by several processes, e.g. postgresql://user:password@host/db (default: OUT/study.db, SQLite).")] = None,
    study: Annotated[str, typer.Option("--study", help="Study name in the storage; rerun with the same one to continue it.")] = "otxlite-tune",
    output: Output = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", help="Fix a hyper-parameter in every template that has it: KEY=VALUE (no longer searched). Repeatable.")] = None,
    hpo: Annotated[Optional[list[str]], typer.Option("--hpo", help="Search KEY in another range than the template's hpo: section, e.g. 'learning_parameters.learning_rate={low: 0.001, high: 0.02, log: true}' or 'learning_parameters.batch_size={choices: [2, 4]}'. Repeatable.")] = None,
    no_pretrained: Annotated[bool, typer.Option("--no-pretrained", help="Train every trial from random weights.")] = False,
    data_format: DataFormat = None,
    data_root: DataRoot = None,
    device: Device = "auto",
    verbose: Verbose = False,
) -> None:
    """Search templates and hyper-parameters (Optuna: TPE sampling; each template's trials compared at equal seconds of training and the weak ones stopped) within a time budget; the best trial's run folder becomes OUT/best.

    Writes trials.csv, plots/ and performance.json (the winning template and hyper-parameters); rerun the same command to continue a stopped study.

    Example: otxlite tune RTMDet-Ins-tiny MaskRCNN-EfficientNetB2B --train-data-roots data/my_coco --time-budget 3600 -o runs/tune
    """
    from otxlite.app.tune import tune as run_tuning
    from otxlite.cli.render import print_summary

    result = run_tuning(templates, train_data_roots, time_budget=time_budget, val_root=val_data_roots, trials=trials,
                        storage=storage, study_name=study, params=param or [], hpo=hpo or [], output=output,
                        pretrained=not no_pretrained, data_options=DataOptions(data_format, data_root), device=device)
    for note in result.notes:
        console.print(f"Note: {note}")
    if result.best is not None:
        console.print(f"Best: trial {result.best['trial']}, {result.best['template']}, mask mAP "
                      f"{result.best['mask_mAP']:.4f}, {result.best['params']}")
    print_summary("Tuning finished", result.best and result.best["validation"], {
        "best weights": result.out / "best" / "models" / "weights.pth", "trials": result.out / "trials.csv",
        "plots": result.out / "plots", "performance": result.out / "performance.json"})


@app.command("eval")
def evaluate(
    load_weights: Annotated[Path, typer.Option("--load-weights", help="A trained model: weights.pth or openvino.xml.")],
    test_data_roots: Annotated[Path, typer.Option("--test-data-roots", help="Test dataset folder.")],
    output: Output = None,
    data_format: DataFormat = None,
    data_root: DataRoot = None,
    device: Device = "auto",
    verbose: Verbose = False,
) -> None:
    """Measure a model: COCO mask/box mAP, F-measure, per-class mAP (performance.json) and report/report.html.

    The report shows precision-recall and F1 curves, a confusion matrix, mAP by object size, COCO's error breakdown and the images with the most errors.

    Example: otxlite eval --load-weights runs/effnet/models/weights.pth --test-data-roots data/my_coco -o runs/effnet/eval
    """
    from otxlite.app.evaluate import evaluate as run_evaluation
    from otxlite.cli.render import print_summary

    performance, out = run_evaluation(load_weights, test_data_roots, output, DataOptions(data_format, data_root), device)
    print_summary("Evaluation finished", performance, {"performance": out, "report": out.parent / "report" / "report.html"})


@app.command()
def export(
    load_weights: Annotated[Path, typer.Option("--load-weights", help="The weights.pth of a training run (with --package also an IR, e.g. the INT8 one from `otxlite optimize`).")],
    output: Output = None,
    half_precision: Annotated[bool, typer.Option("--half-precision", help="Store weights as FP16 (half the size).")] = False,
    package: Annotated[bool, typer.Option("--package", help="Make the folder a deployment folder: the IR, run_model_api.py (OpenVINO Model API), run_runtime.py (otxlite's runtime, shipped beside it, no PyTorch), requirements.txt and a README.")] = False,
    verbose: Verbose = False,
) -> None:
    """Export a trained model to OpenVINO IR (openvino.xml/.bin + label_schema.json), post-processing included.

    Example: otxlite export --load-weights runs/effnet/models/weights.pth -o runs/effnet/openvino
    Deploy the INT8 model: otxlite export --load-weights runs/effnet/int8/openvino.xml --package -o deploy/
    """
    from otxlite.app.export import export
    from otxlite.cli.render import print_summary

    xml = export(load_weights, output, half_precision, package)
    files = {"model": xml, "weights": xml.with_suffix(".bin")}
    if package:
        files |= {"Model API script": xml.parent / "run_model_api.py", "runtime script": xml.parent / "run_runtime.py",
                  "requirements": xml.parent / "requirements.txt", "read me": xml.parent / "README.md"}
    else:
        files["label schema"] = xml.parent / "label_schema.json"
    print_summary("Export finished", None, files)


@app.command()
def optimize(
    load_weights: Annotated[Path, typer.Option("--load-weights", help="The FP32 openvino.xml from `otxlite export` (or a weights.pth, exported first).")],
    train_data_roots: Annotated[Path, typer.Option("--train-data-roots", help="Images to calibrate on (the training data).")],
    val_data_roots: Annotated[Optional[Path], typer.Option("--val-data-roots", help="Validation data: FP32 vs INT8 comparison and performance.json.")] = None,
    output: Output = None,
    subset_size: Annotated[Optional[int], typer.Option("--subset-size", min=1, help=f"Number of calibration images (default: the template's optimization.subset_size, {INT8_DEFAULTS['subset_size']} unless it sets one).")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help=f"performance (symmetric) or mixed (asymmetric activations) (default: the template's, {INT8_DEFAULTS['preset']} unless it sets one).")] = None,
    max_accuracy_drop: Annotated[Optional[float], typer.Option("--max-accuracy-drop", min=0.0, max=1.0, help=f"With --val-data-roots: the INT8 model's mask mAP (measured as `otxlite eval` does) stays within this absolute drop of the FP32 IR's; layers go back to FP32 until it does (default: the template's, {INT8_DEFAULTS['max_accuracy_drop']} unless it sets one).")] = None,
    accept_accuracy_drop: Annotated[bool, typer.Option("--accept-accuracy-drop", help="Save the INT8 model even if the bound cannot be met (default: save nothing, exit non-zero).")] = False,
    data_format: DataFormat = None,
    data_root: DataRoot = None,
    verbose: Verbose = False,
) -> None:
    """Quantize an exported model to INT8 with NNCF (post-processing stays FP32); writes openvino.xml/.bin.

    Example: otxlite optimize --load-weights runs/effnet/openvino/openvino.xml --train-data-roots data/my_coco -o runs/effnet/int8
    """
    from otxlite.app.optimize import optimize as run_optimization
    from otxlite.cli.render import print_int8_comparison, print_summary

    result = run_optimization(load_weights, train_data_roots, val_data_roots, output, subset_size, preset,
                              max_accuracy_drop, DataOptions(data_format, data_root), accept_accuracy_drop)
    if result.comparison:
        print_int8_comparison(result.comparison)
    print_summary("Optimization finished", None, {"model": result.xml, "weights": result.xml.with_suffix(".bin"),
                                                   "performance": result.xml.parent / "performance.json"})


@app.command()
def predict(
    load_weights: Annotated[Path, typer.Option("--load-weights", help="openvino.xml (or weights.pth, exported first).")],
    input: Annotated[str, typer.Option("--input", "-i", help="An image, a folder of images, a glob like 'photos/**/*.jpg', or @list.txt (one image path a line, relative to the list's folder).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Run folder (default: a new folder under otxlite-runs/). Run the same command with the same -o again to continue a stopped run.")] = None,
    confidence_threshold: Annotated[Optional[float], typer.Option("--confidence-threshold", min=0.0, max=1.0, help="Keep detections scoring at least this (default: the model's own).")] = None,
    max_polygon_points: Annotated[Optional[int], typer.Option("--max-polygon-points", min=3, help="Simplify each polygon to at most N points.")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also write saliency maps per class into saliency/ (as `otxlite explain`).")] = False,
    overlays: Annotated[Optional[bool], typer.Option("--overlays/--no-overlays", help="Draw each image's masks into overlays/ (default: for runs up to 300 images).")] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="I/N: score only part I of N (0-based) of the images, chosen by a hash of each name (stable when files are added); one command per part, each with its own -o.")] = None,
    max_errors: Annotated[Optional[int], typer.Option("--max-errors", help="Stop once more than N images could not be read (default: no limit; each is listed in errors.jsonl).")] = None,
    engine: Annotated[str, typer.Option("--engine", help="process (this process, OpenVINO's async requests) or ray (Ray Data actors, one model each; pip install 'otxlite[ray]').")] = "process",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="With --engine ray: the Ray cluster to run on, e.g. ray://head:10001 or auto (default: a local Ray started for this run).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="With --engine ray: how many actors, one compiled model each (default: one per machine).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="OpenVINO CPU threads per process or Ray worker (default: every core; with Ray, a machine's cores over its workers).")] = None,
    verbose: Verbose = False,
) -> None:
    """Predict instance masks with OpenVINO; streams predictions.jsonl (AzureML schema, one image a line), also
    predictions.json (up to 10,000 images), errors.jsonl and overlays/*.png. A stopped run continues when rerun.

    Example: otxlite predict --load-weights runs/effnet/openvino/openvino.xml -i photos/ -o runs/effnet/pred
    """
    from otxlite.app.predict import predict as run_prediction
    from otxlite.cli.render import print_summary

    result = run_prediction(load_weights, input, output, confidence_threshold, max_polygon_points, explain,
                            overlays=overlays, shard=shard, max_errors=max_errors, engine=engine, workers=workers,
                            threads=threads, ray_address=ray_address)
    resumed = f" ({result.resumed} already in the output from an earlier run)" if result.resumed else ""
    console.print(f"{result.images} images, {result.detections} detections{resumed}, {result.unreadable} images "
                  f"could not be read, {len(result.skipped)} other files skipped")
    outputs = {"predictions": result.predictions} | ({"as one array": result.predictions_json}
                                                     if result.predictions_json else {})
    if result.overlays is not None:
        outputs["overlays"] = result.overlays
    if result.errors is not None:
        outputs["unreadable images"] = result.errors
    if explain:
        outputs["saliency maps"] = result.predictions.parent / "saliency"
    print_summary("Prediction finished", None, outputs)


@app.command()
def benchmark(
    load_weights: Annotated[Path, typer.Option("--load-weights", help="weights.pth (PyTorch, IR FP32 and FP16 are measured) or openvino.xml (FP32: FP32 and FP16; INT8/FP16: itself).")],
    test_data_roots: Annotated[Path, typer.Option("--test-data-roots", help="Labelled images to measure accuracy and speed on.")],
    train_data_roots: Annotated[Optional[Path], typer.Option("--train-data-roots", help="Also make and measure INT8, calibrated on these images.")] = None,
    output: Output = None,
    data_format: DataFormat = None,
    data_root: DataRoot = None,
    verbose: Verbose = False,
) -> None:
    """Accuracy, latency (p50/p90) and throughput of PyTorch, OpenVINO FP32, FP16 and INT8 on your data; benchmark.json.

    Example: otxlite benchmark --load-weights runs/effnet/models/weights.pth --test-data-roots data/my_coco --train-data-roots data/my_coco -o runs/effnet/bench
    """
    from otxlite.app.benchmark import benchmark as run_benchmark
    from otxlite.cli.render import benchmark_table, print_summary

    report, out = run_benchmark(load_weights, test_data_roots, output, train_data_roots, DataOptions(data_format, data_root))
    console.print(benchmark_table(report))
    print_summary("Benchmark finished", None, {"benchmark": out})


@app.command()
def explain(
    load_weights: Annotated[Path, typer.Option("--load-weights", help="openvino.xml (OpenVINO only) or weights.pth (PyTorch).")],
    input: Annotated[str, typer.Option("--input", "-i", help="An image, a folder of images, or a glob like 'photos/*.jpg'.")],
    output: Output = None,
    verbose: Verbose = False,
) -> None:
    """Saliency maps per image and class (score x mask, max over detections, as OTX); saliency/*.npy and *.png.

    Example: otxlite explain --load-weights runs/effnet/openvino/openvino.xml -i photos/ -o runs/effnet/explain
    """
    from otxlite.app.explain import explain as run_explain
    from otxlite.cli.render import print_summary

    result = run_explain(load_weights, input, output)
    console.print(f"{result.images} images explained, {len(result.skipped)} files skipped")
    print_summary("Explanation finished", None, {"saliency maps": result.folder})


@app.command()
def serve(
    load_weights: Annotated[Path, typer.Option("--load-weights", help="An exported openvino.xml (FP32 or INT8).")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 exposes the service to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free port).")] = 8000,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="OTXLITE_API_KEY", help="Require 'Authorization: Bearer KEY' on /score and /metadata (or set OTXLITE_API_KEY, which stays out of the process list).")] = None,
    max_image_mb: Annotated[float, typer.Option("--max-image-mb", min=0.001, help="Largest encoded image, in MiB.")] = SERVE_DEFAULTS.max_image_mb,
    max_images: Annotated[int, typer.Option("--max-images", min=1, help="Most images per request.")] = SERVE_DEFAULTS.max_images,
    max_megapixels: Annotated[float, typer.Option("--max-megapixels", min=0.001, help="Largest image by width x height, read from its header before decoding.")] = SERVE_DEFAULTS.max_megapixels,
    allow_urls: Annotated[bool, typer.Option("--allow-urls", help="Accept http(s) image URLs (fetched with a timeout and size cap, never from private addresses).")] = False,
    verbose: Verbose = False,
) -> None:
    """Serve an IR over HTTP: POST /score (AzureML schema), GET /health, GET /metadata, OpenAPI docs at /docs.

    Example: otxlite serve --load-weights runs/effnet/openvino/openvino.xml --port 8000
    """
    from otxlite.app.serve import serve as run_server

    run_server(load_weights, host, port, ServeSettings(api_key=api_key, max_image_mb=max_image_mb, max_images=max_images,
                                                       max_megapixels=max_megapixels, allow_urls=allow_urls))


def main() -> None:
    """Console entry point: user errors become one paragraph and a non-zero exit code."""
    verbose = "--verbose" in sys.argv
    set_verbose(verbose)
    try:
        app(prog_name="otxlite")
    except OtxliteError as err:
        if verbose:
            traceback.print_exc()
        err_console.print(f"[bold red]Error:[/] {err}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        sys.exit(130)
    except Exception as err:  # the machine's limits are the user's to fix; anything else is otxlite's fault
        if verbose:
            traceback.print_exc()
        problem = resource_problem(err)
        if problem is not None:
            err_console.print(f"[bold red]Error:[/] {problem}", soft_wrap=True)
            sys.exit(2)
        err_console.print(f"[bold red]Error:[/] {type(err).__name__}: {err}. This is a bug in otxlite, not a problem "
                          "with your input: please report it to otxlite's maintainers with the command you ran and "
                          "its output with --verbose (which adds the traceback).",
                          soft_wrap=True)
        sys.exit(3)
