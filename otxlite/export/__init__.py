"""Making deployable models: mmdeploy ONNX -> OpenVINO IR with the post-processing inside, FP16 weights,
and the accuracy control of NNCF's INT8 quantization. The verbs that drive them are in ``otxlite.app``."""
