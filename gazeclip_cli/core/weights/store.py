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


# safetensors dtype names -> torch dtypes (the ones torch can hold).
SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def map_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file as views of one copy-on-write memory map of it (CPU).

    Nothing is read until a tensor is used, and nothing is copied: pages come from the page
    cache, shared with every other process mapping the file; writing to a tensor copies
    only that page, never touches the file. Same tensors as ``safetensors.torch.load_file``.

    Raises:
        DataError: the file is not a safetensors file (bad header, offsets past its end, unknown dtype).
    """
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > size - 8:
                raise ValueError(f"header of {n} bytes in a file of {size}")
            header = json.loads(fh.read(n))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size)
        tensors: dict[str, torch.Tensor] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = SAFETENSORS_DTYPES.get(info["dtype"])
            if dtype is None:
                raise ValueError(f"tensor {name}: dtype {info['dtype']} is not supported")
            begin, end = (8 + n + int(o) for o in info["data_offsets"])
            shape = [int(d) for d in info["shape"]]
            item = torch.empty((), dtype=dtype).element_size()
            count = (end - begin) // item
            if end > size or begin > end or count != int(torch.Size(shape).numel()) or (end - begin) % item:
                raise ValueError(f"tensor {name}: offsets do not fit its shape or the file")
            if begin % item:  # not aligned to its element size: a view cannot start there, copy it
                raw = torch.empty(0, dtype=torch.uint8).set_(storage, begin, (end - begin,))
                tensors[name] = raw.clone().view(dtype).reshape(shape)
            else:
                tensors[name] = torch.empty(0, dtype=dtype).set_(storage, begin // item, shape)
        return tensors
    except (ValueError, KeyError, TypeError, struct.error, RuntimeError) as exc:
        raise DataError(f"{path}: not a readable safetensors file ({exc})") from None
