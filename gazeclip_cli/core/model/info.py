"""Parameters and FLOPs per image of each of the paper's modules, for ``gazeclip model-info``.

FLOPs are torch's formulas (one multiply-add = 2 FLOPs; matrix products, convolutions and
attention), each credited to the innermost module running it; MACs = FLOPs / 2. What is
counted and why: docs/PERFORMANCE.md ("Counting FLOPs").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from gazeclip_cli.core.model.detector import Detector, ParameterGroups
from gazeclip_cli.core.model.paper import paper_row

OTHER = "other"


def group_of(name: str, rules: ParameterGroups) -> str:
    """The model's group of a parameter name, or of a module name given with a trailing dot."""
    return next((label for label, rule in rules if rule(name)), OTHER)


@dataclass
class ModuleCount:
    """One module group: parameters, and FLOPs per image (2 x MAC) on each path."""

    module: str  # group label
    total: int
    trainable: int
    test_flops: int = 0  # per image on the test path
    train_flops: int = 0  # per image on the train path (the text tower once, for one prompt set)

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
                "convention": "2 x multiply-accumulate (MAC)",
                "test_path": self.test_path_flops,
                "train_path": self.train_path_flops,
                "text_per_prompt_set": self.text_flops_per_prompt_set,
                "modules": [
                    {"module": m.module, "test_path": m.test_flops, "train_path": m.train_flops}
                    for m in self.modules
                ],
            },
            "macs_per_image": {
                "test_path": self.test_path_flops // 2,
                "train_path": self.train_path_flops // 2,
                "text_per_prompt_set": self.text_flops_per_prompt_set // 2,
            },
            "paper_table_vii": row.as_dict() if (row := paper_row(self.architecture)) else None,
        }


def _cpu_attention_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# torch has formulas for the CUDA attention kernels only; on the CPU SDPA dispatches to this one.
_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flop}


class _ModuleFlopCounter(FlopCounterMode):
    """torch's counter, crediting each counted op to the innermost module running it."""

    def __init__(self, names: dict[torch.nn.Module, str]) -> None:
        super().__init__(display=False, custom_mapping=_EXTRA_FORMULAS)
        self.names = names
        self.stack: list[str] = []
        self.by_module: dict[str, int] = defaultdict(int)

    def _count_flops(self, func_packet, out, args, kwargs):
        # Overrides torch's attribution to every enclosing module (ModuleTracker): we want the
        # innermost one, since the GIE calls its blocks' parts directly rather than the blocks.
        formula = self.flop_registry.get(func_packet)
        if formula is not None:
            self.by_module[self.stack[-1] if self.stack else ""] += formula(*args, **kwargs, out_val=out)
        return out


@contextmanager
def _fast_path_off():
    # nn.TransformerEncoderLayer (AGPM) takes a fused kernel under no_grad + eval whose FLOPs no
    # formula covers; the unfused path computes the same products and is counted.
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def module_flops(model: torch.nn.Module, fn: Callable, *args, **kwargs) -> dict[str, int]:
    """FLOPs of ``fn(*args, **kwargs)`` per module name of ``model`` ("" for ops outside any)."""
    counter = _ModuleFlopCounter({m: n for n, m in model.named_modules()})

    def push(module, _inputs):
        if module in counter.names:
            counter.stack.append(counter.names[module])

    def pop(module, _inputs, _output):
        if module in counter.names:
            counter.stack.pop()

    hooks = [register_module_forward_pre_hook(push), register_module_forward_hook(pop)]
    try:
        with _fast_path_off(), counter:
            fn(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    return dict(counter.by_module)


def count_flops(fn: Callable, *args, **kwargs) -> int:
    """Total FLOPs (2 x MAC) of ``fn(*args, **kwargs)``, any callable (a module or a function)."""
    root = fn if isinstance(fn, torch.nn.Module) else torch.nn.Module()
    return sum(module_flops(root, fn, *args, **kwargs).values())


def _by_group(flops: dict[str, int], rules: ParameterGroups) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for name, n in flops.items():
        out[group_of(name + ".", rules) if name else OTHER] += n
    return out


@torch.no_grad()
def model_info(model: Detector) -> ModelInfo:
    """Parameter breakdown and per-image FLOPs of the test and train paths (on the model's device)."""
    cfg = model.cfg
    rules = model.parameter_groups()
    params: dict[str, list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        params.setdefault(group_of(name, rules), []).append(p)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    size = cfg.image_size
    images = torch.rand(1, 3, size, size, device=device)
    patches = torch.rand(1, 3, 224, 224, device=device) if model.uses_gaze else None
    test = _by_group(module_flops(model, model, images, patches), rules)
    text: dict[str, int] = {}
    if model.uses_text:
        one_set = torch.zeros(1, dtype=torch.long, device=device)
        text = _by_group(module_flops(model, model.encode_text, one_set), rules)
    model.train(was_training)
    labels = list(dict.fromkeys([label for label, _ in rules] + [OTHER]))
    modules = [
        ModuleCount(
            label,
            sum(p.numel() for p in params.get(label, [])),
            sum(p.numel() for p in params.get(label, []) if p.requires_grad),
            test.get(label, 0),
            test.get(label, 0) + text.get(label, 0),
        )
        for label in labels
        if label in params or test.get(label) or text.get(label)
    ]
    test_total, text_total = sum(test.values()), sum(text.values())
    return ModelInfo(
        architecture=cfg.name,
        modules=modules,
        total=sum(m.total for m in modules),
        trainable=sum(m.trainable for m in modules),
        test_path_flops=test_total,
        train_path_flops=test_total + text_total,
        text_flops_per_prompt_set=text_total,
    )
