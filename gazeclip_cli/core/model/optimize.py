"""The test path rewritten for inference: same outputs (to 1e-5), fewer wasted cycles on a CPU.

:func:`optimize_for_inference` folds BatchNorm into convolutions, lays convolutions out
channels-last, merges LoRA, runs every Linear through oneDNN, and runs ReLU, GELU and
residual sums as oneDNN post-ops of the kernel before them; the measurements behind
each step are in ``docs/PERFORMANCE.md`` ("Test-path forward"). Training never uses it.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from gazeclip_cli.core.model.detector import Detector
from gazeclip_cli.core.model.gazeclip import GazeCLIP


def onednn_linear_available() -> bool:
    """Whether torch has oneDNN's fused linear kernel (every x86 and ARM CPU build does)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _runs_onednn(available: bool, x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a fused oneDNN kernel serves this call: fp32 on the CPU, without autograd, and
    not traced (an ONNX export records the plain ops, which have an ONNX form; these do not)."""
    return (
        available
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.jit.is_tracing()
    )


class FastLinear(nn.Module):
    """``nn.Linear`` whose CPU fp32 forward without autograd runs oneDNN's matmul kernel.

    torch's CPU ``F.linear`` calls MKL's sgemm, which on AMD processors takes a generic code
    path at about half of oneDNN's speed (2.2x slower measured on this project's EPYC VM);
    on Intel both are alike. With autograd on (Grad-CAM), on other devices or dtypes it is
    plain ``F.linear``. Shapes: (..., in) -> (..., out).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, gelu: bool = False) -> None:
        super().__init__()
        self.gelu = gelu  # exact (erf) GELU after the product, a oneDNN post-op
        # No copy: the weights stay where loading put them (a model folder's memory-mapped file).
        self.weight = nn.Parameter(weight.detach(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.onednn = onednn_linear_available()

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> FastLinear:
        return cls(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """gelu?(x W^T + b) [+ residual]; ``residual`` (..., out) is summed in the kernel (not with gelu)."""
        if _runs_onednn(self.onednn, x, self.weight) and (residual is None or not self.gelu):
            if residual is not None:
                return torch.ops.mkldnn._linear_pointwise(x, residual, self.weight, self.bias, "add")
            attr, algorithm = ("gelu", "none") if self.gelu else ("none", "")
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, attr, [], algorithm)
        y = F.linear(x, self.weight, self.bias)
        if self.gelu:
            y = F.gelu(y)
        return y if residual is None else y + residual


class FusedConv(nn.Module):
    """A ``Conv2d`` (BatchNorm already folded in) with its ReLU, and optionally a residual sum
    before the ReLU, in one oneDNN kernel (a post-op), under the same conditions as :class:`FastLinear`.

    ``relu=True``: relu(conv(x) [+ residual]); else conv(x) [+ residual]. ``overwrite=True``
    writes the result into ``residual`` (no new output buffer) when its layout allows. With
    autograd on, on other devices or dtypes it is ``F.conv2d`` then the same sum and ReLU.
    Shapes: x (B, C, H, W), residual (B, C', H', W') like the output -> (B, C', H', W').
    """

    def __init__(self, conv: nn.Conv2d, relu: bool) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("only zero-padded convolutions with explicit padding are fused")
        self.weight = nn.Parameter(conv.weight.detach(), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach(), requires_grad=False)
        self.stride, self.padding = list(conv.stride), list(conv.padding)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.relu = relu
        self.onednn = torch.backends.mkldnn.is_available() and hasattr(
            torch.ops.mkldnn, "_convolution_pointwise"
        )

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None, overwrite: bool = False
    ) -> torch.Tensor:
        if _runs_onednn(self.onednn, x, self.weight):
            args = (self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups)
            unary = "relu" if self.relu else None
            if residual is None:
                return torch.ops.mkldnn._convolution_pointwise(x, *args, unary or "none", [], "")
            cl = torch.channels_last
            if overwrite and all(t.is_contiguous(memory_format=cl) for t in (x, self.weight, residual)):
                # oneDNN's "sum" post-op accumulates into the residual's own buffer.
                return torch.ops.mkldnn._convolution_pointwise_(residual, x, *args, "add", 1.0, unary, [], "")
            return torch.ops.mkldnn._convolution_pointwise(x, residual, *args, "add", 1.0, unary, [], "")
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if residual is not None:
            y = y + residual
        return F.relu(y) if self.relu else y


class FusedBottleneck(nn.Module):
    """torchvision's ResNet ``Bottleneck`` (BatchNorm folded) as three :class:`FusedConv`: the
    first two with their ReLU, the last with the residual sum and the final ReLU.

    Without autograd the last convolution accumulates into the residual's buffer: the
    downsample's output, or, in a block without one, the block's input, which in a ResNet is
    the previous block's output and read by nothing else (do not call it on a tensor you keep).
    Shapes: (B, C, H, W) -> (B, C', H / stride, W / stride).
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.conv1 = FusedConv(block.conv1, relu=True)
        self.conv2 = FusedConv(block.conv2, relu=True)
        self.conv3 = FusedConv(block.conv3, relu=True)
        self.downsample = block.downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.conv3(self.conv2(self.conv1(x)), identity, overwrite=True)


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
        self.linear1 = FastLinear(layer.linear1.weight, layer.linear1.bias, gelu=True)
        self.linear2 = FastLinear.from_linear(layer.linear2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, a = x.shape
        h = self.heads
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, h, a // h).permute(2, 0, 3, 1, 4)  # (3, B, h, T, a/h)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, h, T, a/h)
        # The residual sums run inside the projections' kernels (a oneDNN post-op), as GELU does.
        x = self.out_proj(y.transpose(1, 2).reshape(b, n, a), residual=x)  # (B, h, T, a/h) -> (B, T, a)
        return self.linear2(self.linear1(self.norm2(x)), residual=x)


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


def fuse_conv_relu(module: nn.Module) -> int:
    """After :func:`fold_batchnorm`, give every Conv2d its ReLU (and a bottleneck its residual
    sum) as a oneDNN post-op, in place; returns how many convolutions were fused.

    Fused: a Conv2d then (past folded-away Identity layers) a ReLU in an ``nn.Sequential``;
    torchvision's ``Bottleneck`` (:class:`FusedBottleneck`); the stem of a ResNet-layout
    module (``conv1``, ``bn1`` folded, ``relu``, ``maxpool``, ``layer1``: torchvision's ResNet
    and the L2CS trunk, whose forward applies ``relu`` to ``conv1`` alone).
    """
    resnet = sys.modules.get("torchvision.models.resnet")  # loaded whenever a model holds its blocks
    fused = 0
    for name, child in list(module.named_children()):
        if resnet is not None and isinstance(child, resnet.Bottleneck) and _folded(child, 3):
            module._modules[name] = FusedBottleneck(child)
            fused += 3
        else:
            fused += fuse_conv_relu(child)
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for i, name in enumerate(names):
            conv = module._modules[name]
            if type(conv) is not nn.Conv2d:
                continue
            j = i + 1
            while j < len(names) and isinstance(module._modules[names[j]], nn.Identity):
                j += 1
            if j < len(names) and isinstance(module._modules[names[j]], nn.ReLU):
                module._modules[name] = FusedConv(conv, relu=True)
                module._modules[names[j]] = nn.Identity()
                fused += 1
    stem = ("conv1", "bn1", "relu", "maxpool", "layer1")
    if all(n in module._modules for n in stem) and type(module._modules["conv1"]) is nn.Conv2d:
        if isinstance(module._modules["bn1"], nn.Identity) and isinstance(module._modules["relu"], nn.ReLU):
            module._modules["conv1"] = FusedConv(module._modules["conv1"], relu=True)
            module._modules["relu"] = nn.Identity()
            fused += 1
    return fused


def _folded(block: nn.Module, convs: int) -> bool:
    """Whether a ResNet block's ``conv1..conv{convs}`` are plain Conv2d with their BatchNorm folded away."""
    return all(
        type(block._modules.get(f"conv{k}")) is nn.Conv2d
        and isinstance(block._modules.get(f"bn{k}"), nn.Identity)
        for k in range(1, convs + 1)
    )


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
        fuse_conv_relu(model.gaze_encoder.estimator)
    if model.agpm is not None:
        fold_batchnorm(model.agpm.encoder)
        model.agpm.encoder.to(memory_format=torch.channels_last)
        fuse_conv_relu(model.agpm.encoder)
        fast_encoders(model.agpm)
    fast_linears(model)
    return model
