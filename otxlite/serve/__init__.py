"""``otxlite serve``: an HTTP service in front of an exported IR, with AzureML's online-endpoint contract.

``POST /score`` takes ``{"input_data": {"columns": ["image"], "index": [...], "data": ["<base64>", ...]}}`` and answers
one ``predictions.json`` entry per image; ``GET /health`` and ``GET /metadata`` describe the service. Built on FastAPI,
uvicorn and a pool of OpenVINO infer requests. Imports only openvino, numpy, OpenCV, Pillow (image headers), FastAPI,
uvicorn, httpx and the standard library: never torch, mmcv or mmdet.

Modules: ``settings`` (limits), ``schemas`` (request/response models = the OpenAPI document), ``guard`` (API key and
body size, before a body is read), ``inputs`` (base64 / URL -> checked image bytes), ``fetch`` (URL download that
refuses private addresses), ``scoring`` (decode -> async inference -> AzureML entry, per image), ``service`` (model
loading and whole requests), ``app`` (routes, error answers). The verb (uvicorn, SIGTERM) is ``otxlite.app.serve``;
the load generator of the tests and ``scripts/load_test.py`` is ``tests/load_client.py``.
"""
