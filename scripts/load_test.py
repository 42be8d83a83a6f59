#!/usr/bin/env python
"""Load test ``otxlite serve``: requests/s and p50/p95/p99 latency at a given concurrency.

Against a running server:
    python scripts/load_test.py --url http://127.0.0.1:8000 --image photo.jpg --concurrency 8 --requests 200
Or let it start one for an IR (on a free loopback port) and stop it afterwards, e.g. to compare FP32 and INT8:
    python scripts/load_test.py --load-weights runs/effnet/openvino/openvino.xml --image photo.jpg
    python scripts/load_test.py --load-weights runs/effnet/int8/openvino.xml --image photo.jpg
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the load client lives with the tests
from load_client import ServerProcess, run_load, score_body  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="Base URL of a running otxlite serve.")
    target.add_argument("--load-weights", type=Path, help="An openvino.xml to serve for the test.")
    parser.add_argument("--image", type=Path, required=True, help="Image file sent in every request.")
    parser.add_argument("--concurrency", type=int, default=8, help="Clients sending at once (default 8).")
    parser.add_argument("--requests", type=int, default=200, help="Requests to time (default 200).")
    parser.add_argument("--warmup", type=int, default=8, help="Untimed requests first (default 8).")
    parser.add_argument("--images-per-request", type=int, default=1, help="Images in each request (default 1).")
    parser.add_argument("--api-key", help="Sent as 'Authorization: Bearer KEY' (and given to the server it starts).")
    parser.add_argument("--json", type=Path, help="Also write the summary to this JSON file.")
    args = parser.parse_args()

    body = score_body(args.image.read_bytes(), args.images_per_request)
    if args.url:
        summary = _measure(args.url, body, args)
    else:
        server_args = ["--api-key", args.api_key] if args.api_key else []
        with tempfile.TemporaryDirectory() as tmp, \
                ServerProcess(args.load_weights, *server_args, log=Path(tmp) / "serve.log") as server:
            summary = _measure(server.url, body, args)
        summary["model"] = str(args.load_weights)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if summary["errors"] else 0


def _measure(url: str, body: bytes, args: argparse.Namespace) -> dict:
    if args.warmup:
        run_load(url, body, args.warmup, min(args.concurrency, args.warmup), args.api_key, args.images_per_request)
    result = run_load(url, body, args.requests, args.concurrency, args.api_key, args.images_per_request)
    summary = result.summary()
    for error in result.errors[:5]:
        print(f"error: {error}", file=sys.stderr)
    print(f"{summary['requests']} requests, concurrency {args.concurrency}: {summary['requests_per_s']} req/s, "
          f"p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms, p99 {summary['p99_ms']} ms, "
          f"{summary['errors']} errors", file=sys.stderr)
    return summary


if __name__ == "__main__":
    sys.exit(main())
