r"""What Mask R-CNN's test-time proposal cap costs and saves: mask mAP and IR latency per cap.

For one trained Mask R-CNN ``weights.pth`` and a validation set, each cap (the RPN's ``max_per_img``
at test time; MMDetection's default 1000, OTX's 500) is written into a copy of the weights' config,
evaluated with ``otxlite eval``'s own code (PyTorch), exported and evaluated again as an FP32 IR, which is
also timed on the validation images (LATENCY hint, f32, the IR's own input size, median of ``--repeats``).

    .venv/bin/python tests/real_photos.py ihc /tmp/ihc
    .venv/bin/otxlite train MaskRCNN-EfficientNetB2B --train-data-roots /tmp/ihc --no-pretrained \
        --param learning_parameters.num_iters=40 --param learning_parameters.batch_size=2 \
        --param data.input_size=[256,256] -o /tmp/ihc_run
    mkdir -p /tmp/ihc_val/images /tmp/ihc_val/annotations && cp -r /tmp/ihc/images/val /tmp/ihc_val/images/ \
        && cp /tmp/ihc/annotations/instances_val.json /tmp/ihc_val/annotations/
    .venv/bin/python scripts/benchmark_proposals.py /tmp/ihc_run/models/weights.pth /tmp/ihc_val

Prints a Markdown table and writes it as JSON beside ``--output``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from otxlite.core.fileio import write_json_atomic  # noqa: E402
from otxlite.core.measure import cpu_model_and_flags, spread, time_calls  # noqa: E402


def with_cap(weights: Path, cap: int, out: Path) -> Path:
    """A copy of ``weights`` whose RPN keeps ``cap`` proposals per image at test time."""
    from otxlite.core.artifacts import load_weights, save_weights

    loaded = load_weights(weights)
    config = copy.deepcopy(loaded.config)
    config["model"]["test_cfg"]["rpn"]["max_per_img"] = cap
    return save_weights(out, loaded.state_dict, config, loaded.record, loaded.metrics)


def ir_latency(xml: Path, images: list[Path], repeats: int) -> dict[str, float]:
    """Median latency of the IR's infer request over the validation images (LATENCY hint, f32)."""
    import cv2
    import openvino as ov

    from otxlite.runtime.predictor import Predictor

    predictor = Predictor(xml, hint="LATENCY")
    tensors = [predictor.preprocess(cv2.imread(str(path))) for path in images]
    request = predictor.compiled.create_infer_request()
    times: list[float] = []
    for tensor in tensors:
        request.set_input_tensor(ov.Tensor(tensor))
        times += time_calls(request.infer, 2, repeats)
    return spread(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path, help="a trained Mask R-CNN weights.pth")
    parser.add_argument("val_root", type=Path, help="the validation dataset (any format otxlite reads)")
    parser.add_argument("--caps", type=int, nargs="+", default=[1000, 500, 300, 100])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "proposals.json")
    args = parser.parse_args()

    from otxlite.app.evaluate import evaluate
    from otxlite.export.pipeline import export_openvino

    images = sorted(p for p in args.val_root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    cpu, flags = cpu_model_and_flags()
    results = dict(weights=str(args.weights), val_root=str(args.val_root), cpu=cpu,
                   flags=[name for name, has in flags.items() if has], rows=[])
    with tempfile.TemporaryDirectory() as scratch:
        for cap in args.caps:
            work = Path(scratch) / str(cap)
            weights = with_cap(args.weights, cap, work / "weights.pth")
            report, _ = evaluate(weights, args.val_root, work / "eval")
            xml = export_openvino(weights, work / "ir")
            ir_report, _ = evaluate(xml, args.val_root, work / "ir_eval")
            results["rows"].append(dict(cap=cap, mask_mAP=report["mask_mAP"], bbox_mAP=report["bbox_mAP"],
                                        ir_mask_mAP=ir_report["mask_mAP"],
                                        latency_ms=ir_latency(xml, images, args.repeats)))
            write_json_atomic(args.output, results)
    print(f"{args.weights} on {args.val_root} ({len(images)} images); {cpu}, {' '.join(results['flags'])}\n")
    print("| RPN proposals at test | mask mAP | bbox mAP | FP32 IR mask mAP | FP32 IR latency ms, median (p10-p90) |")
    print("|---|---|---|---|---|")
    for row in results["rows"]:
        latency = row["latency_ms"]
        print(f"| {row['cap']} | {row['mask_mAP']:.4f} | {row['bbox_mAP']:.4f} | {row['ir_mask_mAP']:.4f} "
              f"| {latency['median']:.1f} ({latency['p10']:.1f}-{latency['p90']:.1f}) |")
    print(f"\nDetails: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
