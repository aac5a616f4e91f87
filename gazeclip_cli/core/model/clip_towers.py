"""The frozen open_clip CLIP model the GIE and LRE are built around, and LoRA on its blocks.

open_clip's blocks use ``nn.MultiheadAttention``. peft's LoRA for that module merges the
adapter into the frozen in-projection at every forward and unmerges it afterwards, which
drifts the frozen weights by round-off at every step and re-registers parameters under
DDP. So each block's attention is converted, with identical weights and outputs, into
:class:`FrozenSelfAttention` with ordinary ``qkv`` and ``out_proj`` Linear layers; peft then
adds exact, merge-free LoRA to ``attn.qkv``, ``attn.out_proj``, ``mlp.c_fc`` and
``mlp.c_proj`` (the same low-rank parameterisation as peft's MHA LoRA).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gazeclip_cli.core.model.config import ClipConfig
from gazeclip_cli.core.model.openclip import CLIP

LORA_TARGETS = ("attn.qkv", "attn.out_proj", "mlp.c_fc", "mlp.c_proj")


def build_clip(cfg: ClipConfig) -> CLIP:
    """An open_clip CLIP with the given tower sizes, randomly initialised (weights load separately)."""
    v, t = cfg.vision, cfg.text
    return CLIP(
        embed_dim=cfg.embed_dim,
        vision_cfg={
            "image_size": v.image_size,
            "patch_size": v.patch_size,
            "width": v.width,
            "layers": v.layers,
            "head_width": v.head_width,
            "mlp_ratio": v.mlp_ratio,
        },
        text_cfg={
            "context_length": t.context_length,
            "vocab_size": t.vocab_size,
            "width": t.width,
            "heads": t.heads,
            "layers": t.layers,
            "mlp_ratio": t.mlp_ratio,
        },
        quick_gelu=cfg.quick_gelu,
    )


class FrozenSelfAttention(nn.Module):
    """Self-attention with the weights of an ``nn.MultiheadAttention`` as plain Linear layers.

    Input (B, T, D) with an optional additive mask (T, T); output (B, T, D), equal to the
    source module's output.
    """

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        if not mha._qkv_same_embed_dim or not mha.batch_first:
            raise ValueError("only batch-first attention with shared q/k/v width is supported")
        d = mha.embed_dim
        self.num_heads = mha.num_heads
        self.qkv = nn.Linear(d, 3 * d, bias=mha.in_proj_bias is not None)
        self.out_proj = nn.Linear(d, d, bias=mha.out_proj.bias is not None)
        with torch.no_grad():
            self.qkv.weight.copy_(mha.in_proj_weight)
            if mha.in_proj_bias is not None:
                self.qkv.bias.copy_(mha.in_proj_bias)
            self.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.out_proj.bias is not None:
                self.out_proj.bias.copy_(mha.out_proj.bias)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        h = self.num_heads
        qkv = self.qkv(x).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)  # (B, T, 3D) -> (3, B, h, T, D/h)
        mask = attn_mask.to(x.dtype) if attn_mask is not None else None
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)  # (B, h, T, D/h)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, d))  # (B, h, T, D/h) -> (B, T, D)


def convert_attention(blocks: nn.ModuleList) -> None:
    """Replace each open_clip block's ``attn`` in place by an equivalent :class:`FrozenSelfAttention`."""
    for block in blocks:
        if isinstance(block.attn, nn.MultiheadAttention):
            block.attn = FrozenSelfAttention(block.attn).requires_grad_(False)


def lora_pattern(prefix: str, block_indices: list[int]) -> str:
    """Regex of the module names peft adapts: the LoRA targets of the given blocks under ``prefix``."""
    blocks = "|".join(str(i) for i in block_indices)
    targets = "|".join(t.replace(".", r"\.") for t in LORA_TARGETS)
    return rf"{prefix}\.({blocks})\.({targets})"


def add_lora(module: nn.Module, pattern: str, rank: int, alpha: int) -> int:
    """Inject LoRA (peft) into the modules whose full name matches ``pattern``; returns how many."""
    names = [n for n, _ in module.named_modules()]
    import re

    matched = [n for n in names if re.fullmatch(pattern, n)]
    if not matched:
        return 0
    import peft  # seconds to import (transformers); the test path loads LoRA merged, without it

    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=pattern, bias="none")
    peft.inject_adapter_in_model(config, module)
    return len(matched)


def block_forward(
    block: nn.Module,
    x: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    *,
    pre_attn=None,
    after_attn=None,
    pre_mlp=None,
    after_block=None,
) -> torch.Tensor:
    """One open_clip residual block with optional hooks; (B, T, D) -> (B, T, D).

    ``pre_attn`` / ``pre_mlp`` transform the normalised input of attention / MLP (the AWS),
    ``after_attn`` transforms the stream after the attention residual (the gaze injector),
    ``after_block`` transforms the block output (AWS "after").
    """
    h = block.ln_1(x)
    if pre_attn is not None:
        h = pre_attn(h)
    x = x + block.ls_1(block.attn(h, attn_mask=attn_mask))
    if after_attn is not None:
        x = after_attn(x)
    h = block.ln_2(x)
    if pre_mlp is not None:
        h = pre_mlp(h)
    x = x + block.ls_2(block.mlp(h))
    if after_block is not None:
        x = after_block(x)
    return x
