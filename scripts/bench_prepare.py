"""Where a scanned file's CPU time goes, and what glibc's allocator tuning does to the forward.

1. Preparation of one file, stage by stage, in aligned mode (the scan benchmark's inputs:
   256 x 256 JPEGs) on one thread (torch and OpenCV) with the allocator tuned, as a scan
   worker in the CLI runs it: read and
   SHA-256, JPEG decoding, the 256 crop, the resize to the tiny model's 64 pixels (the
   project's ``resize_crop`` beside Pillow's bicubic, which it replaced), the 224 x 224
   ETH-XGaze normalising warp, and ``Predictor.prepare`` as a whole. Best of ``--repeats``
   passes over the files, per file.
2. Building a batch of 16 gaze patches for the network: ``to_tensor`` (one cast-and-layout
   pass) beside the two passes it replaced (uint8 contiguous copy, then cast).
3. The model forward alone on pre-loaded inputs, in two subprocesses alternating
   ``--repeats`` times: glibc's allocator as it comes, and tuned as the CLI tunes it at
   start-up (``core/allocator.py``); wall, user and system CPU seconds per pass.

    python scripts/bench_prepare.py --images 600 --repeats 5
    python scripts/bench_prepare.py --images 96 --repeats 3 --architecture gazeclip-vit-b-32 --forward-only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scan import generate  # noqa: E402 - the scan benchmark's images


def best_ms(fn, items, repeats: int) -> float:
    """Best pass over ``items``, in milliseconds per item."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for x in items:
            fn(x)
        best = min(best, (time.perf_counter() - t0) / len(items))
    return round(best * 1e3, 3)


def stages(model: Path, paths: list[Path], repeats: int) -> dict:
    import cv2
    import torch
    from PIL import Image

    from gazeclip_cli.core.allocator import tune_for_tensors
    from gazeclip_cli.core.data.faces import CROP_SIZE, aligned_face, crop_square, resize_crop
    from gazeclip_cli.core.data.images import decode_image, read_image_bytes
    from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings, to_tensor
    from gazeclip_cli.core.inference.provenance import sha256_of_bytes

    tune_for_tensors()  # as the CLI runs
    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # a scan worker's budget
    predictor = Predictor(model, settings=PredictorSettings(face_mode="aligned", batch_size=16))
    data = {p: read_image_bytes(p) for p in paths}
    images = {p: decode_image(data[p], p.name) for p in paths}
    crops = {p: crop_square(images[p], aligned_face(images[p]).box, CROP_SIZE) for p in paths}
    size = predictor.image_size
    out = {
        "read + SHA-256": best_ms(lambda p: sha256_of_bytes(read_image_bytes(p)), paths, repeats),
        "decode (JPEG)": best_ms(lambda p: decode_image(data[p], p.name), paths, repeats),
        "crop (256)": best_ms(
            lambda p: crop_square(images[p], aligned_face(images[p]).box, CROP_SIZE), paths, repeats
        ),
        f"resize to {size}: resize_crop": best_ms(lambda p: resize_crop(crops[p], size), paths, repeats),
        f"resize to {size}: Pillow bicubic": best_ms(
            lambda p: np.asarray(Image.fromarray(crops[p]).resize((size, size), Image.BICUBIC)),
            paths,
            repeats,
        ),
        "normalising warp (224)": best_ms(
            lambda p: predictor.preparer._aligned_patch(
                images[p], predictor.preparer.aligned_face(images[p])
            ),
            paths,
            repeats,
        ),
        "Predictor.prepare, whole": best_ms(predictor.prepare, paths, repeats),
    }
    patches = [predictor.prepare(p).faces[0].patch for p in paths[:16]]

    def two_passes(arrays: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)

    batches = [patches] * 20
    out["batch of 16 patches: to_tensor"] = best_ms(
        lambda b: to_tensor(b, predictor.device), batches, repeats
    )
    out["batch of 16 patches: copy, then cast"] = best_ms(two_passes, batches, repeats)
    assert torch.equal(to_tensor(patches, predictor.device), two_passes(patches))
    return out


def child_forward(args: argparse.Namespace) -> dict:
    """One pass of the forward alone over pre-loaded inputs, timed ``--repeats`` times."""
    if args.tuned:
        from gazeclip_cli.core.allocator import tune_for_tensors

        if not tune_for_tensors():
            raise SystemExit("allocator tuning not applied (not glibc, or MALLOC_* set)")
    import torch

    from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings

    predictor = Predictor(args.model, settings=PredictorSettings(face_mode="aligned", batch_size=16))
    faces = [predictor.prepare(p).faces[0] for p in sorted(Path(args.root).rglob("*.jpg"))]
    chunks = [faces[i : i + 16] for i in range(0, len(faces), 16)]
    inputs = [predictor.input_tensors(c) for c in chunks]
    torch.set_num_threads(args.threads)

    def one_pass() -> tuple[float, float, float]:
        t0, c0 = time.perf_counter(), os.times()
        with torch.inference_mode():
            for images, patches in inputs:
                predictor.model(images, patches)
        c1 = os.times()
        return time.perf_counter() - t0, c1.user - c0.user, c1.system - c0.system

    one_pass()  # warm-up
    return {"faces": len(faces), "passes": [one_pass() for _ in range(args.repeats)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--architecture", default="tiny-test", help="built with random weights")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads of the forward"
    )
    parser.add_argument("--forward-only", action="store_true", help="skip the per-stage timings")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--tuned", action="store_true")
    parser.add_argument("--model")
    parser.add_argument("--root")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_forward(args)))
        return

    from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
    from gazeclip_cli.core.model.config import load_architecture
    from gazeclip_cli.core.model.folder import save_model_folder

    report: dict = {"architecture": args.architecture, "images": args.images, "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        tmp_path = Path(tmp)
        model = save_model_folder(
            build_gazeclip(load_architecture(args.architecture), WeightSources(pretrained=False)),
            tmp_path / "model",
        )
        root = tmp_path / "images"
        generate(root, args.images, 256, "jpeg")
        if not args.forward_only:
            report["ms per file (one thread)"] = stages(model, sorted(root.rglob("*.jpg")), args.repeats)
        runs: dict[str, list] = {"glibc defaults": [], "tuned (the CLI)": []}
        for _ in range(2):  # alternate the two children twice: a burst of other load hits both
            for name, flag in (("glibc defaults", []), ("tuned (the CLI)", ["--tuned"])):
                cmd = [sys.executable, __file__, "--child", "--model", str(model), "--root", str(root)]
                cmd += ["--repeats", str(args.repeats), "--threads", str(args.threads), *flag]
                done = subprocess.run(cmd, check=True, capture_output=True, text=True)
                result = json.loads(done.stdout.strip().splitlines()[-1])
                runs[name] += result["passes"]
        report["faces per forward pass"] = result["faces"]
        report["forward alone, per pass (median: wall s, user s, system s)"] = {
            name: [round(statistics.median(p[k] for p in passes), 3) for k in range(3)]
            for name, passes in runs.items()
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
