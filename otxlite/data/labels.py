"""The label schema: one ordered list of label names shared by train, validation, test and the model."""

from __future__ import annotations

import json
from pathlib import Path

from otxlite.core.errors import OtxliteError
from otxlite.core.fileio import write_json_atomic

SCHEMA_FILE = "label_schema.json"


def save_label_schema(labels: list[str], path: Path) -> Path:
    """Write ``label_schema.json``: label names in model order with their ids."""
    return write_json_atomic(path, {"labels": [{"id": i, "name": name} for i, name in enumerate(labels)]})


def load_label_schema(path: Path) -> list[str]:
    """Read the label names from a ``label_schema.json``."""
    try:
        data = json.loads(Path(path).read_text())
        return [entry["name"] for entry in sorted(data["labels"], key=lambda e: e["id"])]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise OtxliteError(f"{path} is not a valid otxlite label schema ({err}).") from err


def check_known_labels(found: list[str], known: list[str], what: str) -> None:
    """Fail with the offending names if ``found`` holds labels that ``known`` lacks."""
    unknown = [name for name in found if name not in known]
    if unknown:
        raise OtxliteError(
            f"The {what} has label(s) the model does not know: {', '.join(unknown)}. "
            f"The model's labels are: {', '.join(known)}. Rename or remove those annotations, or train with them."
        )
