"""Test-path forward of the paper configuration vs the bare open_clip ViT-B/32 image tower, side by side.

Both run in this one process on the same batch, alternating, so machine noise hits both;
the ratio of the fastest runs (the least disturbed on a shared machine) is reported, with
the ratio of medians beside it. GazeCLIP's path starts from the 256x256 face crop and
the 224x224 normalised gaze patch, gaze estimator included. Weights are random (timing
does not depend on their values).

    python scripts/bench_forward.py --batch 32 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import open_clip
import torch

from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.config import load_architecture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = build_gazeclip(load_architecture("gazeclip-vit-b-32"), WeightSources(pretrained=False)).eval()
    bare = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None, force_image_size=256).visual.eval()
    images = torch.rand(args.batch, 3, 256, 256)
    patches = torch.rand(args.batch, 3, 224, 224)

    def run_gazeclip() -> None:
        model(images, patches)

    def run_bare() -> None:
        bare(images)

    times: dict[str, list[float]] = {"gazeclip": [], "bare": []}
    with torch.inference_mode():
        run_gazeclip(), run_bare()  # warm-up
        for _ in range(args.repeats):
            for name, fn in (("gazeclip", run_gazeclip), ("bare", run_bare)):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    result = {
        "batch": args.batch,
        "threads": args.threads,
        "gazeclip_test_path_s_per_batch": round(best["gazeclip"], 3),
        "bare_vit_b32_256_s_per_batch": round(best["bare"], 3),
        "gazeclip_s_per_image": round(best["gazeclip"] / args.batch, 4),
        "bare_s_per_image": round(best["bare"] / args.batch, 4),
        "ratio": round(best["gazeclip"] / best["bare"], 2),
        "ratio_of_medians": round(med["gazeclip"] / med["bare"], 2),
        "paper_ratio_table_vii": round(0.192 / 0.023, 2),
        "all_times": {k: [round(t, 3) for t in v] for k, v in times.items()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
