"""Running the service with uvicorn: bind, serve, and shut down cleanly on SIGTERM or Ctrl-C."""

from __future__ import annotations

import copy
import signal
import socket
import threading
from pathlib import Path

from otxlite.core.console import console
from otxlite.core.errors import OtxliteError
from otxlite.core.model_files import ModelKind, model_kind
from otxlite.serve.settings import ServeSettings

GRACEFUL_SHUTDOWN_S = 60  # how long requests in flight may take to finish after SIGTERM


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: any free port); a clear error when the address is taken or invalid."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as err:
        raise OtxliteError(f"--host {host} --port {port}: cannot listen there ({err.strerror or err}). "
                           "Choose another --port (0 picks a free one).") from err


def serve(model: Path, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings = ServeSettings()) -> None:
    """Serve ``model`` (an exported openvino.xml) until SIGTERM or Ctrl-C; requests in flight finish first.

    The model compiles after the port is open (``GET /health`` answers 503 until then); if it cannot be loaded,
    the server stops and this raises ``OtxliteError``.
    """
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from otxlite.serve.app import create_app

    model_kind(model, allowed=(ModelKind.OPENVINO,))
    sock = bind(host, port)
    server: uvicorn.Server | None = None

    def stop(_: BaseException) -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(Path(model), settings, on_load_failure=stop)
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["otxlite"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    server = uvicorn.Server(uvicorn.Config(app, log_config=log_config, server_header=False,
                                           timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S))
    bound_host, bound_port = sock.getsockname()[:2]
    url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"
    console.print(f"Serving {model} on {url} (POST /score, GET /health, GET /metadata, docs at {url}/docs); "
                  f"API key {'required' if settings.api_key else 'not required'}; "
                  f"image URLs {'fetched' if settings.allow_urls else 'refused'}. Stop with Ctrl-C or SIGTERM.",
                  soft_wrap=True, markup=False)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal under the handler it found; a no-op
    # handler here makes that re-raise harmless, so a SIGTERM ends the process with exit code 0.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: None) if in_main_thread else None
    try:
        server.run(sockets=[sock])
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
        sock.close()
    service = app.state.service
    if service.status == "failed":
        raise OtxliteError(f"--load-weights {model}: the model could not be loaded: {service.detail}")
    console.print("Server stopped.")
