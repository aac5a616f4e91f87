"""`gazeclip demo` across seeds and thread counts, and where two thread counts part.

    python scripts/bench_demo.py --seeds 0 1 2 --threads 1 2 --jobs 2 [--quick] [--out DIR]
    python scripts/bench_demo.py --compare DIR_A DIR_B       # two demo output folders, stage by stage
    python scripts/bench_demo.py --collect DIR [DIR ...]     # the table of demo output folders made before
    python scripts/bench_demo.py --divergence [--renders 64 --steps 40]
    python scripts/bench_demo.py --probs DIR [DIR ...]        # per-face top probabilities against tau
    python scripts/bench_demo.py --seeds 0 1 --set benchmark.test_per_class=120 epochs=16 [--quick]

Grid: ``gazeclip demo --seed S --threads T`` in subprocesses (at most ``--jobs`` at once),
each run's ``headline.json`` read back; prints every run's headline and per-class figures,
its wall and CPU seconds (the child's own, from ``wait4``) and the load average, then the
spread (largest minus smallest) of each headline figure over all runs.

Compare: renders (SHA-256 of every image), the gaze estimator file, the cached gaze, the
per-epoch validation figures and the headline of two demo outputs: the first that differs
is where the runs parted.

Set: the grid with some of the demo's sizes changed (``DemoConfig`` fields, ``benchmark.`` and
``gaze_fit.`` for the sub-configs); each run is ``run_demo`` in a child process instead of the
CLI, with the same threads rule. For trying a recipe before it becomes the demo's.

Probs: the demo's model over its cache's test split (``evaluate``'s own prediction loop), and
per test set: faces, the share whose top probability reaches tau, the classes they are given
and a histogram of the top probability; the open-set figure of each set is recomputed from
those probabilities and checked against the run's ``evaluation.json``.

Divergence: the demo gaze estimator's fit on the same renders at 1 and 2 threads, in two
subprocesses: for the first optimiser step, the largest difference of every layer's output
and of every parameter's gradient; then the losses and weights after ``--steps`` steps.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("seen_closed_set_acc", "seen_open_set_acc", "seen_detection_auc", "unseen_rejected_as_unknown")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def grid(args: argparse.Namespace) -> None:
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    todo = [(s, t) for s in args.seeds for t in args.threads]
    running: dict[int, tuple[int, int, float, float, subprocess.Popen]] = {}
    done: list[dict] = []
    while todo or running:
        while todo and len(running) < args.jobs:
            seed, threads = todo.pop(0)
            folder = out / f"s{seed}-t{threads}"
            if args.set:
                cmd = [sys.executable, __file__, "--child", str(seed), str(threads), str(folder)]
                cmd += ["--set", *args.set]
            else:
                cmd = [sys.executable, "-m", "gazeclip_cli", "demo", "--seed", str(seed)]
                cmd += ["--threads", str(threads), "--out", str(folder)]
            cmd += ["--quick"] if args.quick else []
            log = open(out / f"s{seed}-t{threads}.log", "w")  # noqa: SIM115 - closed with the child
            proc = subprocess.Popen(cmd, env=_env(), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            running[proc.pid] = (seed, threads, time.perf_counter(), os.getloadavg()[0], proc)
        pid, status, usage = os.wait4(-1, 0)
        if pid not in running:
            continue
        seed, threads, start, load0, proc = running.pop(pid)
        folder = out / f"s{seed}-t{threads}"
        if os.waitstatus_to_exitcode(status) != 0:
            print(f"seed {seed} threads {threads}: failed, see {folder}.log")
            continue
        data = json.loads((folder / "headline.json").read_text())
        data.update(
            wall=time.perf_counter() - start,
            cpu=usage.ru_utime + usage.ru_stime,
            load=(load0, os.getloadavg()[0]),
        )
        done.append(data)
        _print_run(data)
    _print_table(done)
    _print_spread(done)
    print(f"outputs in {out}")


def collect(folders: list[Path]) -> None:
    """The table and spread of finished demo outputs; wall and CPU are the demo's own clocks."""
    done = []
    for folder in folders:
        data = json.loads((folder / "headline.json").read_text())
        data.update(wall=sum(data["seconds"].values()), cpu=sum(data["cpu_seconds"].values()), load=None)
        done.append(data)
    _print_table(done)
    _print_spread(done)


def _print_spread(done: list[dict]) -> None:
    if len(done) > 1:
        print("\nspread over all runs (largest - smallest):")
        for k in FIGURES:
            values = [d["headline"][k] for d in done]
            print(f"  {k}: {min(values):.3f} .. {max(values):.3f} (spread {max(values) - min(values):.3f})")


def _print_table(done: list[dict]) -> None:
    """Every run as one Markdown row: the headline, the lowest seen class, wall and CPU seconds, load."""
    print(
        "\n| seed, threads | "
        + " | ".join(FIGURES)
        + " | lowest seen class (closed-set ACC) | wall s | CPU s | load |"
    )
    print("| --- " * (len(FIGURES) + 5) + "|")
    for d in sorted(done, key=lambda d: (d["seed"], d["threads"])):
        low = min(d["per_class"], key=lambda c: c["closed_set_acc"])
        figures = " | ".join(f"{d['headline'][k]:.3f}" for k in FIGURES)
        print(
            f"| {d['seed']}, {d['threads']} | {figures} | {low['name']} {low['closed_set_acc']:.3f} | "
            f"{d['wall']:.0f} | {d['cpu']:.0f} | {_load(d['load'])} |"
        )


def _load(load: tuple[float, float] | None) -> str:
    return "not recorded" if load is None else f"{load[0]:.1f} -> {load[1]:.1f}"


def _print_run(d: dict) -> None:
    h = d["headline"]
    figures = ", ".join(f"{k} {h[k]:.3f}" for k in FIGURES)
    print(
        f"seed {d['seed']} threads {d['threads']} ({d['cpu_capability']}): {figures}; best epoch {d['best_epoch']}; "
        f"gaze {d['gaze_error_deg']:.2f} deg; wall {d['wall']:.0f} s, CPU {d['cpu']:.0f} s, "
        f"load {d['load'][0]:.1f} -> {d['load'][1]:.1f}"
    )
    for c in d["per_class"]:
        print(
            f"    {c['name']:16s} closed-set ACC {c['closed_set_acc']:.3f}  open-set ACC "
            f"{c.get('open_set_acc', float('nan')):.3f}  detection ACC {c['detection_acc']:.3f}"
        )


def _config(quick: bool, seed: int, threads: int, settings: list[str]):
    """The demo's config with ``settings`` (``name=value``, ``benchmark.name=value``) replaced."""
    import ast
    from dataclasses import replace

    from gazeclip_cli.core.demo.pipeline import DemoConfig

    config = (DemoConfig.quick if quick else DemoConfig.standard)(seed, threads=threads)
    for item in settings:
        key, _, text = item.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        part, _, name = key.rpartition(".")
        if part:
            config = replace(config, **{part: replace(getattr(config, part), **{name: value})})
        else:
            config = replace(config, **{name: value})
    return config


def child(seed: int, threads: int, out: Path, quick: bool, settings: list[str]) -> None:
    from gazeclip_cli.core.demo.pipeline import run_demo

    config = _config(quick, seed, threads, settings)
    print(config, flush=True)
    run_demo(out, config)


HISTOGRAM = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0001)


def probs(folders: list[Path], tau: float) -> None:
    """Per test set of each demo output: the top attribution probability against tau."""
    import numpy as np

    from gazeclip_cli.core.data.cache import read_cache
    from gazeclip_cli.core.evaluate.metrics import open_set_accuracy
    from gazeclip_cli.core.evaluate.runner import evaluate_model

    for folder in folders:
        model = folder / "run" / "model"
        names = json.loads((model / "meta.json").read_text())["class_names"]
        with tempfile.TemporaryDirectory() as tmp:
            result = evaluate_model(model, folder / "cache", tmp, tau=tau, device="cpu")
        report = json.loads((folder / "results" / "evaluation.json").read_text())
        written = {s["name"]: s for s in report["sets"]}
        rows = read_cache(folder / "cache").split("test")
        att = result.attribution_probs
        head = json.loads((folder / "headline.json").read_text())
        print(
            f"\n{folder} (seed {head['seed']}, {head['threads']} thread(s), best epoch {head['best_epoch']})"
        )
        bins = " ".join(
            f"[{lo:.2f},{min(hi, 1):.2f}{']' if hi > 1 else ')'}"
            for lo, hi in zip(HISTOGRAM[:-1], HISTOGRAM[1:], strict=True)
        )
        print(f"  unknown AUROC (pooled unseen against seen, by top p): {report['unknown_auroc']:.2f}")
        print(f"  {'set':16s} {'n':>4s} {'top p >= tau':>12s} {'open-set ACC':>12s}  top-p histogram {bins}")
        for name in dict.fromkeys(r.generator for r in rows):
            ix = np.array([i for i, r in enumerate(rows) if r.generator == name])
            p = att[ix]
            labels = np.array([rows[i].dfa for i in ix])
            top, cls = p.max(axis=1), p.argmax(axis=1)
            acc = open_set_accuracy(p, labels, tau)
            if abs(acc - written[name]["open_set_acc"]) > 1e-9:
                raise SystemExit(f"{folder}: {name} open-set ACC {acc} differs from evaluation.json's")
            hist = np.histogram(top, bins=HISTOGRAM)[0]
            given = {names[c]: int((cls == c).sum()) for c in np.unique(cls)}
            passed = {names[c]: int(((cls == c) & (top >= tau)).sum()) for c in np.unique(cls)}
            print(
                f"  {name:16s} {len(ix):4d} {float(np.mean(top >= tau)):12.3f} {acc:12.3f}  "
                + " ".join(f"{h:4d}" for h in hist)
                + f"   argmax {given}, of them p >= tau {passed}; median top p {float(np.median(top)):.3f}"
            )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare(a: Path, b: Path) -> None:
    images = sorted(p.relative_to(a) for p in (a / "data").rglob("*.png"))
    differ = [p for p in images if _sha(a / p) != _sha(b / p)]
    print(f"renders: {len(images)} images, {len(differ)} differ")
    same = _sha(a / "gaze-estimator.safetensors") == _sha(b / "gaze-estimator.safetensors")
    print(f"gaze estimator file: {'identical' if same else 'differs'}")
    gaze = []
    with open(a / "cache" / "preprocessed.csv") as fa, open(b / "cache" / "preprocessed.csv") as fb:
        for ra, rb in zip(csv.DictReader(fa), csv.DictReader(fb), strict=True):
            for k in ("gaze_pitch", "gaze_yaw"):
                gaze.append(abs(float(ra[k]) - float(rb[k])))
    print(
        f"cached gaze: largest difference {max(gaze):.6f} rad, {sum(g > 0 for g in gaze)} of {len(gaze)} differ"
    )
    for run in (a, b):
        epochs = [json.loads(x) for x in (run / "run" / "metrics.jsonl").read_text().splitlines()]
        print(
            f"{run.name} epochs: "
            + "; ".join(
                f"{e['epoch']}: loss {e['train_loss']:.4f} val ACC {e['val_seen_closed_set_acc']:.3f}"
                for e in epochs
                if e["kind"] == "epoch"
            )
        )
        h = json.loads((run / "headline.json").read_text())["headline"]
        print(f"{run.name} headline: " + ", ".join(f"{k} {h[k]:.3f}" for k in FIGURES))


def divergence(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for threads in (1, 2):
            target = Path(tmp) / f"t{threads}.pt"
            cmd = [sys.executable, __file__, "--probe", str(threads), str(target)]
            cmd += ["--renders", str(args.renders), "--steps", str(args.steps)]
            subprocess.run(cmd, env=_env(), check=True)
            import torch

            results[threads] = torch.load(target, weights_only=True)
    one, two = results[1], results[2]
    print(f"CPU kernels: {one['capability']}; first step, largest |1 thread - 2 threads|:")
    for name in one["outputs"]:
        diff = (one["outputs"][name] - two["outputs"][name]).abs().max().item()
        print(f"  output of {name:14s} {diff:.3e}")
    for name in one["grads"]:
        diff = (one["grads"][name] - two["grads"][name]).abs().max().item()
        scale = one["grads"][name].abs().max().item()
        print(f"  gradient of {name:18s} {diff:.3e} (largest gradient {scale:.3e})")
    first = next(
        (i for i, (x, y) in enumerate(zip(one["losses"], two["losses"], strict=True)) if x != y), None
    )
    print(
        f"losses first differ at step {first}; after {args.steps} steps: {one['losses'][-1]:.6f} vs {two['losses'][-1]:.6f}"
    )
    weights = max((one["state"][k] - two["state"][k]).abs().max().item() for k in one["state"])
    print(f"largest weight difference after {args.steps} steps: {weights:.3e}")
    for threads, r in results.items():
        wall, cpu = r["seconds"]
        print(
            f"{threads} thread(s): {args.steps} steps in {wall:.2f} s wall, {cpu:.2f} s CPU (load {r['load']:.1f})"
        )


def probe(threads: int, target: Path, renders: int, steps: int) -> None:
    """The fit's first steps as ``fit_gaze_estimator`` takes them, recording the first step."""
    import torch

    torch.set_num_threads(threads)
    from gazeclip_cli.core.demo.gaze_fit import GazeFitConfig, _to_tensor, eye_band, render_gaze_set
    from gazeclip_cli.core.model.gaze_estimator import SmallGazeCNN

    cfg = GazeFitConfig()
    patches, gaze = render_gaze_set(renders, cfg.seed)
    x, y = _to_tensor(patches), torch.as_tensor(gaze)
    rows, cols = eye_band()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = SmallGazeCNN(cfg.width)
    model = model.to(memory_format=torch.channels_last).train()
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module, _inputs, output) -> None:
            outputs.setdefault(name, output.detach().clone())

        return hook

    hooks = [
        m.register_forward_hook(keep(name))
        for name, m in model.named_modules()
        if name and not list(m.children())
    ]
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    order = torch.Generator().manual_seed(cfg.seed)
    losses, grads = [], {}
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for step in range(steps):
        idx = torch.randperm(len(x), generator=order)[: cfg.batch_size]
        band = x[idx][:, :, rows, cols].contiguous(memory_format=torch.channels_last)
        loss = (model(band) - y[idx]).abs().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if step == 0:
            grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
            for h in hooks:
                h.remove()
        optimiser.step()
        losses.append(loss.item())
    seconds = (time.perf_counter() - start_wall, time.process_time() - start_cpu)
    state = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
    capability = torch.backends.cpu.get_cpu_capability()
    data = {"outputs": outputs, "grads": grads, "losses": losses, "state": state, "capability": capability}
    torch.save({**data, "seconds": seconds, "load": os.getloadavg()[0]}, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="demo runs at once")
    parser.add_argument("--quick", action="store_true", help="gazeclip demo --quick")
    parser.add_argument("--out", default="", help="folder for the runs (default: a new temporary one)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("DIR_A", "DIR_B"))
    parser.add_argument("--collect", nargs="+", type=Path, metavar="DIR", help="demo output folders")
    parser.add_argument("--divergence", action="store_true")
    parser.add_argument("--renders", type=int, default=64, help="--divergence: renders to fit on")
    parser.add_argument("--steps", type=int, default=40, help="--divergence: optimiser steps")
    parser.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE", help="grid: demo sizes changed")
    parser.add_argument("--probs", nargs="+", type=Path, metavar="DIR", help="demo output folders")
    parser.add_argument("--tau", type=float, default=0.9, help="--probs: the threshold")
    parser.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), int(args.child[1]), Path(args.child[2]), args.quick, args.set)
    elif args.probs:
        probs(args.probs, args.tau)
    elif args.probe:
        probe(int(args.probe[0]), Path(args.probe[1]), args.renders, args.steps)
    elif args.collect:
        collect(args.collect)
    elif args.compare:
        compare(*args.compare)
    elif args.divergence:
        divergence(args)
    else:
        grid(args)


if __name__ == "__main__":
    main()
