"""Hand-built image files for bad-input tests, shared by the preprocess and inference suites."""

from __future__ import annotations

import struct
import zlib


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header declares ``width`` x ``height`` but carries almost no data.

    A decompression-bomb check must refuse it from the header alone.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4))
        + chunk(b"IEND", b"")
    )
