"""SHA-256 of large weight files, remembered across runs while the file is unchanged.

A 1 GB ``weights.safetensors`` takes about a second to hash; ``attribute`` records its hash in
every provenance block. The cache (docs/DECISIONS.md, "Weight checksum cache") keeps one entry
per file in the user's cache folder, keyed on the file's size, mtime, ctime, inode and device;
any change re-hashes.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from gazeclip_cli.core.weights.locate import sha256_file

CACHE_FILE = "sha256-cache.json"


def checksum_cache_dir() -> Path:
    """``$GAZECLIP_CACHE_DIR``, else ``$XDG_CACHE_HOME/gazeclip``, else ``~/.cache/gazeclip``."""
    explicit = os.environ.get("GAZECLIP_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gazeclip"


def file_identity(st: os.stat_result) -> list[int]:
    """What must not change for a remembered hash to stand: size, mtime, ctime (ns), inode, device.

    ctime cannot be set back by a user (``touch`` and ``os.utime`` update it), so rewriting
    a file in place and restoring its mtime still re-hashes.
    """
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _read_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # absent, unreadable or torn: every file is simply hashed again
    return data if isinstance(data, dict) else {}


def cached_sha256(path: str | os.PathLike[str], cache_dir: Path | None = None) -> str:
    """Hex SHA-256 of ``path``, read from the cache when the file is unchanged since it was hashed.

    The cache is a convenience: when its folder cannot be written the hash is computed and
    nothing is remembered. Concurrent runs may each rewrite it; the last one's entries win.
    """
    real = os.path.realpath(path)
    before = file_identity(os.stat(real))
    folder = cache_dir if cache_dir is not None else checksum_cache_dir()
    cache_file = folder / CACHE_FILE
    entries = _read_cache(cache_file)
    entry = entries.get(real)
    if isinstance(entry, dict) and entry.get("identity") == before and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = sha256_file(Path(real))
    if file_identity(os.stat(real)) != before:
        return digest  # the file changed while it was read: return what was read, remember nothing
    entries = _read_cache(cache_file)  # another run may have added entries meanwhile
    entries[real] = {"identity": before, "sha256": digest}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=CACHE_FILE, suffix=".tmp")
    except OSError:
        return digest  # a read-only home or cache folder: hashing every run is slower, not wrong
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(entries, fh, indent=1, sort_keys=True)
        os.replace(tmp, cache_file)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
    return digest
