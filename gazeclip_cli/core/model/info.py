"""Parameter counts per module and FLOPs per image, for ``gazeclip model-info``.

FLOPs are counted by ``torch.utils.flop_counter`` (one multiply-add = 2 FLOPs) on one
image; MACs = FLOPs / 2 are given too, since many papers (likely the paper's Table VII)
report MACs under the name FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from gazeclip_cli.core.model.gazeclip import GazeCLIP

PAPER_TABLE_VII = {"params_m": 204.40, "gflops": 17.65, "seconds_per_image_a100": 0.192}


@dataclass
class ModuleCount:
    module: str  # dotted name, or a group label
    total: int
    trainable: int

    @property
    def frozen(self) -> int:
        return self.total - self.trainable


@dataclass
class ModelInfo:
    architecture: str
    modules: list[ModuleCount]
    total: int
    trainable: int
    test_path_flops: int  # per image, gaze estimator included
    train_path_flops: int  # per image with one prompt set (the text tower once)
    text_flops_per_prompt_set: int

    def as_dict(self) -> dict:
        return {
            "architecture": self.architecture,
            "parameters": {
                "total": self.total,
                "trainable": self.trainable,
                "frozen": self.total - self.trainable,
                "modules": [
                    {"module": m.module, "total": m.total, "trainable": m.trainable, "frozen": m.frozen}
                    for m in self.modules
                ],
            },
            "flops_per_image": {
                "test_path": self.test_path_flops,
                "train_path": self.train_path_flops,
                "text_per_prompt_set": self.text_flops_per_prompt_set,
            },
            "macs_per_image": {
                "test_path": self.test_path_flops // 2,
                "train_path": self.train_path_flops // 2,
            },
            "paper_table_vii": PAPER_TABLE_VII,
        }


def _groups(model: GazeCLIP) -> list[tuple[str, list[torch.nn.Parameter]]]:
    """Parameters grouped by the paper's modules; every parameter lands in exactly one group."""
    named = list(model.named_parameters())
    rules = [
        ("gaze estimator (GE, frozen)", lambda n: n.startswith("gaze_encoder.estimator.")),
        ("gaze adapter (GE)", lambda n: n.startswith("gaze_encoder.adapter.")),
        ("AGPM appearance encoder", lambda n: n.startswith("agpm.encoder.")),
        ("AGPM transformer + tokens", lambda n: n.startswith("agpm.") or n.startswith("gaze_to_agpm.")),
        ("GIE gaze injectors", lambda n: n.startswith("gie.injectors.")),
        ("GIE LoRA", lambda n: n.startswith("gie.") and "lora_" in n),
        ("GIE CLIP image tower (frozen)", lambda n: n.startswith("gie.")),
        ("LRE word selectors (AWS)", lambda n: n.startswith("lre.selectors.")),
        ("LRE LoRA", lambda n: n.startswith("lre.") and "lora_" in n),
        ("LRE position embedding + LP", lambda n: n in ("lre.positional_embedding", "lre.learnable")),
        ("LRE CLIP text tower (frozen)", lambda n: n.startswith("lre.")),
        ("fusion (W_ig, W_ag)", lambda n: n.startswith("fuse_")),
        (
            "experts (attribution, detection)",
            lambda n: n.startswith(("attribution_expert.", "detection_expert.")),
        ),
        ("temperature", lambda n: n == "logit_scale"),
    ]
    groups: dict[str, list] = {label: [] for label, _ in rules}
    for name, p in named:
        for label, match in rules:
            if match(name):
                groups[label].append(p)
                break
        else:
            groups.setdefault("other", []).append(p)
    return [(label, ps) for label, ps in groups.items() if ps]


def count_flops(fn, *args, **kwargs) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


@torch.no_grad()
def model_info(model: GazeCLIP) -> ModelInfo:
    """Parameter breakdown and per-image FLOPs of the test and train paths (on the model's device)."""
    cfg = model.cfg
    modules = [
        ModuleCount(label, sum(p.numel() for p in ps), sum(p.numel() for p in ps if p.requires_grad))
        for label, ps in _groups(model)
    ]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    size = cfg.clip.vision.image_size
    images = torch.rand(1, 3, size, size, device=device)
    patches = torch.rand(1, 3, 224, 224, device=device) if model.gaze_encoder is not None else None
    test_flops = count_flops(model, images, patches)
    text_flops = 0
    if model.lre is not None:
        text_flops = count_flops(model.encode_text, torch.zeros(1, dtype=torch.long, device=device))
    model.train(was_training)
    return ModelInfo(
        architecture=cfg.name,
        modules=modules,
        total=sum(m.total for m in modules),
        trainable=sum(m.trainable for m in modules),
        test_path_flops=test_flops,
        train_path_flops=test_flops + text_flops,
        text_flops_per_prompt_set=text_flops,
    )
