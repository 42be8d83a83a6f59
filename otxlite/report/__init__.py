"""What a model gets right and wrong, drawn: the evaluation report, training curves and instance overlays
(matplotlib, numpy and OpenCV; no torch)."""
