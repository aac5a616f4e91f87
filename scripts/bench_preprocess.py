"""Face detection throughput: batched over images of one size vs. MTCNN one image at a time.

Makes ``--images`` distinct photos of one size from the two real face photos the test
suite uses (skimage's astronaut, matplotlib's Grace Hopper: random crops, flips and
brightness, resized to ``--size``), then times, alternating in one run:

- baseline: ``facenet_pytorch.MTCNN.detect`` called on one image at a time (keep_all,
  landmarks), the way a per-file loop uses it;
- ours, one at a time: :class:`gazeclip_cli.core.data.faces.FaceDetector` on batches of 1,
  to show how much comes from the implementation alone;
- ours, batched: the same detector on batches of ``--batch-size`` images of one size, as
  ``gazeclip preprocess`` runs it.

The three run in turn ``--repeats`` times; throughputs are medians, and the ratio is the
median over rounds of the baseline's time over the batched time of the same round, so a
burst of other work on the machine slows both of a pair alike. The requirement is batched /
baseline >= 1.5x. The script also checks that the batched detector finds the same boxes as the
baseline (to 0.05 px).

Usage: python scripts/bench_preprocess.py [--images 32] [--size 512] [--batch-size 16]
       [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import matplotlib.cbook as cbook
import numpy as np
import torch
from PIL import Image
from skimage import data

from gazeclip_cli.core.data.faces import FaceDetector


def make_images(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` distinct RGB photos of ``size`` x ``size``, each with one face."""
    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        grace = np.asarray(Image.open(fh).convert("RGB"))
    photos = [np.ascontiguousarray(data.astronaut()), grace]
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        photo = photos[i % 2]
        h, w = photo.shape[:2]
        side = int(min(h, w) * rng.uniform(0.8, 1.0))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        img = photo[y : y + side, x : x + side]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        img = np.clip(img.astype(np.float32) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
        images.append(np.ascontiguousarray(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)))
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from facenet_pytorch import MTCNN

    images = make_images(args.images, args.size)
    baseline = MTCNN(keep_all=True, device="cpu")
    ours = FaceDetector("cpu")

    def run_baseline() -> list:
        return [baseline.detect(img, landmarks=True) for img in images]

    def run_single() -> list:
        return [ours.detect([img])[0] for img in images]

    def run_batched() -> list:
        return ours.detect(images, batch_size=args.batch_size)

    # Same answers first: the speed-up must not come from doing something else.
    reference, batched = run_baseline(), run_batched()
    for (boxes, _, _), faces in zip(reference, batched, strict=True):
        ref = (
            np.zeros((0, 4))
            if boxes is None
            else np.asarray(np.stack(list(boxes)), dtype=float).reshape(-1, 4)
        )
        got = np.array([f.box for f in faces]).reshape(-1, 4)
        ref, got = ref[np.lexsort(ref.T[::-1])], got[np.lexsort(got.T[::-1])]
        assert ref.shape == got.shape and np.allclose(ref, got, atol=0.05), "batched detection differs"
    faces = sum(len(f) for f in batched)

    times: dict[str, list[float]] = {"baseline": [], "single": [], "batched": []}
    runs = {"baseline": run_baseline, "batched": run_batched, "single": run_single}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)

    n = len(images)
    print(
        f"{n} images of {args.size}x{args.size} ({faces} faces found), batch {args.batch_size}, "
        f"torch threads {torch.get_num_threads()}, {args.repeats} alternating rounds"
    )
    labels = {
        "baseline": "facenet-pytorch MTCNN.detect, one image at a time",
        "single": "FaceDetector, one image at a time",
        "batched": f"FaceDetector, batches of {args.batch_size}",
    }
    for name, label in labels.items():
        median, best = statistics.median(times[name]), min(times[name])
        print(f"  {label:52s} {n / median:7.1f} images/s median  ({n / best:.1f} best)")
    # A round's ratio compares runs made seconds apart, so a burst of other work on the
    # machine slows both alike; the median over rounds is the figure.
    ratio = statistics.median(b / t for b, t in zip(times["baseline"], times["batched"], strict=True))
    own = statistics.median(s / t for s, t in zip(times["single"], times["batched"], strict=True))
    verdict = "PASS" if ratio >= 1.5 else "FAIL"
    print(f"batched / baseline throughput: {ratio:.2f}x, median of rounds (requirement >= 1.5x): {verdict}")
    print(f"batched / FaceDetector one at a time: {own:.2f}x")


if __name__ == "__main__":
    main()
