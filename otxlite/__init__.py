"""otxlite: instance segmentation with MMDetection, OpenVINO and NNCF."""

__version__ = "0.1.0"
