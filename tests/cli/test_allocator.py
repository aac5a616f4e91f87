"""The allocator tuning the CLI applies at start-up: freed tensor-sized blocks stay with the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Allocates and frees a 64 MB block (above glibc's largest dynamic mmap threshold, 32 MB),
# then reports whether the tuning applied and how much resident memory the free gave back.
PROBE = """
import ctypes, json, sys
from gazeclip_cli.core.allocator import tune_for_tensors
applied = tune_for_tensors() if sys.argv[1] == "tune" else False
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096
size = 64 << 20
block = libc.malloc(size)
ctypes.memset(block, 1, size)  # touch every page
before = rss()
libc.free(block)
print(json.dumps({"applied": applied, "returned_mb": (before - rss()) / 2**20}))
"""

linux_glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.path.exists("/proc/self/statm"),
    reason="glibc on Linux only",
)


def probe(mode: str, **env: str) -> dict:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", "GAZECLIP_"))
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env={**clean, **env}
    )
    return json.loads(done.stdout)


@linux_glibc
def test_tuned_process_keeps_freed_tensor_memory_for_the_next_batch():
    plain = probe("plain")
    tuned = probe("tune")
    assert not plain["applied"] and plain["returned_mb"] > 60  # glibc unmaps the block on free
    assert tuned["applied"] and tuned["returned_mb"] < 4  # kept in the heap: no page faults next time


@linux_glibc
def test_switch_and_explicit_glibc_settings_leave_the_allocator_alone():
    assert not probe("tune", GAZECLIP_MALLOC_TUNING="0")["applied"]
    assert not probe("tune", MALLOC_MMAP_THRESHOLD_="131072")["applied"]
