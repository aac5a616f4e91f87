"""Table V's gaze estimators: each loads its released checkpoint layout (written here with random
values, key names as the upstream code saves them) and reads its input as its upstream code does."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

from gazeclip_cli.core.errors import ConfigError, WeightsError
from gazeclip_cli.core.model.builder import WeightSources, build_frozen_gaze_estimator
from gazeclip_cli.core.model.gaze_estimator import GAZE_ESTIMATORS, build_gaze_estimator, estimator_config
from gazeclip_cli.core.train.run_config import RunConfig, model_config

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# --- the upstream layouts, written out from the architectures (not from our modules) -------------


def _conv(state, name, c_out, c_in, k, g):
    state[f"{name}.weight"] = torch.randn(c_out, c_in, k, k, generator=g) * math.sqrt(2.0 / (c_in * k * k))


def _bn(state, name, c, g):
    # Small scales keep a random ResNet's activations finite in eval mode.
    state[f"{name}.weight"] = 0.1 + 0.3 * torch.rand(c, generator=g)
    state[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)
    state[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=g)
    state[f"{name}.running_var"] = 0.5 + torch.rand(c, generator=g)
    state[f"{name}.num_batches_tracked"] = torch.tensor(1000)


def resnet50_trunk(prefix: str, g: torch.Generator) -> dict[str, torch.Tensor]:
    """A ResNet-50 v1.5 trunk's keys (conv1 .. layer4, no fc), as PureGaze's ResFeature and L2CS name them."""
    state: dict[str, torch.Tensor] = {}
    _conv(state, f"{prefix}conv1", 64, 3, 7, g)
    _bn(state, f"{prefix}bn1", 64, g)
    c_in = 64
    for layer, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True), start=1):
        for b in range(blocks):
            p = f"{prefix}layer{layer}.{b}."
            _conv(state, p + "conv1", width, c_in, 1, g)
            _bn(state, p + "bn1", width, g)
            _conv(state, p + "conv2", width, width, 3, g)
            _bn(state, p + "bn2", width, g)
            _conv(state, p + "conv3", 4 * width, width, 1, g)
            _bn(state, p + "bn3", 4 * width, g)
            if b == 0:
                _conv(state, p + "downsample.0", 4 * width, c_in, 1, g)
                _bn(state, p + "downsample.1", 4 * width, g)
            c_in = 4 * width
    return state


def puregaze_release(g: torch.Generator) -> dict[str, torch.Tensor]:
    """`torch.save(net.state_dict())` of PureGaze's Model: feature (ResFeature), gazeEs, deconv (ResDeconv)."""
    state = resnet50_trunk("feature.", g)
    state["gazeEs.fc.weight"] = 0.02 * torch.randn(2, 2048, generator=g)
    state["gazeEs.fc.bias"] = 0.1 * torch.randn(2, generator=g)
    c_in = 2048
    for index, planes in zip(
        (1, 3, 5, 7, 9), (256, 128, 64, 32, 16), strict=True
    ):  # Upsample at even indices
        for b in range(2):  # two BasicBlocks per stage
            p = f"deconv.deconv.{index}.{b}."
            _conv(state, p + "conv1", planes, c_in, 3, g)
            _bn(state, p + "bn1", planes, g)
            _conv(state, p + "conv2", planes, planes, 3, g)
            _bn(state, p + "bn2", planes, g)
            if b == 0:
                _conv(state, p + "downsample.0", planes, c_in, 1, g)
                _bn(state, p + "downsample.1", planes, g)
            c_in = planes
    _conv(state, "deconv.deconv.10", 3, 16, 1, g)
    state["deconv.deconv.10.bias"] = torch.zeros(3)
    return state


def l2cs_release(g: torch.Generator, bins: int = 90) -> dict[str, torch.Tensor]:
    """`torch.save(model.state_dict())` of L2CS(Bottleneck, [3, 4, 6, 3], bins), fc_finetune included."""
    state = resnet50_trunk("", g)
    for head in ("fc_yaw_gaze", "fc_pitch_gaze"):
        state[f"{head}.weight"] = 0.05 * torch.randn(bins, 2048, generator=g)
        state[f"{head}.bias"] = torch.randn(bins, generator=g)
    state["fc_finetune.weight"] = torch.randn(3, 2048 + 3, generator=g)
    state["fc_finetune.bias"] = torch.randn(3, generator=g)
    return state


def reference_resnet(trunk: dict[str, torch.Tensor], prefix: str) -> torch.nn.Module:
    """torchvision's ResNet-50 holding the trunk, pooled features out: an independent forward."""
    net = torchvision.models.resnet50(weights=None)
    net.fc = torch.nn.Identity()
    net.load_state_dict({k.removeprefix(prefix): v for k, v in trunk.items()}, strict=True)
    return net.eval()


def pil_bilinear(patch: torch.Tensor, size: int) -> np.ndarray:
    """(B, 3, S, S) -> (B, 3, size, size) float, resized channel by channel with PIL as torchvision's Resize does."""
    out = np.empty((patch.shape[0], 3, size, size), dtype=np.float32)
    for b in range(patch.shape[0]):
        for c in range(3):
            channel = Image.fromarray(patch[b, c].numpy().astype(np.float32), mode="F")
            out[b, c] = np.asarray(channel.resize((size, size), Image.BILINEAR))
    return out


@pytest.fixture(scope="module")
def patch():
    return torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(5))


def load(name: str, folder):
    estimator, path = build_frozen_gaze_estimator(estimator_config(name), WeightSources(directory=folder))
    return estimator, path


# --- PureGaze ---------------------------------------------------------------------------------------


def test_puregaze_release_loads_and_reads_bgr_pixels_without_mean_std(tmp_path, patch):
    release = puregaze_release(torch.Generator().manual_seed(1))
    torch.save(release, tmp_path / "puregaze.pt")  # the release is a plain torch state dict
    estimator, path = load("puregaze", tmp_path)
    assert path == tmp_path / "puregaze.pt"

    trunk = {k: v for k, v in release.items() if k.startswith("feature.")}
    with torch.no_grad():
        out = estimator(patch)
        bgr = patch[:, [2, 1, 0]]  # cv2.imread order; ToTensor only divides by 255
        expected = reference_resnet(trunk, "feature.")(bgr) @ release["gazeEs.fc.weight"].T
        expected += release["gazeEs.fc.bias"]
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    assert torch.allclose(out, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out[0], out[1])  # the two patches give two gazes


# --- L2CS-Net ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def l2cs(tmp_path_factory):
    """The release (random values) in upstream's folder layout, and the estimator loaded from it."""
    folder = tmp_path_factory.mktemp("weights")
    release = l2cs_release(torch.Generator().manual_seed(2))
    (folder / "l2cs-gaze360").mkdir()
    torch.save(release, folder / "l2cs-gaze360" / "L2CSNet_gaze360.pkl")  # the file name upstream ships
    estimator, path = load("l2cs-gaze360", folder)
    return release, estimator, path


def test_l2cs_release_loads_and_reads_a_448_rgb_face_with_imagenet_statistics(l2cs, patch):
    release, estimator, path = l2cs
    assert path.name == "L2CSNet_gaze360.pkl"
    one = patch[:1]
    # Upstream: PIL Resize(448) bilinear, ToTensor, Normalize(ImageNet); RGB.
    x = (pil_bilinear(one, 448) - IMAGENET_MEAN[None, :, None, None]) / IMAGENET_STD[None, :, None, None]
    trunk = {k: v for k, v in release.items() if not k.startswith("fc_")}
    with torch.no_grad():
        features = reference_resnet(trunk, "")(torch.from_numpy(x)).double().numpy()
        out = estimator(one)

    def degrees(head: str) -> np.ndarray:  # upstream: sum(softmax * idx) * 4 - 180
        w, b = release[f"{head}.weight"].double().numpy(), release[f"{head}.bias"].double().numpy()
        logits = features @ w.T + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return (p * np.arange(90)).sum(axis=1) * 4 - 180

    expected = np.radians(np.stack([degrees("fc_pitch_gaze"), degrees("fc_yaw_gaze")], axis=1))
    assert out.shape == (1, 2)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_l2cs_bins_are_read_as_the_softmax_expectation_pitch_first(l2cs):
    _, loaded, _ = l2cs
    estimator = copy.deepcopy(loaded)
    with torch.no_grad():
        for head in (estimator.fc_yaw_gaze, estimator.fc_pitch_gaze):
            head.weight.zero_()
            head.bias.zero_()
        estimator.fc_yaw_gaze.bias[50] = 60.0  # bin 50: 4 * 50 - 180 = +20 degrees of yaw
        estimator.fc_pitch_gaze.bias[[40, 41]] = 60.0  # bins 40 and 41 equally: 4 * 40.5 - 180 = -18 degrees
        out = estimator(torch.rand(1, 3, 224, 224))
    assert torch.allclose(out, torch.tensor([[math.radians(-18.0), math.radians(20.0)]]), atol=1e-6)

    # Under bf16 autocast (training on CUDA) the expectation stays float32: bins 44 and 45 with
    # logits 60 and 60.5 (exact in bf16) give E = 44 + e^0.5 / (1 + e^0.5) = 44.6225, which bf16
    # would round to 44.5 (half a degree off).
    with torch.no_grad():
        estimator.fc_yaw_gaze.bias.zero_()
        estimator.fc_yaw_gaze.bias[44], estimator.fc_yaw_gaze.bias[45] = 60.0, 60.5
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yaw = estimator(torch.rand(1, 3, 224, 224))[0, 1]
    share = math.exp(0.5) / (1 + math.exp(0.5))
    assert yaw.dtype == torch.float32
    assert abs(yaw.item() - math.radians(4 * (44 + share) - 180)) < 1e-6


# --- every registered estimator ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GAZE_ESTIMATORS))
def test_every_estimator_loads_a_state_dict_of_its_own(tmp_path, name):
    torch.manual_seed(0)
    source = build_gaze_estimator(estimator_config(name))
    own = {k: v.contiguous() for k, v in source.state_dict().items()}
    assert source.from_release(own).keys() == own.keys()  # our own layout passes unchanged
    save_file(own, str(tmp_path / "own.safetensors"))
    cfg = estimator_config(name)
    target, _ = build_frozen_gaze_estimator(
        cfg, WeightSources(directory=tmp_path, overrides={cfg.weights: tmp_path / "own.safetensors"})
    )
    assert all(torch.equal(v, own[k]) for k, v in target.state_dict().items())


def test_the_small_estimator_gives_b_by_2_and_only_l2cs_resizes_its_input():
    estimator = build_gaze_estimator(estimator_config("small-cnn"))
    with torch.no_grad():
        assert estimator(torch.rand(3, 3, 224, 224)).shape == (3, 2)
    band = torch.rand(2, 3, 60, 140)  # the demo fits the small estimator on eye bands
    assert estimator.normalise(band).shape == band.shape
    assert [n for n, cls in GAZE_ESTIMATORS.items() if cls.input_size is not None] == ["l2cs-gaze360"]


# --- wrong and missing files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "where", "source"),
    [
        ("puregaze", "puregaze.safetensors", "github.com/yihuacheng/PureGaze"),
        ("l2cs-gaze360", "l2cs-gaze360.safetensors", "L2CSNet_gaze360.pkl"),
    ],
)
def test_missing_weights_say_what_to_put_where(tmp_path, name, where, source):
    with pytest.raises(WeightsError) as err:
        load(name, tmp_path)
    message = str(err.value)
    assert f"weight '{name}' not found" in message and str(tmp_path / where) in message
    assert source in message and "\n" not in message


def test_a_checkpoint_of_another_estimator_is_one_line_naming_the_right_one(tmp_path):
    # L2CS-Net's MPIIGaze checkpoints have 28 bins of 3 degrees: not the Gaze360 model.
    torch.save(l2cs_release(torch.Generator().manual_seed(4), bins=28), tmp_path / "l2cs-gaze360.pkl")
    with pytest.raises(WeightsError) as err:
        load("l2cs-gaze360", tmp_path)
    message = str(err.value)
    assert message.startswith(
        f"{tmp_path / 'l2cs-gaze360.pkl'}: does not fit the gaze estimator l2cs-gaze360"
    )
    assert "4 of wrong shape (e.g. fc_pitch_gaze.bias: file (28,) vs model (90,))" in message
    assert "L2CSNet_gaze360.pkl" in message and "\n" not in message

    torch.save({"model_state": resnet50_trunk("gaze_network.", torch.Generator())}, tmp_path / "puregaze.pt")
    with pytest.raises(WeightsError, match=r"does not fit the gaze estimator puregaze.*yihuacheng/PureGaze"):
        load("puregaze", tmp_path)


# --- the config picks the estimator -----------------------------------------------------------------


def test_the_config_picks_the_estimator_and_refuses_another_ones_weights():
    cfg = model_config(RunConfig(model={"gaze": {"name": "l2cs-gaze360", "weights": "l2cs-gaze360"}}))
    assert cfg.gaze.name == "l2cs-gaze360"
    with pytest.raises(
        ConfigError,
        match="gaze.weights 'eth-xgaze' is the eth-xgaze estimator's checkpoint.*"
        "set gaze.weights = 'puregaze'",
    ):
        model_config(RunConfig(model={"gaze": {"name": "puregaze"}}))
    with pytest.raises(ConfigError, match="unknown gaze estimator 'gazetr'.*l2cs-gaze360"):
        estimator_config("gazetr")
