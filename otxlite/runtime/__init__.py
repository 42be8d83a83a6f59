"""OpenVINO-only inference: an exported IR -> instance masks, polygons, AzureML JSON, overlays.

Imports only openvino, numpy, OpenCV and the standard library (never torch, mmcv or mmdet), so an
exported model runs where only the runtime is installed.
"""
