"""The inference rewrite of the test path (core/model/optimize.py) keeps every output to 1e-5."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gazeclip_cli.core.inference.gradcam import grad_cam
from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
from gazeclip_cli.core.model.config import load_architecture
from gazeclip_cli.core.model.optimize import (
    FastLinear,
    FusedBottleneck,
    FusedConv,
    fold_batchnorm,
    fuse_conv_relu,
    optimize_for_inference,
)

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _trained_looking(arch: str, **overrides) -> nn.Module:
    """A model whose BatchNorm statistics, LoRA and gaze injectors are not at their identity start,
    so that folding and merging have something to get wrong."""
    model = build_gazeclip(load_architecture(arch, **overrides), WeightSources(pretrained=False), seed=3)
    model.eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.normal_(1, 0.2, generator=g)
                m.bias.normal_(0, 0.2, generator=g)
            if hasattr(m, "lora_B"):
                for lin in m.lora_B.values():
                    lin.weight.normal_(0, 0.05, generator=g)
            if type(m).__name__ == "GazeInjector":
                m.w_fc.weight.normal_(0, 0.05, generator=g)
    return model


@pytest.mark.parametrize(
    ("arch", "overrides"),
    [
        ("tiny-test", {}),
        ("demo-small", {}),
        ("tiny-test", {"experts": ("attribution",)}),  # Fig. 9: one expert alone
        ("tiny-test", {"experts": ("detection",)}),
        ("tiny-test", {"prompt_levels": (1,)}),  # Table XI: every fake class shares one prompt set
        ("tiny-test", {"prompt_levels": (1, 2)}),
    ],
)
def test_optimized_test_path_equals_the_original(arch, overrides):
    model = _trained_looking(arch, **overrides)
    fast = optimize_for_inference(copy.deepcopy(model))
    # Nothing of what was rewritten is left: no BatchNorm, no plain Linear, no fused encoder layer.
    kinds = {type(m) for m in fast.modules()}
    assert not kinds & {nn.BatchNorm2d, nn.Linear, nn.TransformerEncoderLayer, nn.ReLU}, kinds
    assert FusedConv in kinds  # every convolution + ReLU of the estimator and the AGPM encoder is one kernel
    assert fast.lre is None
    size = model.cfg.clip.vision.image_size
    g = torch.Generator().manual_seed(1)
    images, patches = torch.rand(5, 3, size, size, generator=g), torch.rand(5, 3, 224, 224, generator=g)
    with torch.inference_mode():
        ref, out = model(images, patches), fast(images, patches)
    experts = overrides.get("experts", ("attribution", "detection"))
    for name in ("attribution_logits", "detection_logits", "visual_features", "gaze"):
        if name.split("_")[0] in ("attribution", "detection") and name.split("_")[0] not in experts:
            assert getattr(out, name) is None and getattr(ref, name) is None, name  # the absent expert
            continue
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), **TOL, msg=name)
    if "detection" in experts:
        torch.testing.assert_close(out.detection_logits.softmax(-1), ref.detection_logits.softmax(-1), **TOL)


def test_grad_cam_runs_through_the_optimized_model_and_agrees():
    model = _trained_looking("tiny-test")
    fast = optimize_for_inference(copy.deepcopy(model))
    g = torch.Generator().manual_seed(2)
    image, patch = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 224, 224, generator=g)
    ref, out = grad_cam(model, image, patch), grad_cam(fast, image, patch)
    assert out.class_index == ref.class_index
    torch.testing.assert_close(
        torch.from_numpy(out.heatmap), torch.from_numpy(ref.heatmap), rtol=1e-4, atol=1e-4
    )


def test_fast_linear_equals_linear_with_and_without_autograd():
    g = torch.Generator().manual_seed(4)
    lin = nn.Linear(24, 40)
    fast = FastLinear.from_linear(lin)
    x = torch.randn(3, 7, 24, generator=g)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), lin(x), **TOL)
    x.requires_grad_(True)
    y = fast(x)  # autograd on: plain F.linear, so the gradient is torch's
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, lin.weight.sum(0).expand(3, 7, 24), **TOL)
    torch.testing.assert_close(y, F.linear(x, lin.weight, lin.bias), **TOL)


def test_fast_linear_gelu_and_residual_equal_the_unfused_steps():
    g = torch.Generator().manual_seed(8)
    lin = nn.Linear(16, 16)
    x, residual = torch.randn(3, 5, 16, generator=g), torch.randn(3, 5, 16, generator=g)
    with torch.no_grad():
        y = x @ lin.weight.T + lin.bias
        gelu = 0.5 * y * (1 + torch.erf(y / 2**0.5))  # exact GELU, written out
    for grad in (False, True):  # oneDNN post-ops, then plain F.linear with autograd
        with torch.set_grad_enabled(grad):
            torch.testing.assert_close(FastLinear(lin.weight, lin.bias, gelu=True)(x), gelu, **TOL)
            torch.testing.assert_close(FastLinear.from_linear(lin)(x, residual), y + residual, **TOL)


@pytest.mark.filterwarnings("ignore:.*torch.jit.trace.*:FutureWarning")
def test_a_traced_optimized_model_records_plain_ops_with_the_same_outputs():
    # An ONNX export (TorchScript tracing) must see ops that have an ONNX form, not oneDNN's.
    model = optimize_for_inference(_trained_looking("tiny-test"))
    g = torch.Generator().manual_seed(9)
    images, patches = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 224, 224, generator=g)
    with torch.no_grad():
        traced = torch.jit.trace(lambda i, p: model(i, p).detection_logits, (images, patches))
        graph = str(traced.inlined_graph)
        assert "aten::conv2d" in graph or "aten::_convolution" in graph
        assert "mkldnn" not in graph
        torch.testing.assert_close(traced(images, patches), model(images, patches).detection_logits, **TOL)


def test_fold_batchnorm_counts_the_resnet_pairs():
    from gazeclip_cli.core.model.gaze_estimator import EthXGazeResNet50

    est = EthXGazeResNet50().eval()
    # ResNet-50: the stem, 16 bottlenecks x 3 convs, 4 downsample convs = 53 conv + BN pairs.
    assert fold_batchnorm(est) == 53
    assert not any(isinstance(m, nn.BatchNorm2d) for m in est.modules())


def _registered_estimators() -> list[str]:
    from gazeclip_cli.core.model.gaze_estimator import GAZE_ESTIMATORS

    return sorted(GAZE_ESTIMATORS)


@pytest.mark.parametrize("name", _registered_estimators())
def test_folding_keeps_every_registered_gaze_estimator(name):
    # The pairing of conv{k}/bn{k} by name must hold for every estimator the predictor may fold.
    from gazeclip_cli.core.model.gaze_estimator import GAZE_ESTIMATORS

    torch.manual_seed(5)
    est = GAZE_ESTIMATORS[name]().eval()
    with torch.no_grad():
        for m in est.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    folded = copy.deepcopy(est)
    assert fold_batchnorm(folded) > 0
    folded.to(memory_format=torch.channels_last)
    fused = copy.deepcopy(folded)
    assert fuse_conv_relu(fused) > 0
    assert not any(isinstance(m, nn.ReLU) for m in fused.modules())  # every ReLU went into a conv
    patch = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(folded(patch), est(patch), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fused(patch), folded(patch), **TOL)  # the fusion alone: 1e-5


def test_fuse_conv_relu_counts_the_resnet_convs_and_keeps_autograd():
    from gazeclip_cli.core.model.gaze_estimator import EthXGazeResNet50

    torch.manual_seed(6)
    est = EthXGazeResNet50().eval()
    fold_batchnorm(est)
    fused = copy.deepcopy(est)
    # The stem and 16 bottlenecks x 3 convs take their ReLU (the last with the residual sum);
    # the 4 downsample convs have none.
    assert fuse_conv_relu(fused) == 1 + 16 * 3
    assert sum(isinstance(m, FusedBottleneck) for m in fused.modules()) == 16
    patch = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(fused(patch), est(patch), **TOL)
    with torch.enable_grad():  # autograd on: the unfused F.conv2d path, same values
        torch.testing.assert_close(fused(patch), est(patch), **TOL)


def test_fused_conv_equals_conv_sum_relu_on_both_paths():
    g = torch.Generator().manual_seed(7)
    conv = nn.Conv2d(6, 10, 3, stride=2, padding=1)
    x = torch.randn(2, 6, 9, 9, generator=g)
    residual = torch.randn(2, 10, 5, 5, generator=g)
    with torch.no_grad():
        expected = torch.clamp(F.conv2d(x, conv.weight, conv.bias, 2, 1) + residual, min=0)
        expected_plain = F.conv2d(x, conv.weight, conv.bias, 2, 1)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            torch.testing.assert_close(FusedConv(conv, relu=True)(x, residual), expected, **TOL)
            torch.testing.assert_close(FusedConv(conv, relu=False)(x), expected_plain, **TOL)
    # Channels-last, without autograd: the sum accumulates into the residual's own buffer.
    cl = torch.channels_last
    fused = FusedConv(conv.to(memory_format=cl), relu=True)
    buffer = residual.contiguous(memory_format=cl)
    with torch.inference_mode():
        out = fused(x.contiguous(memory_format=cl), buffer, overwrite=True)
    assert out.data_ptr() == buffer.data_ptr()
    torch.testing.assert_close(out, expected, **TOL)
