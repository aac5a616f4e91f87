"""Test-path forward of the paper configuration vs the bare open_clip ViT-B/32 image tower, side by side.

Everything runs in this one process on the same batch, alternating, so machine noise hits
all variants alike. On a CPU, four variants: GazeCLIP as trained (eager), GazeCLIP as the
predictor runs it (``optimize_for_inference``), the bare tower as open_clip builds it, and
the bare tower with the same rewrite (its attention as Linear layers, every Linear through
oneDNN): the requirement's ratio compares the two rewritten ones (same runtime, same
kernels). The C allocator is tuned as the CLI tunes it (``core/allocator.py``;
``--glibc-defaults`` leaves it). Ratios of the fastest runs are the figures, ratios of
medians and of CPU seconds beside them; the floor is the ratio of the FLOPs. On CUDA (when present, or ``--device
cuda``): bf16 autocast, pinned host batches copied on a side stream while the previous
batch computes, ``torch.cuda.synchronize`` around the clock; seconds per image at batch 1
and ``--batch``, beside the paper's 0.192 s (Table VII, A100). Weights are random (timing
does not depend on their values).

    python scripts/bench_forward.py --batch 32 --repeats 5
    python scripts/bench_forward.py --flops-only     # the FLOPs floor alone (a count, no timing)
    python scripts/bench_forward.py --modules --threads 1 --batch 16   # CPU seconds per module vs its FLOPs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable

import open_clip
import torch

from gazeclip_cli.core.allocator import tune_for_tensors
from gazeclip_cli.core.devices import resolve_device
from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.clip_towers import block_forward, convert_attention
from gazeclip_cli.core.model.config import load_architecture
from gazeclip_cli.core.model.info import count_flops, module_flops
from gazeclip_cli.core.model.optimize import fast_linears, optimize_for_inference

PAPER_S_PER_IMAGE_A100 = 0.192  # Table VII
# The test path's parts timed by --modules: a name, and the module (by name) whose forward it is.
MODULES = {
    "gaze_estimator": "gaze_encoder.estimator",
    "agpm_conv_encoder": "agpm.encoder",
    "agpm_transformer": "agpm.blocks",
    "gie": "gie",
}


def machine() -> dict:
    """What the figures were measured on, and how loaded the machine was."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


class BareTower(torch.nn.Module):
    """open_clip's image tower run block by block as the GIE runs it (attention as Linear layers)."""

    def __init__(self, visual: torch.nn.Module) -> None:
        super().__init__()
        convert_attention(visual.transformer.resblocks)
        fast_linears(visual)
        self.visual = visual

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.visual._embeds(images)  # (B, 3, H, H) -> (B, 1 + m, d)
        for block in self.visual.transformer.resblocks:
            x = block_forward(block, x)
        return self.visual.ln_post(x[:, 0]) @ self.visual.proj  # (B, d) -> (B, embed_dim)


def build() -> dict[str, torch.nn.Module]:
    raw = build_gazeclip(load_architecture("gazeclip-vit-b-32"), WeightSources(pretrained=False)).eval()
    raw.lre = None  # the test path never runs the text tower
    opt = optimize_for_inference(
        build_gazeclip(load_architecture("gazeclip-vit-b-32"), WeightSources(pretrained=False))
    )
    bare = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None, force_image_size=256).visual.eval()
    bare_same = BareTower(
        open_clip.create_model("ViT-B-32-quickgelu", pretrained=None, force_image_size=256).visual.eval()
    )
    return {"gazeclip_eager": raw, "gazeclip": opt, "bare_eager": bare, "bare": bare_same}


def flops_floor(models: dict[str, torch.nn.Module], batch_images, batch_patches) -> dict:
    """FLOPs per image of the test path and of the bare tower, model-info's counter (every module,
    the AGPM transformer included), in both conventions: GFLOPs (2 x MAC) and GMACs."""
    with torch.no_grad():
        test = count_flops(models["gazeclip_eager"], batch_images[:1], batch_patches[:1])
        bare = count_flops(models["bare_eager"], batch_images[:1])
    return {
        "test_path_gflops": round(test / 1e9, 2),
        "test_path_gmacs": round(test / 2e9, 2),
        "bare_gflops": round(bare / 1e9, 2),
        "bare_gmacs": round(bare / 2e9, 2),
        "ratio": round(test / bare, 2),
    }


def cpu_bench(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    models = build()
    g = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, 256, 256, generator=g)
    patches = torch.rand(args.batch, 3, 224, 224, generator=g)
    runs: dict[str, Callable[[], object]] = {
        "gazeclip_eager": lambda: models["gazeclip_eager"](images, patches),
        "gazeclip": lambda: models["gazeclip"](images, patches),
        "bare_eager": lambda: models["bare_eager"](images),
        "bare": lambda: models["bare"](images),
    }
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    with torch.inference_mode():
        same = models["gazeclip"](images[:4], patches[:4]).detection_logits
        ref = models["gazeclip_eager"](images[:4], patches[:4]).detection_logits
        max_diff = float((same - ref).abs().max()) if not args.skip_check else None
        for fn in runs.values():
            fn()  # warm-up
        for _ in range(args.repeats):
            for name, fn in runs.items():
                c0, t0 = time.process_time(), time.perf_counter()
                fn()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    best = {k: min(v) for k, v in wall.items()}
    med = {k: statistics.median(v) for k, v in wall.items()}
    cpu_best = {k: min(v) for k, v in cpu.items()}

    def ratio(a: str, b: str) -> dict:
        return {
            "fastest": round(best[a] / best[b], 2),
            "medians": round(med[a] / med[b], 2),
            "cpu_seconds": round(cpu_best[a] / cpu_best[b], 2),
        }

    return {
        "device": "cpu",
        "batch": args.batch,
        "threads": args.threads,
        "s_per_batch_fastest": {k: round(v, 3) for k, v in best.items()},
        "s_per_image_fastest": {k: round(v / args.batch, 4) for k, v in best.items()},
        "ratio_gazeclip_to_bare_same_runtime": ratio("gazeclip", "bare"),
        "ratio_gazeclip_to_bare_both_eager": ratio("gazeclip_eager", "bare_eager"),
        "speedup_of_the_rewrite_gazeclip": ratio("gazeclip_eager", "gazeclip"),
        "speedup_of_the_rewrite_bare": ratio("bare_eager", "bare"),
        "flops_floor": flops_floor(models, images, patches),
        "rewrite_max_abs_diff_detection_logits": max_diff,
        "paper_ratio_table_vii": round(0.192 / 0.023, 2),
        "all_wall_s": {k: [round(t, 3) for t in v] for k, v in wall.items()},
    }


def _cpu_seconds() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def modules_bench(args: argparse.Namespace) -> dict:
    """CPU seconds of each part of the rewritten test path, timed by hooks inside whole forwards
    (so each part runs exactly as in the test path), beside the bare tower and each part's FLOPs."""
    torch.set_num_threads(args.threads)
    models = build()
    g = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, 256, 256, generator=g)
    patches = torch.rand(args.batch, 3, 224, 224, generator=g)
    with torch.no_grad():
        per_name = module_flops(models["gazeclip_eager"], models["gazeclip_eager"], images[:1], patches[:1])
        bare_flops = count_flops(models["bare_eager"], images[:1])
    total_flops = sum(per_name.values())
    flops = {
        k: sum(v for n, v in per_name.items() if n == m or n.startswith(m + ".")) for k, m in MODULES.items()
    }
    flops["rest"] = total_flops - sum(flops.values())
    model = models["gazeclip"]
    named = dict(model.named_modules())
    start: dict[str, tuple[float, float]] = {}
    taken: dict[str, list[tuple[float, float]]] = {k: [] for k in [*MODULES, "rest", "test_path", "bare"]}
    for key, name in MODULES.items():
        named[name].register_forward_pre_hook(lambda _m, _i, key=key: start.__setitem__(key, _cpu_seconds()))
        named[name].register_forward_hook(
            lambda _m, _i, _o, key=key: taken[key].append(
                tuple(b - a for a, b in zip(start[key], _cpu_seconds(), strict=True))
            )
        )
    with torch.inference_mode():
        model(images, patches), models["bare"](images)  # warm-up
        for k in taken:
            taken[k].clear()
        for _ in range(args.repeats):
            for key, fn in (
                ("test_path", lambda: model(images, patches)),
                ("bare", lambda: models["bare"](images)),
            ):
                c0 = _cpu_seconds()
                fn()
                taken[key].append(tuple(b - a for a, b in zip(c0, _cpu_seconds(), strict=True)))
            parts = [taken[k][-1] for k in MODULES]
            whole = taken["test_path"][-1]
            taken["rest"].append(tuple(w - sum(p[i] for p in parts) for i, w in enumerate(whole)))
    bare_s = min(u + s for u, s in taken["bare"])
    flops |= {"test_path": total_flops, "bare": bare_flops}
    rows = {}
    for key, runs in taken.items():
        best = min(runs, key=sum)
        seconds = sum(best)
        rows[key] = {
            "cpu_s": round(seconds, 3),
            "user_s": round(best[0], 3),
            "system_s": round(best[1], 3),
            "gmacs_per_image": round(flops[key] / 2e9, 2),
            "cpu_s_vs_bare": round(seconds / bare_s, 3),
            "gmacs_vs_bare": round(flops[key] / bare_flops, 3),
            "gflops_per_s": round(flops[key] * args.batch / seconds / 1e9, 1) if seconds > 0 else None,
        }
    return {
        "device": "cpu",
        "batch": args.batch,
        "threads": args.threads,
        "repeats": args.repeats,
        "modules": rows,
    }


def cuda_bench(args: argparse.Namespace, device: torch.device) -> dict:
    """Seconds per image on CUDA at batch 1 and ``args.batch``: bf16 autocast, pinned, overlapped copies."""
    model = build_gazeclip(load_architecture("gazeclip-vit-b-32"), WeightSources(pretrained=False)).eval()
    model.lre = None
    model.to(device)
    copy_stream = torch.cuda.Stream(device)
    result: dict = {
        "device": str(device),
        "precision": "bf16 autocast",
        "paper_s_per_image_a100": PAPER_S_PER_IMAGE_A100,
    }
    for batch in sorted({1, args.batch}):
        # A few host batches, pinned, as a scan's prepared faces would be.
        host = [
            (torch.rand(batch, 3, 256, 256).pin_memory(), torch.rand(batch, 3, 224, 224).pin_memory())
            for _ in range(4)
        ]
        steps = max(args.repeats * 4, 8)

        def stage(i: int, host: list = host):
            with torch.cuda.stream(copy_stream):
                imgs, pats = host[i % len(host)]
                return imgs.to(device, non_blocking=True), pats.to(device, non_blocking=True)

        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            for i in range(3):  # warm-up (cuDNN autotuning, allocator)
                imgs, pats = stage(i)
                torch.cuda.current_stream(device).wait_stream(copy_stream)
                model(imgs, pats)
            torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            nxt = stage(0)
            for i in range(steps):
                torch.cuda.current_stream(device).wait_stream(copy_stream)
                imgs, pats = nxt
                imgs.record_stream(torch.cuda.current_stream(device))
                pats.record_stream(torch.cuda.current_stream(device))
                if i + 1 < steps:
                    nxt = stage(i + 1)  # the next batch's copy overlaps this batch's forward
                model(imgs, pats)
            torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
        result[f"s_per_image_batch_{batch}"] = round(seconds / (steps * batch), 5)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (CUDA when present)")
    parser.add_argument("--skip-check", action="store_true", help="do not compare the rewrite's outputs")
    parser.add_argument(
        "--glibc-defaults",
        action="store_true",
        help="leave the C allocator as glibc sets it (the CLI tunes it: core/allocator.py)",
    )
    parser.add_argument(
        "--modules", action="store_true", help="CPU seconds per module of the test path vs its FLOPs"
    )
    parser.add_argument(
        "--flops-only", action="store_true", help="print only the FLOPs floor (a count, no timing)"
    )
    args = parser.parse_args()
    if args.flops_only:
        g = torch.Generator().manual_seed(0)
        images, patches = torch.rand(1, 3, 256, 256, generator=g), torch.rand(1, 3, 224, 224, generator=g)
        print(json.dumps({"flops_floor": flops_floor(build(), images, patches)}, indent=2))
        return
    # As the CLI runs the test path: freed tensor memory kept, not unmapped and faulted in again.
    tuned = False if args.glibc_defaults else tune_for_tensors()
    device = resolve_device(args.device)
    result = {"machine": machine() | {"allocator_tuned": tuned}}
    if device.type == "cuda":
        result |= cuda_bench(args, device)
    else:
        result |= modules_bench(args) if args.modules else cpu_bench(args)
    result["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
