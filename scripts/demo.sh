#!/usr/bin/env bash
# The main job on the bundled sample dataset: generate it, train MaskRCNN-EfficientNetB2B briefly, evaluate.
# Outputs go to otxlite-runs/demo/. Override the length with EPOCHS=N.
set -euo pipefail
cd "$(dirname "$0")/.."
OTX=.venv/bin/otxlite
RUN=otxlite-runs/demo
EPOCHS=${EPOCHS:-6}

.venv/bin/python scripts/make_sample_dataset.py data/sample
$OTX train MaskRCNN-EfficientNetB2B --train-data-roots data/sample -o "$RUN" \
    --param learning_parameters.num_iters="$EPOCHS" --param data.input_size=[256,256] \
    --param learning_parameters.learning_rate_warmup_iters=10
$OTX eval --load-weights "$RUN/models/weights.pth" --test-data-roots data/sample -o "$RUN/eval"

echo
echo "Demo finished. Results:"
echo "  trained model      $RUN/models/weights.pth"
echo "  training curves    $RUN/plots/ (loss.png, metrics.png, val_predictions.png), $RUN/results.csv"
echo "  evaluation         $RUN/eval/performance.json"
