"""PyTorch ``weights.pth`` -> OpenVINO IR with the post-processing inside and metadata in ``rt_info``."""

from otxlite.export.exporter import export_openvino

__all__ = ["export_openvino"]
