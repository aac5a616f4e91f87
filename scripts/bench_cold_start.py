"""Cold start: ``gazeclip attribute PHOTO`` against ``python -c "import torch"``, side by side in one run.

The script saves a model folder of ``--architecture`` (default ``demo-small``) with random
weights (``WeightSources(pretrained=False)``; nothing is downloaded) and takes matplotlib's
``grace_hopper.jpg`` (512 x 600, a real portrait) as the photo. It then alternates, ``--repeats``
times, fresh processes of

- ``python -c "import torch"`` (the floor: any command that runs the network imports torch);
- ``python -c "import gazeclip_cli.core.inference.predictor"`` (the imports alone);
- ``python -m gazeclip_cli attribute PHOTO --model DIR --format json --runtime torch`` (the whole
  command, the torch model running the forward);
- the same with ``--runtime onnx``: the folder's ONNX export (made once, by ``export_model_folder``,
  in the temporary folder before anything is timed) runs the forward, and the torch model is not built;
- with ``--compare-with CHECKOUT``, both commands from another checkout of the package (for
  example the main branch before a change; it needs the ``--runtime`` option), run with
  ``PYTHONPATH=CHECKOUT``.

A ratio is the median, over the repeats, of a run's wall time over the ``import torch`` run just
before it, so a burst of other work slows both of a pair alike; CPU seconds (user + system,
all threads) are printed beside, and their ratio, which a loaded machine disturbs less. The checksum cache
(``GAZECLIP_CACHE_DIR``) is a fresh temporary folder; one untimed run of each command first
fills it and the page cache. The load average is printed before and after.

    python scripts/bench_cold_start.py --repeats 7
    python scripts/bench_cold_start.py --repeats 5 --architecture gazeclip-vit-b-32  # 1 GB of weights
    python scripts/bench_cold_start.py --repeats 5 --compare-with /path/to/main
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 1.5  # issue 15: attribute at most 1.5x the wall time of `import torch`


def timed_run(cmd: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the child and its threads).

    ``cwd`` is a folder without the package: ``python -m`` puts the current folder first on
    ``sys.path``, which would otherwise import the checkout the script was started from
    whatever ``PYTHONPATH`` says.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({run.returncode}):\n{run.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--architecture", default="demo-small", help="demo-small, tiny-test, gazeclip-vit-b-32, ..."
    )
    parser.add_argument("--photo", type=Path, default=None, help="default: matplotlib's grace_hopper.jpg")
    parser.add_argument(
        "--compare-with", type=Path, default=None, help="another checkout to time beside this one"
    )
    args = parser.parse_args()

    from matplotlib import cbook

    from gazeclip_cli.core.inference.fast_cpu import ONNX, export_model_folder
    from gazeclip_cli.core.model.builder import WeightSources, build_model
    from gazeclip_cli.core.model.config import load_architecture
    from gazeclip_cli.core.model.folder import save_model_folder

    photo = args.photo or Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    here = Path(__file__).resolve().parents[1]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_cold_start_") as tmp:
        folder = save_model_folder(
            build_model(load_architecture(args.architecture), WeightSources(pretrained=False)),
            Path(tmp) / "model",
        )
        export_model_folder(folder, ONNX)  # once, untimed: `--runtime onnx` runs it
        base_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        base_env["GAZECLIP_CACHE_DIR"] = str(Path(tmp) / "checksum-cache")
        attribute = [
            "-m",
            "gazeclip_cli",
            "attribute",
            str(photo),
            "--model",
            str(folder),
            "--format",
            "json",
        ]
        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            "import torch": ([sys.executable, "-c", "import torch"], base_env),
            "import the predictor": (
                [sys.executable, "-c", "import gazeclip_cli.core.inference.predictor"],
                {**base_env, "PYTHONPATH": str(here)},
            ),
            "attribute --runtime torch": (
                [sys.executable, *attribute, "--runtime", "torch"],
                {**base_env, "PYTHONPATH": str(here)},
            ),
            "attribute --runtime onnx": (
                [sys.executable, *attribute, "--runtime", "onnx"],
                {**base_env, "PYTHONPATH": str(here)},
            ),
        }
        if (
            args.compare_with is not None
        ):  # a checkout with the --runtime option (main since the ONNX runtime)
            for runtime in ("torch", "onnx"):
                commands[f"attribute --runtime {runtime} (--compare-with)"] = (
                    [sys.executable, *attribute, "--runtime", runtime],
                    {**base_env, "PYTHONPATH": str(args.compare_with.resolve())},
                )
        for checkout in {env["PYTHONPATH"] for _, env in commands.values() if "PYTHONPATH" in env}:
            imported = subprocess.run(
                [sys.executable, "-c", "import gazeclip_cli; print(gazeclip_cli.__file__)"],
                capture_output=True,
                text=True,
                env={**base_env, "PYTHONPATH": checkout},
                cwd=tmp,
            ).stdout.strip()
            if not Path(imported).resolve().is_relative_to(Path(checkout).resolve()):
                raise SystemExit(f"PYTHONPATH={checkout} imports gazeclip_cli from {imported}")
        for cmd, env in commands.values():  # untimed: fills the checksum cache and the page cache
            timed_run(cmd, env, tmp)
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, (cmd, env) in commands.items():
                seconds, cpu_seconds = timed_run(cmd, env, tmp)
                times[name].append(seconds)
                cpu[name].append(cpu_seconds)
        weights_mb = (folder / "weights.safetensors").stat().st_size / 2**20
    load_after = os.getloadavg()

    floor, cpu_floor = times["import torch"], cpu["import torch"]

    def ratio(t: list[float], base: list[float]) -> float:
        return round(statistics.median(a / b for a, b in zip(t, base, strict=True)), 2)

    report = {
        "architecture": args.architecture,
        "weights_mb": round(weights_mb, 1),
        "photo": photo.name,
        "repeats": args.repeats,
        "python": sys.executable,
        "cpus": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "seconds": {
            name: {
                "min": round(min(t), 2),
                "median": round(statistics.median(t), 2),
                "all": [round(v, 2) for v in t],
            }
            for name, t in times.items()
        },
        "cpu_seconds_median": {name: round(statistics.median(t), 2) for name, t in cpu.items()},
        "ratio_to_import_torch": {
            name: ratio(t, floor) for name, t in times.items() if name != "import torch"
        },
        "cpu_ratio_to_import_torch": {
            name: ratio(t, cpu_floor) for name, t in cpu.items() if name != "import torch"
        },
        "goal": GOAL,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
