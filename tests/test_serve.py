"""``otxlite serve``: the HTTP contract, its guards and its behaviour under load and on SIGTERM.

Protocol tests run on a synthetic IR (a few OpenVINO ops with otxlite's metadata, compiled in a fraction of a second)
through FastAPI's TestClient; the schema round trip, the load test and SIGTERM use the session's trained sample model
(``exported_ir``), the last two in a real ``otxlite serve`` process on a loopback port.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest
from conftest import slow_fixture

from otxlite.serve.app import create_app
from otxlite.serve.settings import ServeSettings
from otxlite.serve.guard import api_key_matches
from load_client import ServerProcess, run_load, score_body

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

SYNTHETIC_SIZE = 64


def make_synthetic_ir(folder: Path, tiling=None) -> Path:
    """An IR with otxlite's outputs and metadata: two ROI-mask detections; the first one's score is the image's
    mean brightness / 255 (so the output depends on the input), the second one's is 0.2."""
    import openvino as ov
    import openvino.opset13 as ops

    from otxlite.core.artifacts import ModelMetadata, write_metadata

    image = ops.parameter([1, 3, SYNTHETIC_SIZE, SYNTHETIC_SIZE], np.float32, name="image")
    brightness = ops.divide(ops.reduce_mean(image, np.array([1, 2, 3], np.int64), keep_dims=False), np.float32(255))
    scores = ops.concat([ops.reshape(ops.clamp(brightness, 0.0, 1.0), [1, 1, 1], False),
                         ops.constant(np.full((1, 1, 1), 0.2, np.float32))], 1)
    boxes = ops.concat([ops.constant(np.array([[[8, 8, 40, 40], [30, 30, 60, 60]]], np.float32)), scores], 2)
    labels = ops.constant(np.array([[0, 1]], np.int64))
    yy, xx = np.mgrid[:28, :28]
    disk = (((yy - 13.5) ** 2 + (xx - 13.5) ** 2) < 144).astype(np.float32)
    masks = ops.multiply(ops.constant(np.stack([disk, disk])[None]), np.float32(1))
    for node, name in ((boxes, "boxes"), (labels, "labels"), (masks, "masks")):
        node.output(0).get_tensor().set_names({name})
    model = ov.Model([boxes.output(0), labels.output(0), masks.output(0)], [image], "synthetic")
    write_metadata(model, ModelMetadata(labels=["cat", "dog"], input_size=(SYNTHETIC_SIZE, SYNTHETIC_SIZE),
                                        confidence_threshold=0.35, family="mask_rcnn", template_id="synthetic",
                                        tiling=tiling))
    folder.mkdir(parents=True, exist_ok=True)
    xml = folder / "openvino.xml"
    ov.save_model(model, xml)
    return xml


def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    return cv2.imencode(ext, image)[1].tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_header(width: int, height: int) -> bytes:
    """A small PNG file whose header claims ``width`` x ``height`` pixels; its pixel data is a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


BRIGHT = encode(np.full((100, 200, 3), 200, np.uint8))  # first detection scores 0.78: above the 0.35 default
DARK = encode(np.zeros((50, 50, 3), np.uint8))  # first detection scores 0: only the 0.2 one, under the default


def body(*items: str, index: list | None = None) -> dict:
    data = {"columns": ["image"], "data": list(items)}
    if index is not None:
        data["index"] = index
    return {"input_data": data}


@pytest.fixture(scope="module")
def synthetic_ir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_ir(tmp_path_factory.mktemp("synthetic_ir"))


@contextmanager
def serving(model: Path, settings: ServeSettings = ServeSettings()):
    """A TestClient of the app for ``model``, once ``/health`` answers 200."""
    from fastapi.testclient import TestClient

    with TestClient(create_app(model, settings)) as client:
        deadline = time.monotonic() + 60
        while (health := client.get("/health")).status_code != 200:
            assert health.json()["status"] == "loading" and time.monotonic() < deadline, health.json()
            time.sleep(0.05)
        yield client


@pytest.fixture(scope="module")
def client(synthetic_ir: Path):
    with serving(synthetic_ir) as c:
        yield c


def assert_serves(client, **headers) -> None:
    """The server still answers a good request normally."""
    response = client.post("/score", json=body(b64(BRIGHT)), headers=headers)
    assert response.status_code == 200, response.text
    assert [b["label"] for b in response.json()[0]["boxes"]] == ["cat"]


# --- the contract -------------------------------------------------------------------------------------------------


def test_score_answers_one_entry_per_image_in_order(client):
    response = client.post("/score", json=body(b64(BRIGHT), b64(DARK), b64(BRIGHT), index=["a.png", 7, "c"]))
    assert response.status_code == 200, response.text
    entries = response.json()
    assert [e["filename"] for e in entries] == ["a.png", "7", "c"]
    assert [len(e["boxes"]) for e in entries] == [1, 0, 1]
    instance = entries[0]["boxes"][0]
    assert instance["label"] == "cat" and instance["score"] == pytest.approx(200 / 255, abs=1e-3)
    # box (8, 8, 40, 40) of the 64x64 input, normalized: the same fractions of the 200x100 image
    assert instance["box"] == pytest.approx({"topX": 0.125, "topY": 0.125, "bottomX": 0.625, "bottomY": 0.625})
    assert len(instance["polygon"]) == 1 and all(0 <= v <= 1 for v in instance["polygon"][0])
    # no index: the filename is the position
    assert [e["filename"] for e in client.post("/score", json=body(b64(DARK), b64(DARK))).json()] == ["0", "1"]


def test_score_query_parameters(client):
    low = client.post("/score", json=body(b64(DARK)), params={"confidence_threshold": 0.1}).json()
    assert [b["label"] for b in low[0]["boxes"]] == ["dog"]
    coarse = client.post("/score", json=body(b64(BRIGHT)), params={"max_polygon_points": 4}).json()
    fine = client.post("/score", json=body(b64(BRIGHT))).json()
    assert len(coarse[0]["boxes"][0]["polygon"][0]) <= 8 < len(fine[0]["boxes"][0]["polygon"][0])


def decode_png(data: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_UNCHANGED)


def test_score_explain_adds_one_saliency_map_per_class_from_every_detection(client):
    plain = client.post("/score", json=body(b64(BRIGHT))).json()[0]
    assert "saliency_maps" not in plain
    response = client.post("/score", json=body(b64(BRIGHT)), params={"explain": "true"})
    assert response.status_code == 200, response.text
    entry = response.json()[0]
    assert entry["boxes"] == plain["boxes"]  # the threshold still applies to the instances
    maps = {m["label"]: decode_png(m["png"]) for m in entry["saliency_maps"]}
    assert list(maps) == ["cat", "dog"]
    assert all(m.shape == (100, 200) and m.dtype == np.uint8 for m in maps.values())  # the image's own size
    # cat: score 200/255 inside its box (x 25-125, y 12.5-62.5 of 200x100); dog: the 0.2 detection under the
    # threshold still counts, as in otxlite explain
    assert maps["cat"].max() == 200 and maps["dog"].max() == 51
    ys, xs = np.nonzero(maps["cat"])
    assert xs.min() >= 25 and xs.max() < 126 and ys.min() >= 12 and ys.max() < 64
    dark = client.post("/score", json=body(b64(DARK)), params={"explain": "true"}).json()[0]
    assert dark["boxes"] == [] and decode_png(dark["saliency_maps"][0]["png"]).max() == 0


def test_score_accepts_jpeg_data_uris_and_wrapped_base64(client):
    jpeg = encode(np.full((64, 64, 3), 180, np.uint8), ".jpg")
    wrapped = "\n".join(b64(jpeg)[i:i + 76] for i in range(0, len(b64(jpeg)), 76))
    response = client.post("/score", json=body("data:image/jpeg;base64," + b64(jpeg), wrapped))
    assert response.status_code == 200, response.text
    assert [len(e["boxes"]) for e in response.json()] == [1, 1]


def test_health_and_metadata(client):
    health = client.get("/health").json()
    assert health["status"] == "ready" and health["detail"] is None and len(health["model_sha256"]) == 64
    meta = client.get("/metadata").json()
    assert meta["labels"] == ["cat", "dog"]
    assert meta["input_size"] == {"width": SYNTHETIC_SIZE, "height": SYNTHETIC_SIZE}
    assert meta["precision"] == "FP32" and meta["otxlite_version"] == "0.1.0" and meta["confidence_threshold"] == 0.35
    assert meta["limits"]["max_images"] == 16 and meta["limits"]["allow_urls"] is False


def test_health_is_503_until_the_model_is_compiled(synthetic_ir, monkeypatch):
    from fastapi.testclient import TestClient

    import otxlite.serve.service as service

    release = threading.Event()
    real = service.Predictor

    def slow_predictor(*args, **kwargs):
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "Predictor", slow_predictor)
    with TestClient(create_app(synthetic_ir)) as c:
        assert (c.get("/health").status_code, c.get("/health").json()["status"]) == (503, "loading")
        response = c.post("/score", json=body(b64(BRIGHT)))
        assert response.status_code == 503 and "not ready" in response.json()["error"]
        assert c.get("/metadata").status_code == 503
        release.set()
        deadline = time.monotonic() + 30
        while c.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert_serves(c)


def test_a_broken_model_reports_failed(tmp_path):
    from fastapi.testclient import TestClient

    xml = tmp_path / "openvino.xml"
    xml.write_text("<net>not an IR</net>")
    xml.with_suffix(".bin").write_bytes(b"")
    with TestClient(create_app(xml)) as c:
        deadline = time.monotonic() + 30
        while c.get("/health").json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        response = c.get("/health")
        assert response.status_code == 503 and response.json()["status"] == "failed"
        assert "OpenVINO cannot read this IR" in response.json()["detail"]


# --- bad input: a 4xx that says what was wrong, and the next request is served --------------------------------------

BAD_REQUESTS = {
    "malformed JSON": (b'{"input_data": {"data": [', 400, "not valid JSON"),
    "not an object": (b'"hello"', 422, "valid dictionary"),
    "missing input_data": (b"{}", 422, "body.input_data: Field required"),
    "missing data": (json.dumps({"input_data": {"columns": ["image"]}}).encode(), 422,
                     "input_data.data: Field required"),
    "empty data": (json.dumps(body()).encode(), 422, "at least 1 item"),
    "wrong column": (json.dumps({"input_data": {"columns": ["text"], "data": ["x"]}}).encode(), 422, "columns"),
    "data not strings": (json.dumps({"input_data": {"data": [3]}}).encode(), 422, "valid string"),
    "bad base64": (json.dumps(body("not base64 at all!")).encode(), 422, "data[0]: not valid base64"),
    "plain-text data URI": (json.dumps(body("data:text/plain,hello")).encode(), 422, "must be base64-encoded"),
    "not an image": (json.dumps(body(b64(b"%PDF-1.4 this is not an image"))).encode(), 422,
                     "are not an image in a known format"),
    "second item bad": (json.dumps(body(b64(BRIGHT), b64(b"GIF89a?"))).encode(), 422, "data[1]"),
    "1x1 image": (json.dumps(body(b64(encode(np.zeros((1, 1, 3), np.uint8))))).encode(), 422,
                  "1x1 pixels; images need at least 16 pixels"),
    "20000x20000 header": (json.dumps(body(b64(png_header(20000, 20000)))).encode(), 413, "megapixels"),
    "8000x6000 header": (json.dumps(body(b64(png_header(8000, 6000)))).encode(), 413,
                         "8000x6000 pixels, more than this server's limit of 40 megapixels"),
    "header without pixels": (json.dumps(body(b64(png_header(64, 64)))).encode(), 422, "pixels cannot be decoded"),
    "index length mismatch": (json.dumps(body(b64(BRIGHT), index=[0, 1])).encode(), 422, "index has 2 entries"),
    "too many images": (json.dumps(body(*[b64(DARK)] * 17)).encode(), 413, "at most 16 per request"),
    "URL without --allow-urls": (json.dumps(body("https://example.com/a.jpg")).encode(), 403, "--allow-urls"),
    "file URL": (json.dumps(body("file:///etc/passwd")).encode(), 403, "does not fetch URLs"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_a_4xx_that_says_what_was_wrong(client, case):
    content, status, fragment = BAD_REQUESTS[case]
    response = client.post("/score", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert fragment in response.json()["error"], response.json()
    assert_serves(client)


@pytest.mark.parametrize("params, fragment", [({"confidence_threshold": 1.5}, "query.confidence_threshold"),
                                              ({"max_polygon_points": 2}, "query.max_polygon_points"),
                                              ({"confidence_threshold": "high"}, "valid number")])
def test_bad_query_parameters_get_422(client, params, fragment):
    response = client.post("/score", json=body(b64(BRIGHT)), params=params)
    assert response.status_code == 422 and fragment in response.json()["error"], response.text


def test_errors_are_json_everywhere(client):
    assert client.get("/nowhere").json() == {"error": "Not Found"}
    assert client.get("/score").status_code == 405 and "error" in client.get("/score").json()


# --- size limits: 413 before anything is decoded ------------------------------------------------------------------

SMALL = ServeSettings(max_image_mb=0.02, max_images=2)  # body limit: 2 x 27 KiB base64 + 1 MiB of JSON room


@pytest.fixture(scope="module")
def small_client(synthetic_ir: Path):
    with serving(synthetic_ir, SMALL) as c:
        yield c


def test_body_over_the_limit_is_refused_by_content_length(small_client):
    junk = b"x" * (SMALL.max_body_bytes + 1)  # not JSON either: 413 proves the body was never parsed
    response = small_client.post("/score", content=junk, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "over this server's limit" in response.json()["error"]
    assert_serves(small_client)


def test_streamed_body_over_the_limit_is_refused_while_counting(small_client):
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for _ in range(SMALL.max_body_bytes // 65536 + 2):
            yield b"x" * 65536

    response = small_client.post("/score", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "more than" in response.json()["error"]
    assert_serves(small_client)


def test_image_over_max_image_mb_is_refused(small_client):
    noisy = encode(np.random.default_rng(0).integers(0, 255, (120, 120, 3), dtype=np.uint8))
    assert len(noisy) > SMALL.max_image_bytes
    response = small_client.post("/score", json=body(b64(noisy)))
    assert response.status_code == 413 and "--max-image-mb" in response.json()["error"]
    response = small_client.post("/score", json=body(*[b64(DARK)] * 3))
    assert response.status_code == 413 and "--max-images" in response.json()["error"]


# --- API key ------------------------------------------------------------------------------------------------------


def test_api_key_comparison():
    assert api_key_matches("Bearer s3cret", "s3cret") and api_key_matches("bearer s3cret", "s3cret")
    for header in (None, "", "Bearer", "Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "s3cret"):
        assert not api_key_matches(header, "s3cret"), header


def test_api_key_is_required_on_score_and_metadata(synthetic_ir):
    with serving(synthetic_ir, ServeSettings(api_key="s3cret")) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            response = c.post("/score", json=body(b64(BRIGHT)), headers=headers)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
            assert "API key" in response.json()["error"]
            assert c.get("/metadata", headers=headers).status_code == 401
        # 401 comes before the body is read: a huge declared body without a key is not even size-checked
        response = c.post("/score", content=b"{}", headers={"content-length": str(10**12)})
        assert response.status_code == 401
        assert c.get("/health").status_code == 200  # probes need no key
        assert c.get("/metadata", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert_serves(c, Authorization="Bearer s3cret")
        assert "HTTPBearer" in c.get("/openapi.json").json()["components"]["securitySchemes"]


# --- image URLs ---------------------------------------------------------------------------------------------------


def test_public_address_rule():
    from otxlite.serve.fetch import is_public_address

    for address in ("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
                    "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1"):
        assert not is_public_address(address), address
    for address in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"):
        assert is_public_address(address), address


@pytest.fixture(scope="module")
def image_site() -> Iterator[str]:
    """A loopback web server: /image.png, /big.png (over 20 KiB), /slow.png (answers after 3 s), /redirect-*."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            port = self.server.server_address[1]
            routes = {"/image.png": BRIGHT, "/big.png": b"\x89PNG" + b"0" * 30_000, "/slow.png": BRIGHT}
            redirects = {"/redirect-ok": "/image.png", "/redirect-private": f"http://127.0.0.2:{port}/image.png"}
            if self.path in redirects:
                self.send_response(302)
                self.send_header("Location", redirects[self.path])
                self.end_headers()
                return
            if self.path not in routes:
                self.send_error(404)
                return
            if self.path == "/slow.png":
                time.sleep(3)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                self.wfile.write(routes[self.path])
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def url_client(synthetic_ir: Path):
    with serving(synthetic_ir, ServeSettings(allow_urls=True, max_image_mb=0.02, url_timeout_s=1.0)) as c:
        yield c


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/a.png", "http://localhost:9/a.png", "http://[::1]:9/a.png",
                                 "http://169.254.169.254/latest/meta-data", "http://10.0.0.1/a.png",
                                 "http://[::ffff:127.0.0.1]:9/a.png", "http://0.0.0.0:9/a.png"])
def test_urls_to_private_addresses_are_refused(url_client, url):
    response = url_client.post("/score", json=body(url))
    assert response.status_code == 403, response.text
    assert "not a public address" in response.json()["error"]


def test_url_fetching_on_loopback_when_it_counts_as_public(url_client, image_site, monkeypatch):
    """The fetch itself (pinned address, size cap, timeout, redirects re-checked), with 127.0.0.1 let through."""
    import otxlite.serve.fetch as fetch

    monkeypatch.setattr(fetch, "is_public_address", lambda address: address == "127.0.0.1")
    ok = url_client.post("/score", json=body(f"{image_site}/image.png", f"{image_site}/redirect-ok"))
    assert ok.status_code == 200, ok.text
    assert [len(e["boxes"]) for e in ok.json()] == [1, 1]
    expected = {"/big.png": (413, "larger than this server's limit"), "/slow.png": (422, "longer than 1 s"),
                "/missing.png": (422, "HTTP 404"),
                "/redirect-private": (403, "127.0.0.2, which is not a public address")}
    for path, (status, fragment) in expected.items():
        response = url_client.post("/score", json=body(f"{image_site}{path}"))
        assert response.status_code == status, (path, response.text)
        assert fragment in response.json()["error"], (path, response.text)
    assert url_client.post("/score", json=body("ftp://example.com/a.png")).status_code == 422


# --- the OpenAPI document, fuzzed --------------------------------------------------------------------------------


def test_openapi_document_holds_under_schemathesis(synthetic_ir):
    """Generated requests (valid and invalid per the document) never get a 5xx, and every answer matches the
    document: its status code, content type and body schema."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                                   status_code_conformance)

    app = create_app(synthetic_ir)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app (its lifespan) in-process
    deadline = time.monotonic() + 60
    while app.state.service.status != "ready":
        assert time.monotonic() < deadline and app.state.service.status != "failed"
        time.sleep(0.05)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    statuses: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        modes = list(GenerationMode) if operation.label == "POST /score" else [GenerationMode.POSITIVE]
        for mode in modes:
            @given(case=operation.as_strategy(mode))
            @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def fuzz(case) -> None:
                response = case.call()
                statuses.setdefault(operation.label, set()).add(response.status_code)
                case.validate_response(response, checks=checks)

            fuzz()
    print("statuses seen:", statuses)
    assert statuses["GET /health"] == {200} and statuses["GET /metadata"] == {200}
    assert {400, 422} <= statuses["POST /score"]


def test_serve_does_not_import_the_training_stack():
    code = ("import sys, otxlite.serve, otxlite.serve.app; "
            "heavy = sorted(m for m in ('torch', 'mmdet', 'mmcv', 'mmengine', 'datumaro', 'nncf') "
            "if m in sys.modules); "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the command line ---------------------------------------------------------------------------------------------


def test_cli_refuses_a_missing_model_and_a_taken_port(tmp_path, synthetic_ir):
    import socket

    def serve(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "otxlite.cli", "serve", *args], capture_output=True, text=True,
                              timeout=120, env=dict(os.environ, COLUMNS="200"))

    missing = serve("--load-weights", str(tmp_path / "nothing.xml"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr, missing.stderr
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = serve("--load-weights", str(synthetic_ir), "--port", str(taken.getsockname()[1]))
    assert busy.returncode == 2 and "cannot listen there" in " ".join(busy.stderr.split()), busy.stderr
    assert "Traceback" not in missing.stderr + busy.stderr


def test_cli_stops_with_an_error_when_the_model_cannot_be_loaded(tmp_path):
    xml = tmp_path / "openvino.xml"
    xml.write_text("<net>not an IR</net>")
    xml.with_suffix(".bin").write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "otxlite.cli", "serve", "--load-weights", str(xml), "--port", "0"],
                            capture_output=True, text=True, timeout=120, env=dict(os.environ, COLUMNS="200"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "could not be loaded" in " ".join(result.stderr.split())


# --- the trained sample model -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_images(sample_dataset: Path) -> list[Path]:
    images = sorted(p for p in sample_dataset.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    assert images, sample_dataset
    return images


@pytest.mark.slow
def test_round_trip_on_the_trained_model_matches_predict(exported_ir, sample_images):
    """``/score`` answers exactly what the predictor + AzureML schema give for the same images (otxlite predict)."""
    from pydantic import TypeAdapter

    from otxlite.core.images import read_image
    from otxlite.runtime.predictor import Predictor
    from otxlite.runtime.saliency import class_saliency
    from otxlite.runtime.schema import to_azureml
    from otxlite.serve.schemas import ImagePrediction

    images = sample_images[:4]
    predictor = Predictor(exported_ir, hint="THROUGHPUT")  # as the server compiles it
    labels = predictor.metadata.labels
    threshold = 0.05  # low enough that the briefly trained model has detections to compare
    expected = []
    for path in images:
        image = read_image(path)
        height, width = image.shape[:2]
        expected.append(to_azureml(path.name, predictor.predict(image, threshold), labels, width, height, 12))
    with serving(exported_ir) as c:
        meta = c.get("/metadata").json()
        assert meta["labels"] == labels and meta["precision"] == "FP32"
        response = c.post("/score", json=body(*(b64(p.read_bytes()) for p in images), index=[p.name for p in images]),
                          params={"confidence_threshold": threshold, "max_polygon_points": 12})
        assert response.status_code == 200, response.text
        entries = TypeAdapter(list[ImagePrediction]).validate_python(response.json())
        # saliency of an image where the briefly trained model detects something (at any score)
        found = [p for p in images if len(predictor.predict(read_image(p), None).scores)]
        assert found, "the sample model should detect something in one of the images"
        explained = c.post("/score", json=body(b64(found[0].read_bytes())), params={"explain": "true"}).json()[0]
    assert sum(len(e.boxes) for e in entries) > 0, "the sample model should find something at this threshold"
    assert response.json() == expected
    # the served saliency maps are otxlite explain's: every detection of the predictor, score x mask per class
    first = read_image(found[0])
    every = predictor.predict(first, None)
    maps = class_saliency(every.masks, every.scores, every.labels, len(labels), first.shape[:2])
    assert [m["label"] for m in explained["saliency_maps"]] == labels and maps.max() > 0
    assert np.array_equal(np.stack([decode_png(m["png"]) for m in explained["saliency_maps"]]), maps)
    for entry in entries:
        for instance in entry.boxes:
            assert instance.label in labels and 0 <= instance.score <= 1
            assert all(len(polygon) <= 24 for polygon in instance.polygon)


@slow_fixture(scope="module")
def trained_server(exported_ir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(exported_ir, log=tmp_path_factory.mktemp("serve") / "serve.log") as server:
        yield server


@pytest.mark.slow
def test_load_200_requests_from_8_clients_without_errors(trained_server, sample_images):
    result = run_load(trained_server.url, score_body(sample_images[0].read_bytes()), requests=200, concurrency=8)
    summary = result.summary()
    print(f"load test on {trained_server.url}: {json.dumps(summary)}")
    assert result.errors == [], result.errors[:3]
    assert summary["requests"] == 200 and summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]


@pytest.mark.slow
def test_sigterm_lets_requests_in_flight_finish_then_exits_0(trained_server, sample_images):
    import httpx

    content = score_body(sample_images[0].read_bytes(), images_per_request=16)
    answer: dict = {}

    def send() -> None:
        response = httpx.post(f"{trained_server.url}/score", content=content, timeout=120, trust_env=False,
                              headers={"content-type": "application/json"})
        answer.update(status=response.status_code, entries=len(response.json()))

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(0.5)  # the request is in flight: 16 images take several seconds here
    trained_server.terminate()
    sender.join(120)
    assert answer == {"status": 200, "entries": 16}
    assert trained_server.stop() == 0, trained_server.log_text()
    log = trained_server.log_text()
    assert "Shutting down" in log and "Traceback" not in log, log


def test_serving_goes_on_when_the_model_files_are_deleted_or_replaced(synthetic_ir: Path, tmp_path: Path) -> None:
    """The server holds the compiled model: deleting or replacing its folder changes nothing it answers, and
    /health names the SHA-256 of the files it loaded."""
    import hashlib
    import shutil

    folder = tmp_path / "deployed"
    shutil.copytree(synthetic_ir.parent, folder)
    loaded = hashlib.sha256(synthetic_ir.read_bytes() + synthetic_ir.with_suffix(".bin").read_bytes()).hexdigest()
    with serving(folder / "openvino.xml") as c:
        before = c.post("/score", json=body(b64(BRIGHT))).json()
        shutil.rmtree(folder)
        assert c.post("/score", json=body(b64(BRIGHT))).json() == before
        make_synthetic_ir(folder).with_suffix(".bin").write_bytes(b"another model")
        assert c.post("/score", json=body(b64(BRIGHT))).json() == before
        health = c.get("/health").json()
        assert health["status"] == "ready" and health["model_sha256"] == loaded


def test_predict_and_serve_share_one_threshold_rule():
    from otxlite.runtime.thresholds import Thresholds, detection_thresholds

    assert detection_thresholds(0.4, None, explain=False) == Thresholds(keep=0.4, decode=0.4)  # the model's own
    assert detection_thresholds(0.4, 0.1, explain=False) == Thresholds(keep=0.1, decode=0.1)  # the user's
    assert detection_thresholds(0.4, None, explain=True) == Thresholds(keep=0.4, decode=None)  # saliency: every one
