"""Fast CPU mode benchmark: scan files/s of torch (fp32) against the ONNX exports, and their parity.

In one process, side by side (docs/PERFORMANCE.md, "Fast CPU mode"):

1. Speed, the paper configuration (gazeclip-vit-b-32, random weights: no real weights exist
   here), exported with ``export_model_folder`` once per runtime. ``scan`` (the CLI's engine
   and defaults) of the same files under each runtime in turn, ``--repeats`` rounds:
   the demo's test renders in aligned mode (no detection), and real photos with MTCNN
   detection. Then the split of the work: stage 1 alone (decode, detect, prepare; the
   shared path, the same for every runtime) and the forward alone on the prepared faces, so
   the ceiling of a faster forward is plain.
2. Parity, on the same prepared faces (stage 1 runs once): torch against each export, the
   verdict (P(fake) >= 0.5), |P(fake) difference|, the attributed class, |probability
   difference| and |gaze difference|: with the demo-trained model on its test renders and
   on real photos, and with the paper configuration on the same.

The demo model comes from ``--demo DIR`` (a ``gazeclip demo --quick --out DIR`` run), or
such a run is made first. The load average is printed at the start and the end.

    python scripts/bench_fast_cpu.py --demo /tmp/demo --files 48 --repeats 2
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
from PIL import Image

from gazeclip_cli.core.inference.fast_cpu import EXPORT_RUNTIMES

RUNTIMES = ("torch", *EXPORT_RUNTIMES)


def real_photos() -> list[Path]:
    """The real face photos the tests use: scikit-image's astronaut, matplotlib's Grace Hopper."""
    import skimage
    from matplotlib import cbook

    return [
        Path(skimage.__file__).parent / "data" / "astronaut.png",
        Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
    ]


def photo_variants(folder: Path, n: int) -> list[Path]:
    """``n`` distinct files from the real photos: mirrored, cut and rescaled (each still a face photo)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    sources = [Image.open(p).convert("RGB") for p in real_photos()]
    for i in range(n):
        im = sources[i % len(sources)]
        w, h = im.size
        k = i // len(sources)
        cut = im.crop((k % 3 * w // 40, k % 2 * h // 40, w - k % 4 * w // 40, h))
        if k % 2:
            cut = cut.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = 1.0 - 0.05 * (k % 5)
        cut = cut.resize((int(cut.width * scale), int(cut.height * scale)), Image.BILINEAR)
        path = folder / f"photo_{i:03d}.jpg"
        cut.save(path, quality=92)
        out.append(path)
    return out


def demo_test_renders(demo: Path) -> list[Path]:
    """The demo benchmark's test renders (``data/images/<class>/test-*.png``), in name order."""
    return sorted((demo / "data" / "images").glob("*/test-*.png"))


def ensure_demo(demo: Path) -> Path:
    if not (demo / "run" / "model" / "meta.json").is_file():
        subprocess.run(
            [sys.executable, "-m", "gazeclip_cli", "demo", "--quick", "--quiet", "--out", str(demo)],
            check=True,
        )
    return demo / "run" / "model"


def paper_folder(root: Path) -> Path:
    from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
    from gazeclip_cli.core.model.config import load_architecture
    from gazeclip_cli.core.model.folder import save_model_folder

    model = build_gazeclip(load_architecture("gazeclip-vit-b-32"), WeightSources(pretrained=False), seed=0)
    return save_model_folder(model, root / "paper")


def export_all(folder: Path, calibration_dir: Path) -> dict[str, dict]:
    """Every export of a folder; the calibrated ones on the tool's default set (the demo's renders,
    none of them a test render), as aligned crops like the speed runs' renders."""
    from dataclasses import replace

    from gazeclip_cli.core.demo.calibration import demo_calibration
    from gazeclip_cli.core.inference.fast_cpu import CALIBRATED, export_model_folder

    calibration = replace(demo_calibration(calibration_dir), aligned=True)
    records = {}
    for runtime in EXPORT_RUNTIMES:
        t0 = time.perf_counter()
        record = export_model_folder(
            folder, runtime, calibration=calibration if runtime in CALIBRATED else None
        )
        records[runtime] = {
            "export_s": round(time.perf_counter() - t0, 1),
            "check_max_abs_diff": record.check_max_abs_diff,
            "graph_mb": round(os.path.getsize(folder / f"{runtime}.onnx") / 2**20, 1),
        }
        if record.calibration is not None:
            records[runtime]["calibration"] = {
                k: record.calibration[k] for k in ("faces", "face_mode", "max_abs_diff")
            }
    return records


def predictors(folder: Path, aligned: bool, batch_size: int) -> dict:
    from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings

    out, detector = {}, None
    for runtime in RUNTIMES:
        settings = PredictorSettings(
            face_mode="aligned" if aligned else None, batch_size=batch_size, runtime=runtime
        )
        out[runtime] = Predictor(folder, settings=settings, detector=detector)
        detector = out[runtime].detector  # one MTCNN for all: stage 1 is the same path
    return out


def scan_speed(preds: dict, files: list[Path], out: Path, repeats: int) -> dict:
    """Files/s of ``scan`` per runtime, rounds alternating; ratios of each round to its torch scan."""
    from gazeclip_cli.core.inference.scan import scan

    for runtime, p in preds.items():  # warm-up: sessions and kernels built, files cached
        scan(p, files[: p.settings.batch_size], out / f"warm-{runtime}.jsonl")
    wall: dict[str, list[float]] = {r: [] for r in preds}
    for i in range(repeats):
        for runtime, p in preds.items():
            t0 = time.perf_counter()
            summary = scan(p, files, out / f"scan-{runtime}-{i}.jsonl")
            wall[runtime].append(time.perf_counter() - t0)
            assert summary.files_this_run == len(files), summary
    n = len(files)
    return {
        "files": n,
        "files_per_s_median": {r: round(n / statistics.median(v), 2) for r, v in wall.items()},
        "speed_up_per_round": {
            r: [round(t / s, 2) for t, s in zip(wall["torch"], v, strict=True)]
            for r, v in wall.items()
            if r != "torch"
        },
    }


def split(preds: dict, files: list[Path]) -> dict:
    """Stage 1 alone (serial, one thread of Python) and each runtime's forward alone on its output."""
    p = preds["torch"]
    t0 = time.perf_counter()
    prepared = [p.prepare(f) for f in files]
    prep_s = time.perf_counter() - t0
    faces = [face for item in prepared for face in item.faces]
    forward = {}
    for runtime, q in preds.items():
        q.predict_faces(faces[: q.settings.batch_size])  # warm
        t0 = time.perf_counter()
        q.predict_faces(faces)
        forward[runtime] = round(time.perf_counter() - t0, 2)
    return {"faces": len(faces), "stage1_s": round(prep_s, 2), "forward_s": forward}


def parity(preds: dict, files: list[Path]) -> dict:
    """torch against each export on the same prepared faces (stage 1 once)."""
    faces = [face for f in files for face in preds["torch"].prepare(f).faces]
    ref = preds["torch"].predict_faces(faces)
    out = {"faces": len(faces)}
    for runtime in RUNTIMES[1:]:
        got = preds[runtime].predict_faces(faces)
        has_det = ref[0].p_fake is not None
        d_fake = [abs(a.p_fake - b.p_fake) for a, b in zip(ref, got, strict=True)] if has_det else [0.0]
        d_prob = [
            np.abs(np.subtract(a.probabilities, b.probabilities)).max() for a, b in zip(ref, got, strict=True)
        ]
        d_gaze = [
            max(abs(a.gaze_pitch - b.gaze_pitch), abs(a.gaze_yaw - b.gaze_yaw))
            for a, b in zip(ref, got, strict=True)
            if a.gaze_pitch is not None
        ] or [0.0]
        out[runtime] = {
            "verdict_agreement": sum(a.verdict == b.verdict for a, b in zip(ref, got, strict=True))
            / len(ref),
            "max_abs_p_fake_diff": float(max(d_fake)),
            "attribution_agreement": sum(a.generator == b.generator for a, b in zip(ref, got, strict=True))
            / len(ref),
            "max_abs_probability_diff": float(max(d_prob)),
            "max_abs_gaze_diff_rad": float(max(d_gaze)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--demo", type=Path, default=None, help="a `gazeclip demo --quick` output (made if absent)"
    )
    parser.add_argument("--files", type=int, default=48, help="demo test renders scanned for speed")
    parser.add_argument(
        "--photos", type=int, default=8, help="real-photo files (variants) scanned with detection"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    from gazeclip_cli.core.allocator import tune_for_tensors

    tune_for_tensors()
    report: dict = {"load_average_start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="bench-fast-cpu-") as tmp:
        root = Path(tmp)
        demo = args.demo or root / "demo"
        demo_model = ensure_demo(demo)
        renders = demo_test_renders(demo)
        photos = photo_variants(root / "photos", args.photos)
        originals = real_photos()
        report["demo_model"] = {"exports": export_all(demo_model, root / "calibration")}
        demo_preds = predictors(demo_model, aligned=True, batch_size=args.batch_size)
        report["demo_model"]["parity_test_renders"] = parity(demo_preds, renders)
        report["demo_model"]["parity_real_photos_aligned"] = parity(demo_preds, originals + photos)
        del demo_preds
        paper = paper_folder(root)
        report["paper"] = {"exports": export_all(paper, root / "calibration")}
        aligned = predictors(paper, aligned=True, batch_size=args.batch_size)
        speed_files = renders[: args.files]
        report["paper"]["scan_aligned_demo_renders"] = scan_speed(aligned, speed_files, root, args.repeats)
        report["paper"]["split_aligned"] = split(aligned, speed_files)
        report["paper"]["parity_demo_renders_aligned"] = parity(aligned, renders[: args.files])
        del aligned
        detect = predictors(paper, aligned=False, batch_size=args.batch_size)
        out = root / "detect"
        out.mkdir()
        report["paper"]["scan_detect_real_photos"] = scan_speed(detect, photos, out, args.repeats)
        report["paper"]["split_detect"] = split(detect, photos)
        report["paper"]["parity_real_photos_detect"] = parity(detect, originals + photos)
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
