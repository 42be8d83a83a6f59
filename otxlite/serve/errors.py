"""The one error type of the service: an HTTP status and a sentence for the client."""

from __future__ import annotations


class RequestError(Exception):
    """A request the service refuses; ``message`` says what was wrong (the JSON body is ``{"error": message}``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
