"""Ray engine benchmark: scan throughput with one and two Ray workers against the local engine, same files, same run.

Generates N images (as ``scripts/bench_scan.py``: smooth random colour fields, 256 x 256
JPEG, folders of 100), builds a model folder of ``--architecture`` (default ``demo-small``,
what ``gazeclip demo`` trains) with random weights, starts one local Ray instance with the
usable cores (as ``--engine ray`` does without ``--address``: loopback, no dashboard, workers
at niceness 0) and then alternates ``--repeats`` times, in aligned mode (no MTCNN):

1. the local engine with the CLI's defaults (the usable cores as worker threads, one
   intra-op thread each, the allocator tuned as the CLI tunes it);
2. the Ray engine with one model worker (``--actors 1``);
3. the Ray engine with two (``--actors 2``), each on one CPU: the same cores as the local engine;
4. the local engine on one core (``workers=1``): with 3., how far two cores scale on this
   machine at all, so "two workers / one worker" can be read against "two cores / one core";
5. the Ray engine with two workers and tasks of one batch (``--files-per-task`` = the batch
   size, the engine before tasks carried several batches): what the larger tasks save.

The Ray scans 2. and 3. carry ``--files-per-task`` files a task (default: the engine's).

Each scan writes its own CSV. Times come from the scan's progress callback: the end-to-end
rate (files / wall time of the scan call) and the steady rate (files written from the end of
the first quarter to the last file, over that time), whose difference is the engine's fixed
start-up cost per scan (Ray Data's executor, starting the workers, loading the model once
per worker): ``start-up = wall - files / steady rate``. Starting the Ray instance itself is
timed once. Ratios pair runs of the same repeat, so a burst of other work slows both. For
the steady window, the cores kept busy by this process (the driver), the Ray model workers,
Ray's runtime (raylet, GCS, Ray Data's actors, the crash guard) and every other process of
the machine are read from /proc: where the cores went.

    python scripts/bench_ray.py --images 6000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scan import generate  # noqa: E402 - the same generated images as the scan benchmark


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by each process of the machine, by kind (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    kinds = {"this process": 0.0, "ray model workers": 0.0, "ray runtime": 0.0, "other processes": 0.0}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        used = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        if int(pid) == os.getpid():
            kinds["this process"] += used
        elif "MapWorker" in cmd:
            kinds["ray model workers"] += used
        elif cmd.startswith("ray::") or "/site-packages/ray/" in cmd:
            kinds["ray runtime"] += used  # raylet, GCS, Ray Data's own actors, the crash guard
        else:
            kinds["other processes"] += used
    return kinds


def timed_scan(predictor, roots: list[Path], out: Path, files: int, **options) -> dict:
    from gazeclip_cli.core.inference.scan import scan

    # From the file that completes the first quarter to the last: Ray's workers start one after
    # the other (seconds apart), so an earlier mark would count the time one worker ran alone;
    # the groups the driver holds back to restore walk order are a few percent of the rest.
    mark = max(1, files // 4)
    stamps: list[float] = []
    at_mark: dict[str, float] = {}

    def progress(p) -> None:
        stamps.append(time.perf_counter())
        if p.files_done == mark:
            at_mark.update(cpu_seconds())

    t0 = time.perf_counter()
    summary = scan(predictor, roots, out, progress=progress, **options)
    wall = time.perf_counter() - t0
    after = cpu_seconds()
    assert summary.files_this_run == files
    window = stamps[-1] - stamps[mark - 1]
    steady = (files - mark) / window
    return {
        "files": files,
        "wall_s": round(wall, 2),
        "files_per_s": round(files / wall, 1),
        "steady_files_per_s": round(steady, 1),
        "first_file_s": round(stamps[0] - t0, 2),
        "startup_s": round(wall - files / steady, 2),
        # Cores each kind of process kept busy during the steady window (this machine has
        # usable_cores of them; processes that ended within the window are not counted, so
        # "other processes" is a lower bound, 0 when more of them ended than ran).
        "steady_cores_busy": {k: round(max(0.0, after[k] - at_mark.get(k, 0.0)) / window, 2) for k in after},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--size", type=int, default=256, help="side of the generated images")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--architecture", default="demo-small", help="built with random weights")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files-per-task", type=int, default=None, help="default: the engine's default")
    args = parser.parse_args()

    from gazeclip_cli.core.allocator import tune_for_tensors
    from gazeclip_cli.core.cpus import usable_cores
    from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings
    from gazeclip_cli.core.inference.scan_ray import RayScanEngine
    from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
    from gazeclip_cli.core.model.config import load_architecture
    from gazeclip_cli.core.model.folder import save_model_folder
    from gazeclip_cli.core.ray_engine import RayOptions, joined

    tune_for_tensors()  # as the CLI at start-up
    cores = usable_cores()
    per_task = args.files_per_task or RayOptions().files_per_task
    names = ("local", "ray_1_worker", "ray_2_workers", "local_1_core", "ray_2_workers_one_batch_tasks")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
        tmp_path = Path(tmp)
        model = save_model_folder(
            build_gazeclip(load_architecture(args.architecture), WeightSources(pretrained=False)),
            tmp_path / "model",
        )
        root = tmp_path / "images"
        generate(root, args.images, args.size, "jpeg")
        roots = sorted(root.iterdir())
        settings = PredictorSettings(face_mode="aligned", batch_size=args.batch_size)
        predictor = Predictor(model, settings=settings)
        t0 = time.perf_counter()
        with joined(RayOptions()):  # one local instance for every Ray scan below
            ray_start = time.perf_counter() - t0
            for repeat in range(args.repeats):
                for name, options in (
                    ("local", {}),
                    (
                        "ray_1_worker",
                        {"engine": RayScanEngine(RayOptions(actors=1, files_per_task=per_task))},
                    ),
                    (
                        "ray_2_workers",
                        {"engine": RayScanEngine(RayOptions(actors=2, files_per_task=per_task))},
                    ),
                    ("local_1_core", {"workers": 1, "model_threads": 1}),
                    (
                        "ray_2_workers_one_batch_tasks",
                        {"engine": RayScanEngine(RayOptions(actors=2, files_per_task=args.batch_size))},
                    ),
                ):
                    result = timed_scan(
                        predictor, roots, tmp_path / f"{name}_{repeat}.csv", args.images, **options
                    )
                    result["load_average_1min"] = round(os.getloadavg()[0], 2)
                    runs[name].append(result)
                    print(name, json.dumps(result), file=sys.stderr, flush=True)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    def ratios(a: str, b: str, key: str) -> list[float]:
        return [round(x[key] / y[key], 2) for x, y in zip(runs[a], runs[b], strict=True)]

    report = {
        "settings": {
            "images": args.images,
            "size": args.size,
            "batch_size": args.batch_size,
            "model": f"{args.architecture}, random weights",
            "mode": "aligned (no face detection)",
            "usable_cores": cores,
            "local_engine": "the CLI's defaults (worker threads = usable cores, 1 intra-op thread each)",
            "ray": "local instance, num_cpus = usable cores; fused layout (each worker prepares and runs the model), 1 CPU each",
            "files_per_task": per_task,
        },
        "ray_instance_start_s": round(ray_start, 2),
        "runs": runs,
        "median": {
            name: {
                "files_per_s": median(name, "files_per_s"),
                "steady_files_per_s": median(name, "steady_files_per_s"),
                "startup_s": median(name, "startup_s"),
            }
            for name in runs
        },
        "ratios_steady": {
            "ray_2_workers / local": ratios("ray_2_workers", "local", "steady_files_per_s"),
            "ray_2_workers / ray_1_worker": ratios("ray_2_workers", "ray_1_worker", "steady_files_per_s"),
            "ray_1_worker / local_1_core": ratios("ray_1_worker", "local_1_core", "steady_files_per_s"),
            "ray_2_workers / the same with one-batch tasks": ratios(
                "ray_2_workers", "ray_2_workers_one_batch_tasks", "steady_files_per_s"
            ),
            "local / local_1_core (the machine's two-core scaling)": ratios(
                "local", "local_1_core", "steady_files_per_s"
            ),
        },
        "ratios_end_to_end": {
            "ray_2_workers / local": ratios("ray_2_workers", "local", "files_per_s"),
            "ray_2_workers / ray_1_worker": ratios("ray_2_workers", "ray_1_worker", "files_per_s"),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
