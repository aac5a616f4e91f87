"""Parameter counts per module and FLOPs per image, for ``gazeclip model-info``.

FLOPs are counted by ``torch.utils.flop_counter`` (one multiply-add = 2 FLOPs) on one
image; MACs = FLOPs / 2 are given too, since many papers (likely the paper's Table VII)
report MACs under the name FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from gazeclip_cli.core.model.detector import Detector
from gazeclip_cli.core.model.paper import paper_row


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
            "paper_table_vii": row.as_dict() if (row := paper_row(self.architecture)) else None,
        }


def _groups(model: Detector) -> list[tuple[str, list[torch.nn.Parameter]]]:
    """Parameters grouped by the model's own modules; every parameter lands in exactly one group."""
    rules = model.parameter_groups()
    groups: dict[str, list] = {label: [] for label, _ in rules}
    for name, p in model.named_parameters():
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
def model_info(model: Detector) -> ModelInfo:
    """Parameter breakdown and per-image FLOPs of the test and train paths (on the model's device)."""
    cfg = model.cfg
    modules = [
        ModuleCount(label, sum(p.numel() for p in ps), sum(p.numel() for p in ps if p.requires_grad))
        for label, ps in _groups(model)
    ]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    size = cfg.image_size
    images = torch.rand(1, 3, size, size, device=device)
    patches = torch.rand(1, 3, 224, 224, device=device) if model.uses_gaze else None
    test_flops = count_flops(model, images, patches)
    text_flops = 0
    if model.uses_text:
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
