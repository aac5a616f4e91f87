"""``gazeclip attribute`` on one photo with the paper configuration on the CPU: wall time and where it goes.

The model folder is the paper's architecture (``gazeclip-vit-b-32``: ViT-B/32 at 256, AGPM,
ETH-XGaze ResNet-50 gaze estimator) built with random weights
(``WeightSources(pretrained=False)``: no weight files ship offline; timing does not depend on
the values). The photo is matplotlib's ``grace_hopper.jpg`` (512 x 600), a real portrait.

Reported:

- end to end: ``gazeclip attribute PHOTO --model DIR --format json`` in a subprocess, wall
  time including the Python and torch start-up (and with ``--html``, Grad-CAM and the report);
- in process, per stage: load (model folder: read, build, load weights; SHA-256 of the
  weights; MTCNN networks; then the Predictor doing all three), decode (read, hash, decode), detect (MTCNN), crop (256 crop,
  resized to the network's size), normalise (ETH-XGaze head pose and warp), model (the test
  path forward on one face), Grad-CAM; the first (cold) call and the best of ``--repeats``.

The in-process stages run with glibc's allocator tuned as the CLI tunes it
(``core/allocator.py``) unless ``--no-malloc-tuning``; the end-to-end runs are the CLI's,
tuned unless the environment says otherwise (``GAZECLIP_MALLOC_TUNING=0``).

    python scripts/bench_attribute.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """(cold seconds, best warm seconds, last result)."""
    t0 = time.perf_counter()
    result = fn()
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        warm.append(time.perf_counter() - t0)
    return cold, min(warm) if warm else cold, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--photo", type=Path, default=None, help="default: matplotlib's grace_hopper.jpg")
    parser.add_argument(
        "--no-malloc-tuning", action="store_true", help="leave glibc's allocator as it is (the CLI tunes it)"
    )
    args = parser.parse_args()
    if not args.no_malloc_tuning:
        from gazeclip_cli.core.allocator import tune_for_tensors

        tune_for_tensors()  # as the CLI does at start-up

    import torch
    from matplotlib import cbook

    from gazeclip_cli.core.data.faces import FaceDetector, crop_face, resize_crop, select_faces
    from gazeclip_cli.core.data.gaze_normalization import normalise_face
    from gazeclip_cli.core.data.images import decode_image, read_file_bytes
    from gazeclip_cli.core.inference.predictor import Predictor
    from gazeclip_cli.core.inference.provenance import sha256_of_bytes, sha256_of_file
    from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
    from gazeclip_cli.core.model.config import load_architecture
    from gazeclip_cli.core.model.folder import load_model_folder, save_model_folder

    torch.set_num_threads(args.threads)
    photo = args.photo or Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    report: dict[str, object] = {
        "photo": photo.name,
        "architecture": "gazeclip-vit-b-32, random weights (WeightSources(pretrained=False))",
        "threads": args.threads,
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory(prefix="bench_attribute_") as tmp:
        folder = save_model_folder(
            build_gazeclip(load_architecture("gazeclip-vit-b-32"), WeightSources(pretrained=False)),
            Path(tmp) / "model",
        )
        report["weights_mb"] = round((folder / "weights.safetensors").stat().st_size / 2**20, 1)

        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        cli = [sys.executable, "-m", "gazeclip_cli", "attribute", str(photo), "--model", str(folder)]
        e2e = {}
        for name, extra in (
            ("json", ["--format", "json"]),
            ("json+html", ["--format", "json", "--html", f"{tmp}/r.html"]),
        ):
            t0 = time.perf_counter()
            subprocess.run(cli + extra, check=True, capture_output=True, env=env)
            e2e[name] = round(time.perf_counter() - t0, 2)
        report["end_to_end_s"] = e2e

        stages: dict[str, dict[str, float]] = {}

        def record(name: str, cold: float, warm: float) -> None:
            stages[name] = {"cold_s": round(cold, 4), "warm_s": round(warm, 4)}

        def once(name: str, fn):
            t0 = time.perf_counter()
            result = fn()
            seconds = time.perf_counter() - t0
            record(name, seconds, seconds)
            return result

        once("load: model folder (config, build, weights)", lambda: load_model_folder(folder))
        once("load: SHA-256 of weights.safetensors", lambda: sha256_of_file(folder / "weights.safetensors"))
        once("load: MTCNN networks", FaceDetector)
        predictor = once("load: Predictor, all of the above", lambda: Predictor(folder))
        detector = predictor.detector
        assert detector is not None

        def decode():
            data = read_file_bytes(photo)
            sha256_of_bytes(data)
            return decode_image(data, str(photo))

        cold, warm, image = timed(decode, args.repeats)
        record("decode (read, SHA-256, decode)", cold, warm)
        cold, warm, found = timed(lambda: detector.detect([image]), args.repeats)
        record("detect (MTCNN)", cold, warm)
        face = select_faces(found[0], "largest")[0]
        cold, warm, _ = timed(lambda: resize_crop(crop_face(image, face), predictor.image_size), args.repeats)
        record("crop (256 crop, network size)", cold, warm)
        cold, warm, _ = timed(lambda: normalise_face(image, face.landmarks), args.repeats)
        record("normalise (ETH-XGaze head pose + warp)", cold, warm)
        prepared = predictor.prepare(photo)
        cold, warm, _ = timed(lambda: predictor.predict_faces(prepared.faces), args.repeats)
        record("model (test path, one face)", cold, warm)
        cold, warm, _ = timed(lambda: predictor.gradcam(prepared.faces[0]), args.repeats)
        record("grad-cam (HTML report only)", cold, warm)
        cold, warm, _ = timed(
            lambda: predictor.result(prepared, predictor.predict_faces(predictor.prepare(photo).faces)),
            args.repeats,
        )
        record("prepare + model, together", cold, warm)
        report["stages"] = stages
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
