"""TFRecord files and ``tf.train.Example`` messages, read without TensorFlow.

A TFRecord file is a sequence of records, each framed as (little-endian)::

    uint64 length | uint32 masked CRC32C of length | length bytes of data | uint32 masked CRC32C of data

(``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xA282EAD8``; GZIP-compressed files are read too). An
``Example`` is a protobuf ``Features`` map of name -> one of ``BytesList``, ``FloatList``, ``Int64List``;
the few lines of protobuf wire-format decoding below read it (packed and unpacked repeated fields).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import google_crc32c
import numpy as np

from otxlite.core.errors import OtxliteError

FeatureValue = Union[list[bytes], np.ndarray, list[int]]
_MASK_DELTA = 0xA282EAD8
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of ``data``."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as file:
        compressed = file.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if compressed else open(path, "rb")  # type: ignore[return-value]


def read_records(path: Path) -> Iterator[bytes]:
    """The data of each record of a TFRecord file; a truncated or corrupt record is an OtxliteError
    naming the file and the record's index (from 0)."""
    with _open(path) as file:
        index = 0
        while True:
            header = file.read(12)
            if not header:
                return
            where = f"{path}, record {index}"
            if len(header) < 12:
                raise OtxliteError(f"{where}: the file ends inside the record's header (truncated file). "
                                   "Copy or write the file again.")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                raise OtxliteError(f"{where}: CRC mismatch in the record's length field: the file is corrupt or not "
                                   "a TFRecord file. Copy or write the file again.")
            data, footer = file.read(length), file.read(4)
            if len(data) < length or len(footer) < 4:
                raise OtxliteError(f"{where}: the file ends inside the record ({length} bytes announced; truncated "
                                   "file). Copy or write the file again.")
            if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise OtxliteError(f"{where}: CRC mismatch of the record's data: the file is corrupt. "
                                   "Copy or write the file again.")
            yield data
            index += 1


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("a varint runs past the end of the message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of each field of a protobuf message: an int for varints, else the
    field's bytes (a view, not a copy); lengths are checked."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, pos = _varint(buf, pos)
            yield number, wire_type, value
            continue
        if wire_type == _LENGTH_DELIMITED:
            size, pos = _varint(buf, pos)
        elif wire_type in (_FIXED32, _FIXED64):
            size = 4 if wire_type == _FIXED32 else 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type} (field {number})")
        if pos + size > len(buf):
            raise ValueError(f"field {number} runs past the end of the message")
        yield number, wire_type, buf[pos:pos + size]
        pos += size


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed_varints(buf: memoryview) -> list[int]:
    values, pos = [], 0
    while pos < len(buf):
        value, pos = _varint(buf, pos)
        values.append(_int64(value))
    return values


def _feature(buf: memoryview) -> FeatureValue:
    """One ``Feature``: BytesList (1) -> list of bytes, FloatList (2) -> float32 array, Int64List (3) -> ints."""
    for kind, wire, body in _fields(buf):
        if wire != _LENGTH_DELIMITED or isinstance(body, int):
            raise ValueError(f"a feature's field {kind} is not a list message")
        values = [value for number, _, value in _fields(body) if number == 1]
        if kind == 1:
            return [bytes(value) for value in values if not isinstance(value, int)]
        if kind == 2:  # packed (one byte string of float32s) or unpacked (one 4-byte field per float)
            return np.frombuffer(b"".join(v for v in values if not isinstance(v, int)), dtype="<f4")
        if kind == 3:  # packed (one byte string of varints) or unpacked (one varint field per value)
            return [i for v in values for i in ([_int64(v)] if isinstance(v, int) else _packed_varints(v))]
    return []


def parse_example(data: bytes) -> dict[str, FeatureValue]:
    """Decode a serialized ``tf.train.Example`` into name -> values; malformed data raises ValueError."""
    features: dict[str, FeatureValue] = {}
    for number, _, body in _fields(memoryview(data)):
        if number != 1 or isinstance(body, int):  # Example.features
            continue
        for entry_number, _, entry in _fields(body):
            if entry_number != 1 or isinstance(entry, int):  # Features.feature: map entries
                continue
            parts = {n: v for n, _, v in _fields(entry) if not isinstance(v, int)}
            try:
                name = bytes(parts[1]).decode("utf-8")
            except (KeyError, UnicodeDecodeError) as err:
                raise ValueError("a feature has no UTF-8 name") from err
            features[name] = _feature(parts.get(2, memoryview(b"")))
    return features
