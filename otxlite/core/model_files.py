"""The one place that decides what a ``--load-weights`` path is: an otxlite ``.pth`` or an OpenVINO IR, and
whether the file is whole, checked in milliseconds before any heavy work or run folder."""

from __future__ import annotations

import hashlib
import zipfile
from enum import Enum
from pathlib import Path
from xml.etree import ElementTree

from otxlite.core.errors import OtxliteError

ZIP_MAGIC = b"PK\x03\x04"  # PyTorch >= 1.6 saves a zip archive
PICKLE_MAGIC = 0x80  # older PyTorch: a pickle (protocol 2+)
CUT_SHORT = "as a full disk, an interrupted copy or an interrupted download leave files"


class ModelKind(str, Enum):
    """Kinds of model files otxlite loads."""

    PYTORCH = "weights.pth"
    OPENVINO = "openvino.xml"


def check_checkpoint(path: Path, option: str) -> None:
    """Refuse a PyTorch checkpoint that is cut short or is no checkpoint at all, without loading it."""
    path = Path(path)
    if not path.is_file():
        raise OtxliteError(f"{option} {path}: the file does not exist.")
    size = path.stat().st_size
    with path.open("rb") as stream:
        head = stream.read(4)
    if head == ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as archive:  # reads the directory at the file's end: a cut file has none
                archive.infolist()
        except (zipfile.BadZipFile, OSError) as err:
            raise OtxliteError(
                f"{option} {path}: the checkpoint is cut short: its {size:,} bytes end before the archive does, "
                f"{CUT_SHORT}. otxlite writes weights.pth and last.pth whole (a new file replaces the old one only "
                "once complete), so the run folder's own copy is good: copy it again, or train again."
            ) from err
    elif not head or head[0] != PICKLE_MAGIC:
        shown = head.hex(" ") if head else "nothing (an empty file)"
        raise OtxliteError(f"{option} {path}: this is not a PyTorch checkpoint (it starts with {shown}). Give the "
                           "models/weights.pth (or models/last.pth) of an otxlite training run.")


def check_ir(xml: Path) -> None:
    """Refuse an IR whose ``.xml`` does not parse or whose ``.bin`` is shorter than the ``.xml`` reads."""
    xml, weights = Path(xml), Path(xml).with_suffix(".bin")
    try:
        root = ElementTree.parse(xml).getroot()
    except ElementTree.ParseError as err:
        raise OtxliteError(f"--load-weights {xml}: the IR's XML is cut short or broken ({err}), {CUT_SHORT}. Copy "
                           "the exported openvino.xml again, or export the model again.") from err
    if root.tag != "net":
        raise OtxliteError(f"--load-weights {xml}: this XML is not an OpenVINO IR (its root is <{root.tag}>). Give the "
                           "openvino.xml that otxlite export wrote.")
    needed = max((int(data.get("offset", 0)) + int(data.get("size", 0)) for data in root.iter("data")
                  if data.get("offset") is not None and data.get("size") is not None), default=0)
    have = weights.stat().st_size
    if have < needed:
        raise OtxliteError(f"--load-weights {xml}: the weights file {weights} holds {have:,} bytes, but the IR reads "
                           f"up to byte {needed:,}: it is cut short ({CUT_SHORT}) or belongs to another export. Copy "
                           "the .xml and .bin of one export together, or export again.")


def ir_digest(xml: Path) -> str:
    """The SHA-256 of an IR pair (the ``.xml``, then the ``.bin``), to tell which model a server holds."""
    digest = hashlib.sha256()
    for path in (Path(xml), Path(xml).with_suffix(".bin")):
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_kind(path: Path, allowed: tuple[ModelKind, ...] = (ModelKind.PYTORCH, ModelKind.OPENVINO)) -> ModelKind:
    """Check that ``path`` exists, is one of ``allowed`` and is whole; return its kind."""
    path = Path(path)
    if not path.is_file():
        raise OtxliteError(f"--load-weights {path}: the file does not exist. Give a trained model "
                           f"({' or '.join(kind.value for kind in allowed)}).")
    kinds = {".pth": ModelKind.PYTORCH, ".pt": ModelKind.PYTORCH, ".xml": ModelKind.OPENVINO}
    kind = kinds.get(path.suffix.lower())
    if kind is None or kind not in allowed:
        raise OtxliteError(f"--load-weights {path}: expected {' or '.join(k.value for k in allowed)}, "
                           f"got a '{path.suffix}' file.")
    if kind is ModelKind.OPENVINO and not path.with_suffix(".bin").is_file():
        raise OtxliteError(f"--load-weights {path}: the weights file {path.with_suffix('.bin')} is missing. "
                           "Keep the .xml and .bin of an exported model together.")
    if kind is ModelKind.OPENVINO:
        check_ir(path)
    else:
        check_checkpoint(path, "--load-weights")
    return kind
