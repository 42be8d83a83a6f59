"""Test helpers: TFRecord files and tf.train.Example messages written byte for byte, without TensorFlow.

Independent of otxlite's reader on purpose: its own (slow, table-driven) CRC32C and protobuf encoder,
so a test that reads these files checks the reader against the formats, not against itself.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Union

import numpy as np

Values = Union[list[bytes], list[float], list[int], np.ndarray]


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli), bit-reflected, as TFRecord uses it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s as ten-byte two's complement
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(values: Values, packed: bool) -> bytes:
    """A ``Feature``: bytes -> BytesList, floats -> FloatList, ints -> Int64List, packed or one field per value."""
    if isinstance(values, np.ndarray) or (values and isinstance(values[0], float)):
        floats = np.asarray(values, "<f4")
        body = _field(1, floats.tobytes()) if packed else b"".join(
            _varint(1 << 3 | 5) + value.tobytes() for value in floats)
        return _field(2, body)
    if values and isinstance(values[0], bytes):
        return _field(1, b"".join(_field(1, value) for value in values))  # type: ignore[arg-type]
    ints = [int(v) for v in values]
    body = _field(1, b"".join(_varint(v) for v in ints)) if packed else b"".join(_varint(1 << 3) + _varint(v)
                                                                                 for v in ints)
    return _field(3, body)


def encode_example(features: dict[str, Values], packed: bool = True) -> bytes:
    """A serialized ``tf.train.Example``; an empty list is written as an empty Int64List."""
    entries = b"".join(_field(1, _field(1, key.encode()) + _field(2, _feature(values, packed)))
                       for key, values in features.items())
    return _field(1, entries)


def frame_record(data: bytes) -> bytes:
    """One TFRecord record: length, masked CRC of the length, data, masked CRC of the data."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


def write_tfrecord(path: Path, records: list[bytes]) -> Path:
    """A TFRecord file of ``records``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(frame_record(data) for data in records))
    return path
