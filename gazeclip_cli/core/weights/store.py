"""Writing safetensors files whose bytes depend only on the tensors and the metadata given.

safetensors keeps ``__metadata__`` in a hash map with a per-process random order, so the same
weights saved twice could differ in SHA-256; here the metadata keys are written sorted.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Mapping
from pathlib import Path

import torch

from gazeclip_cli.core.errors import DataError

HEADER_ALIGNMENT = 8  # safetensors pads its JSON header with spaces to a multiple of 8 bytes


def save_safetensors(
    tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``tensors`` (and string ``metadata``) to ``path`` atomically, in deterministic bytes.

    The tensors' layout is safetensors' own (sorted by dtype alignment, then name); the
    metadata, when given, is written with its keys sorted, first in the header.

    Raises:
        DataError: the file cannot be written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    body = path.with_name(f".{path.name}.body.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not metadata:
            save_file(dict(tensors), str(tmp))  # no metadata: the header has no hash-map order
        else:
            save_file(dict(tensors), str(body))
            _rewrite_with_metadata(body, tmp, {str(k): str(v) for k, v in metadata.items()})
            body.unlink()
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        body.unlink(missing_ok=True)
        raise DataError(f"{path}: cannot write weights ({exc.strerror})") from None
    return path


def _rewrite_with_metadata(source: Path, target: Path, metadata: dict[str, str]) -> None:
    """Copy a metadata-free safetensors file, adding ``__metadata__`` with sorted keys."""
    with open(source, "rb") as src:
        (n,) = struct.unpack("<Q", src.read(8))
        header = json.loads(src.read(n))
        header = {"__metadata__": dict(sorted(metadata.items())), **header}
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        text += b" " * (-len(text) % HEADER_ALIGNMENT)
        with open(target, "wb") as dst:
            dst.write(struct.pack("<Q", len(text)))
            dst.write(text)
            shutil.copyfileobj(src, dst, 1 << 20)  # the tensor data, offsets unchanged
