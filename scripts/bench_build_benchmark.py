"""Speed of build-benchmark's discovery + sampling against a bare os.scandir walk of the same tree.

Generates (in a temporary folder) a tree of 100,000 small image files laid out like the
image datasets of configs/protocol.toml (GenFace generator folders, CelebAMask-HQ,
DF40 frame folders, FFHQ buckets, single-folder sets, WildDeepfake clips), then times,
alternating in one run:

- a bare walk: os.scandir recursively, collecting every file path (the least any listing does);
- build_benchmark(): alias search, listing, grouping by video, seeded sampling and the
  cheap check of every sample taken (open, read 16 bytes, close; no decoding).

The protocol's counts are scaled down (default 1/10: the tree holds about seven times more
files than the protocol takes). The check costs three system calls per sample taken, so
that part grows with the samples taken, not with the tree; the --check-all line shows the
cost when every file is checked. Times are medians of the alternating runs; each ratio is
the median, over the runs, of a run's time over the walk timed just before it (on a shared
machine a burst of other work slows both of a pair alike). The requirement is ratio <= 3x
for the "build-benchmark (sampled)" line.
Video sets (Celeb-DF++, Celeb-DF, DFDC) are not in the tree: each sampled video is opened
once with OpenCV to read its frame count, timed separately on the last line.

Usage: python scripts/bench_build_benchmark.py [--files 100000] [--scale 10] [--repeats 21]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
from PIL import Image

from gazeclip_cli.core.data.benchmark import build_benchmark, probe_video
from gazeclip_cli.core.data.discovery import discover
from gazeclip_cli.core.data.protocol import parse_protocol

PROTOCOL = Path(__file__).resolve().parents[1] / "configs" / "protocol.toml"


def small_image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)).save(buf, format=fmt)
    return buf.getvalue()


def make_tree(base: Path, total: int) -> dict[str, str]:
    """Write ``total`` files; returns the --root mapping."""
    png, jpg = small_image("PNG"), small_image("JPEG")
    plan: list[tuple[Path, bytes]] = []
    share = total / 100_000

    def n(count: int) -> int:
        return max(1, round(count * share))

    genface = base / "GenFace"
    for gen in (
        "DiffFace",
        "Diffae",
        "LatDiff",
        "CollDiff",
        "DDPM",
        "FSLSD",
        "FaceSwapper",
        "LatTrans",
        "StyleGAN2",
        "StyleGAN3",
    ):
        plan += [(genface / gen / f"{i:06d}.png", png) for i in range(n(5_500))]
    plan += [(base / "CelebAMask-HQ" / "CelebA-HQ-img" / f"{i}.jpg", jpg) for i in range(n(5_500))]
    df40 = base / "DF40" / "test"
    for method in ("simswap", "uniface", "inswap", "e4s"):
        for v in range(n(120)):
            plan += [
                (df40 / method / "ff" / "frames" / f"{v:03d}_{v + 500:03d}" / f"{f:03d}.png", png)
                for f in range(25)
            ]
    for method in ("VQGAN", "sd2.1", "DiT", "SiT"):
        for v in range(n(120)):
            plan += [(df40 / method / "ff" / f"{v:03d}" / f"{f:03d}.png", png) for f in range(25)]
    plan += [
        (base / "FFHQ" / "images1024x1024" / f"{(i // 1000) * 1000:05d}" / f"{i:05d}.png", png)
        for i in range(n(7_000))
    ]
    for source in ("REFace", "DiffusionAct", "FLUX", "VAE", "HART"):
        plan += [(base / source / f"{i:05d}.png", png) for i in range(n(1_300))]
    for c in range(n(100)):
        plan += [(base / "WildDeepfake" / "fake_test" / f"{c:04d}" / f"{f:04d}.png", png) for f in range(20)]
    plan = plan[:total]
    while len(plan) < total:  # round-up slack goes to FFHQ
        i = len(plan)
        plan.append((base / "FFHQ" / "images1024x1024" / "99000" / f"x{i:06d}.png", png))

    made: set[Path] = set()
    for path, data in plan:
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        with open(path, "wb") as fh:
            fh.write(data)
    names = (
        "GenFace",
        "CelebA-HQ",
        "DF40",
        "FFHQ",
        "REFace",
        "DiffusionAct",
        "FLUX",
        "VAE",
        "HART",
        "WildDeepfake",
    )
    folders = (
        "GenFace",
        "CelebAMask-HQ",
        "DF40",
        "FFHQ",
        "REFace",
        "DiffusionAct",
        "FLUX",
        "VAE",
        "HART",
        "WildDeepfake",
    )
    return {name: str(base / folder) for name, folder in zip(names, folders, strict=True)}


def bare_walk(root: str) -> int:
    """os.scandir recursively, collecting every file path."""
    files: list[str] = []
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir():
                    stack.append(e.path)
                else:
                    files.append(e.path)
    return len(files)


def scaled_protocol(scale: int):
    data = tomllib.loads(PROTOCOL.read_text(encoding="utf-8"))
    data["defaults"]["val_from_train"] //= scale
    for g in data["generators"]:
        for key in ("train", "test"):
            if key in g:
                g[key] //= scale
    return parse_protocol(data, f"{PROTOCOL.name} (counts / {scale})")


def timed(fn, repeats: int) -> tuple[float, object]:
    """Best time of ``repeats`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--scale", type=int, default=10, help="divide the protocol's counts by this")
    ap.add_argument("--repeats", type=int, default=21)
    args = ap.parse_args()

    protocol = scaled_protocol(args.scale)
    with tempfile.TemporaryDirectory(prefix="gazeclip-bench-") as tmp:
        t0 = time.perf_counter()
        roots = make_tree(Path(tmp), args.files)
        print(f"generated {args.files:,} files in {time.perf_counter() - t0:.1f} s under {tmp}")

        def walk() -> int:
            return sum(bare_walk(r) for r in roots.values())

        def build(check_all: bool = False):
            return build_benchmark(protocol, roots, check_all=check_all)

        walk(), build()  # warm the page cache and imports
        walk_times, disc_times, build_times, all_times = [], [], [], []
        result = result_all = None
        n_files = 0
        for _ in range(args.repeats):  # alternate, so load on the machine hits all alike
            t, n_files = timed(walk, 1)
            walk_times.append(t)
            t, _ = timed(lambda: discover(protocol, roots), 1)
            disc_times.append(t)
            t, result = timed(build, 1)
            build_times.append(t)
            t, result_all = timed(lambda: build(True), 1)
            all_times.append(t)

        # Each walk is timed right before its build, so a pair shares the machine's load; the
        # median of the pair ratios is robust to bursts of other work on a shared machine.
        def ratio(times: list[float]) -> float:
            return statistics.median(t / w for t, w in zip(times, walk_times, strict=True))

        walk_s, disc_s, build_s, all_s = (
            statistics.median(x) for x in (walk_times, disc_times, build_times, all_times)
        )
        checked = sum(r.checked for r in result.reports)
        print(f"bare os.scandir walk:        {walk_s * 1000:8.1f} ms  ({n_files:,} files)")
        print(
            f"discovery alone:             {disc_s * 1000:8.1f} ms  ratio {ratio(disc_times):.2f}x  "
            "(alias search, listing, classifying, sorting, grouping by video)"
        )
        print(
            f"build-benchmark (sampled):   {build_s * 1000:8.1f} ms  ratio {ratio(build_times):.2f}x  "
            f"({len(result.rows):,} rows, {checked:,} files checked)  [requirement: <= 3x]"
        )
        checked_all = sum(r.checked for r in result_all.reports)
        print(
            f"build-benchmark --check-all: {all_s * 1000:8.1f} ms  ratio {ratio(all_times):.2f}x  "
            f"({checked_all:,} files checked; informational)"
        )
        print(
            f"medians of {args.repeats} alternating runs, ratio = median of (run / walk just before it); "
            f"best walk {min(walk_times) * 1000:.1f} ms, best build {min(build_times) * 1000:.1f} ms; "
            f"{PROTOCOL.name} with counts / {args.scale}; {os.cpu_count()} CPUs, "
            f"load {os.getloadavg()[0]:.1f}; python {sys.version.split()[0]}"
        )
        ok = ratio(build_times) <= 3.0

        # Video sets: every sampled video is opened once with OpenCV to read its frame count.
        import cv2

        vids = Path(tmp) / "videos"
        vids.mkdir()
        paths = []
        for i in range(20):
            p = vids / f"v{i:02d}.mp4"
            w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 64))
            for f in range(50):
                w.write(np.full((64, 64, 3), f, np.uint8))
            w.release()
            paths.append(str(p))
        probe_video(paths[0])
        t, _ = timed(lambda: [probe_video(p) for p in paths], 3)
        print(f"video probe (frame count, no decoding): {t / len(paths) * 1000:.2f} ms per sampled video")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
