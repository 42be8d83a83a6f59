#!/usr/bin/env bash
# The main job on the bundled sample dataset: generate it, train MaskRCNN-EfficientNetB2B briefly, evaluate,
# export to OpenVINO, quantize to INT8, predict with the INT8 model. Outputs go to otxlite-runs/demo/.
# Override the training length with EPOCHS=N.
set -euo pipefail
cd "$(dirname "$0")/.."
OTX=.venv/bin/otxlite
RUN=otxlite-runs/demo
EPOCHS=${EPOCHS:-12}

.venv/bin/python scripts/make_sample_dataset.py data/sample
$OTX train MaskRCNN-EfficientNetB2B --train-data-roots data/sample -o "$RUN" \
    --param learning_parameters.num_iters="$EPOCHS" --param data.input_size=[192,192] \
    --param learning_parameters.learning_rate_warmup_iters=10
$OTX eval --load-weights "$RUN/models/weights.pth" --test-data-roots data/sample -o "$RUN/eval"
$OTX export --load-weights "$RUN/models/weights.pth" -o "$RUN/openvino"
$OTX optimize --load-weights "$RUN/openvino/openvino.xml" --train-data-roots data/sample \
    --val-data-roots data/sample -o "$RUN/int8"
$OTX predict --load-weights "$RUN/int8/openvino.xml" -i data/sample/images/val -o "$RUN/predictions"

cat <<SUMMARY

Demo finished. Results:
  trained model       $RUN/models/weights.pth
  training curves     $RUN/plots/ (loss.png, metrics.png, val_predictions.png) and $RUN/results.csv
  evaluation          $RUN/eval/performance.json
  OpenVINO FP32 IR    $RUN/openvino/openvino.xml
  OpenVINO INT8 IR    $RUN/int8/openvino.xml (FP32 vs INT8: $RUN/int8/performance.json)
  predictions         $RUN/predictions/predictions.json and $RUN/predictions/overlays/
SUMMARY
