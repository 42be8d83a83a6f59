"""The TFRecord reader against independently written bytes: CRC32C, framing, gzip, protobuf encodings."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from tfrecord_writer import crc32c, encode_example, masked_crc, write_tfrecord

from otxlite.data.tfrecord import masked_crc32c, parse_example, read_records
from otxlite.core.errors import OtxliteError


def test_crc32c_check_value_and_mask() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    data = np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    assert masked_crc32c(data) == masked_crc(data)


@pytest.mark.parametrize("packed", [True, False])
def test_example_lists_packed_and_unpacked(packed: bool) -> None:
    features = {"bytes": [b"", b"png"], "floats": np.array([0.25, -1.5], np.float32), "ints": [0, 7, -3, 2**40]}
    parsed = parse_example(encode_example(features, packed=packed))
    assert parsed["bytes"] == [b"", b"png"] and parsed["ints"] == [0, 7, -3, 2**40]
    np.testing.assert_array_equal(parsed["floats"], [0.25, -1.5])


def test_records_plain_and_gzip(tmp_path: Path) -> None:
    records = [b"", b"a" * 300, encode_example({"x": [1]})]
    plain = write_tfrecord(tmp_path / "a.tfrecord", records)
    assert list(read_records(plain)) == records
    compressed = tmp_path / "b.tfrecord"
    compressed.write_bytes(gzip.compress(plain.read_bytes()))
    assert list(read_records(compressed)) == records


def test_truncated_header_and_corrupt_length(tmp_path: Path) -> None:
    path = write_tfrecord(tmp_path / "a.record", [b"first", b"second"])
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 20])
    with pytest.raises(OtxliteError, match=r"a\.record, record 1: the file ends inside the record's header"):
        list(read_records(path))
    path.write_bytes(data[:21] + b"\x07" + data[22:])  # the length field of record 1
    with pytest.raises(OtxliteError, match=r"a\.record, record 1: CRC mismatch in the record's length field"):
        list(read_records(path))
