"""The test path rewritten for inference: same outputs (to 1e-5), fewer wasted cycles on a CPU.

:func:`optimize_for_inference` folds BatchNorm into convolutions, lays convolutions out
channels-last, merges LoRA, and runs every Linear through oneDNN; the measurements behind
each step are in ``docs/PERFORMANCE.md`` ("Test-path forward"). Training never uses it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from gazeclip_cli.core.model.detector import Detector
from gazeclip_cli.core.model.gazeclip import GazeCLIP


def onednn_linear_available() -> bool:
    """Whether torch has oneDNN's fused linear kernel (every x86 and ARM CPU build does)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class FastLinear(nn.Module):
    """``nn.Linear`` whose CPU fp32 forward without autograd runs oneDNN's matmul kernel.

    torch's CPU ``F.linear`` calls MKL's sgemm, which on AMD processors takes a generic code
    path at about half of oneDNN's speed (2.2x slower measured on this project's EPYC VM);
    on Intel both are alike. With autograd on (Grad-CAM), on other devices or dtypes it is
    plain ``F.linear``. Shapes: (..., in) -> (..., out).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.onednn = onednn_linear_available()

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> FastLinear:
        return cls(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            self.onednn
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and not torch.is_grad_enabled()
        ):
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


def _merged_lora(layer: nn.Module) -> nn.Linear | None:
    """A peft LoRA Linear as one Linear with the adapter merged in (W + B A x scale), or None."""
    base = getattr(layer, "base_layer", None)
    if not isinstance(base, nn.Linear) or not hasattr(layer, "get_delta_weight"):
        return None
    weight = base.weight.detach().clone()
    for name in layer.active_adapters:
        weight += layer.get_delta_weight(name)
    merged = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None)
    with torch.no_grad():
        merged.weight.copy_(weight)
        if base.bias is not None:
            merged.bias.copy_(base.bias)
    return merged


class EncoderBlock(nn.Module):
    """A pre-norm ``nn.TransformerEncoderLayer`` (GELU, no dropout) as explicit steps, same weights.

    torch's fused encoder-layer kernel runs its projections through MKL (slow on AMD, see
    :class:`FastLinear`); these steps run them through :class:`FastLinear` and attention
    through ``scaled_dot_product_attention``. Shapes: (B, T, a) -> (B, T, a).
    """

    def __init__(self, layer: nn.TransformerEncoderLayer) -> None:
        super().__init__()
        attn = layer.self_attn
        if not (layer.norm_first and attn.batch_first and attn._qkv_same_embed_dim):
            raise ValueError("only pre-norm, batch-first encoder layers with one q/k/v width are converted")
        if layer.activation_relu_or_gelu != 2:
            raise ValueError("only GELU encoder layers are converted")
        self.heads = attn.num_heads
        self.norm1, self.norm2 = layer.norm1, layer.norm2
        self.qkv = FastLinear(attn.in_proj_weight, attn.in_proj_bias)
        self.out_proj = FastLinear(attn.out_proj.weight, attn.out_proj.bias)
        self.linear1 = FastLinear.from_linear(layer.linear1)
        self.linear2 = FastLinear.from_linear(layer.linear2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, a = x.shape
        h = self.heads
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, h, a // h).permute(2, 0, 3, 1, 4)  # (3, B, h, T, a/h)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, h, T, a/h)
        x = x + self.out_proj(y.transpose(1, 2).reshape(b, n, a))  # (B, h, T, a/h) -> (B, T, a)
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d into the Conv2d that feeds it, in place; returns how many.

    A pair is a Conv2d followed by a BatchNorm2d in an ``nn.Sequential``, or the attributes
    ``conv{k}``/``bn{k}`` (and ``downsample`` = Sequential) of torchvision's ResNet and its
    blocks, whose forward applies ``bn{k}`` straight to the output of ``conv{k}``.
    """
    folded = 0
    for child in module.children():
        folded += fold_batchnorm(child)
    names = list(module._modules)
    if isinstance(module, nn.Sequential):
        pairs = list(zip(names, names[1:], strict=False))
    else:
        pairs = [(n, "bn" + n[4:]) for n in names if n.startswith("conv") and "bn" + n[4:] in module._modules]
    for conv_name, bn_name in pairs:
        conv, bn = module._modules[conv_name], module._modules[bn_name]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and not bn.training:
            module._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
            module._modules[bn_name] = nn.Identity()
            folded += 1
    return folded


def fast_linears(module: nn.Module) -> int:
    """Replace every ``nn.Linear`` (LoRA merged first) under ``module`` by a :class:`FastLinear`; how many."""
    replaced = 0
    for name, child in list(module.named_children()):
        merged = _merged_lora(child)
        if merged is not None:
            child = merged
        if isinstance(child, nn.Linear):
            setattr(module, name, FastLinear.from_linear(child))
            replaced += 1
        else:
            replaced += fast_linears(child)
    return replaced


def fast_encoders(module: nn.Module) -> int:
    """Replace every norm-free ``nn.TransformerEncoder`` under ``module`` by a Sequential of
    :class:`EncoderBlock` (same weights); returns how many layers were converted."""
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.TransformerEncoder) and child.norm is None:
            setattr(module, name, nn.Sequential(*(EncoderBlock(layer) for layer in child.layers)))
            replaced += len(child.layers)
        else:
            replaced += fast_encoders(child)
    return replaced


@torch.no_grad()
def optimize_for_inference(model: Detector) -> Detector:
    """Rewrite a loaded GazeCLIP for the test path, in place, and return it (eval mode, frozen).

    Outputs equal the original's to float rounding (tests: 1e-5). The model can no longer
    be trained or saved as a model folder (BatchNorm is gone, LoRA is merged), but autograd
    still runs through it (Grad-CAM). Other architectures (the baselines) are only put in
    eval mode: their timm modules are not rewritten.
    """
    model.eval().requires_grad_(False)
    if not isinstance(model, GazeCLIP):
        return model
    model.lre = None  # the test path never runs the text tower
    if model.gaze_encoder is not None:
        fold_batchnorm(model.gaze_encoder.estimator)
        model.gaze_encoder.estimator.to(memory_format=torch.channels_last)
    if model.agpm is not None:
        fold_batchnorm(model.agpm.encoder)
        model.agpm.encoder.to(memory_format=torch.channels_last)
        fast_encoders(model.agpm)
    fast_linears(model)
    return model
