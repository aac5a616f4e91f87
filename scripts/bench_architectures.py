"""Every paper-size architecture side by side: parameters, MACs and CPU seconds per image, beside Table VII.

All models are built once (random weights: timing does not depend on their values) and run
on the same batch (256x256 crops, resized beforehand to each model's input size) in turn within each
repeat, so machine noise hits them alike; the fastest repeat (the least disturbed on a
shared machine) is the figure, the median beside it. Only the test path is timed (no
text tower); GazeCLIP's includes the gaze estimator on the 224x224 gaze patches. Parameters
are given in total and for the test path (without the text tower, as attribute and scan load it).

    python scripts/bench_architectures.py --batch 32 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace

import torch

from gazeclip_cli.core.model.builder import WeightSources, build_model
from gazeclip_cli.core.model.config import GazeCLIPConfig, load_architecture
from gazeclip_cli.core.model.info import model_info
from gazeclip_cli.core.model.paper import paper_row

ARCHITECTURES = (
    "resnet-18",
    "xception",
    "vit-b-16",
    "clip-vit-b-32",
    "clip-vit-b-32-aws",
    "gazeclip-vit-b-32",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--architectures", nargs="*", default=list(ARCHITECTURES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    crops = torch.rand(args.batch, 3, 256, 256, generator=g)
    patches = torch.rand(args.batch, 3, 224, 224, generator=g)
    models, inputs, infos, test_params = {}, {}, {}, {}
    for name in args.architectures:
        cfg = load_architecture(name)
        if isinstance(cfg, GazeCLIPConfig):  # what attribute/scan/evaluate load: no text tower
            test_cfg = replace(cfg, use_lre=False)
            test_params[name] = sum(
                p.numel() for p in build_model(test_cfg, WeightSources(pretrained=False)).parameters()
            )
        model = build_model(cfg, WeightSources(pretrained=False)).eval()
        size = cfg.image_size
        images = (
            crops
            if size == 256
            else torch.nn.functional.interpolate(crops, size=(size, size), mode="bicubic", antialias=True)
        )
        models[name], inputs[name] = model, (images, patches if model.uses_gaze else None)
        infos[name] = model_info(model)
        test_params.setdefault(name, infos[name].total)

    load_start = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for name, model in models.items():
            model(*inputs[name])  # warm-up
        for _ in range(args.repeats):
            for name, model in models.items():
                t0 = time.perf_counter()
                model(*inputs[name])
                times[name].append(time.perf_counter() - t0)

    rows = []
    for name, info in infos.items():
        row = paper_row(name)
        rows.append(
            {
                "architecture": name,
                "params_m": round(info.total / 1e6, 2),
                "params_test_path_m": round(test_params[name] / 1e6, 2),
                "gmacs_test_path": round(info.test_path_flops / 2e9, 2),
                "gflops_test_path": round(info.test_path_flops / 1e9, 2),
                "cpu_s_per_image": round(min(times[name]) / args.batch, 4),
                "cpu_s_per_image_median": round(statistics.median(times[name]) / args.batch, 4),
                "paper": None if row is None else row.as_dict(),
            }
        )
    print(
        json.dumps(
            {
                "batch": args.batch,
                "threads": args.threads,
                "repeats": args.repeats,
                "load_average_start": [round(x, 2) for x in load_start],
                "load_average_end": [round(x, 2) for x in os.getloadavg()],
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
