"""Training step of the paper configuration vs forward+backward of the bare ViT-B/32 tower, side by side.

Also shows what encoding each distinct prompt set once per batch saves against encoding
one prompt set per sample (what a naive CLIP loss would do). All in one process on the
same batch, alternating; the fastest of the repeats is compared (least disturbed).

    python scripts/bench_train.py --batch 8 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import time

import open_clip
import torch

from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.config import load_architecture
from gazeclip_cli.core.model.loss import gazeclip_loss
from gazeclip_cli.core.train.optim import build_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--classes-in-batch", type=int, default=4, help="distinct classes among the batch's labels"
    )
    args = parser.parse_args()

    model = build_gazeclip(load_architecture("gazeclip-vit-b-32"), WeightSources(pretrained=False)).train()
    bare = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None, force_image_size=256).visual.train()
    opt = build_optimizer(model, lr=1e-4, weight_decay=1e-3)  # the trainer's optimiser
    bare_opt = torch.optim.Adam(bare.parameters(), lr=1e-4)
    b = args.batch
    images, patches = torch.rand(b, 3, 256, 256), torch.rand(b, 3, 224, 224)
    dfa = torch.arange(b) % args.classes_in_batch
    dfd = (dfa > 0).long()

    def step() -> None:
        opt.zero_grad()
        out = model(images, patches, attribution_labels=dfa)
        gazeclip_loss(out, dfa, dfd, model.logit_scale).total.backward()
        opt.step()

    def bare_step() -> None:
        bare_opt.zero_grad()
        bare(images).float().pow(2).mean().backward()
        bare_opt.step()

    sets = model.class_prompt_set[dfa]  # (B,) each sample's prompt set

    def text_per_distinct_set() -> None:
        with torch.no_grad():
            model.encode_text(torch.unique(sets))

    def text_per_sample() -> None:
        with torch.no_grad():
            model.encode_text(sets)

    fns = {
        "gazeclip_train_step": step,
        "bare_forward_backward": bare_step,
        "text_once_per_distinct_set": text_per_distinct_set,
        "text_once_per_sample": text_per_sample,
    }
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "batch": b,
                "distinct_classes_in_batch": args.classes_in_batch,
                "threads": torch.get_num_threads(),
                **{f"{k}_s": round(v, 3) for k, v in best.items()},
                "train_step_ratio_vs_bare": round(
                    best["gazeclip_train_step"] / best["bare_forward_backward"], 2
                ),
                "text_saving_factor": round(
                    best["text_once_per_sample"] / best["text_once_per_distinct_set"], 2
                ),
                "all_times": {k: [round(t, 3) for t in v] for k, v in times.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
