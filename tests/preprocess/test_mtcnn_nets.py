"""The MTCNN networks and NMS loaded without facenet-pytorch or torchvision equal theirs."""

from __future__ import annotations

import pytest
import torch

from gazeclip_cli.core.data import mtcnn_nets


@pytest.mark.parametrize(
    "ours,name,shape",
    [("PNet", "PNet", (2, 3, 40, 52)), ("RNet", "RNet", (5, 3, 24, 24)), ("ONet", "ONet", (5, 3, 48, 48))],
)
def test_networks_equal_facenet_pytorch(ours, name, shape):
    from facenet_pytorch.models import mtcnn

    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = getattr(mtcnn_nets, ours)().eval()(x)
        want = getattr(mtcnn, name)().eval()(x)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    "n,classes", [(0, 1), (1, 1), (300, 1), (300, 4), (1500, 3)]
)  # 1500 x 4 > 4000: per-class path
def test_batched_nms_equals_torchvision(n, classes):
    from torchvision.ops import batched_nms

    g = torch.Generator().manual_seed(n + classes)
    xy = torch.randint(0, 60, (n, 2), generator=g).float()
    wh = torch.randint(1, 30, (n, 2), generator=g).float()
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.randint(0, 20, (n,), generator=g).float() / 20  # many ties: the order must be the kernel's
    idxs = torch.randint(0, classes, (n,), generator=g)
    for threshold in (0.3, 0.5, 0.7):
        want = batched_nms(boxes, scores, idxs, threshold)
        got = mtcnn_nets.batched_nms(boxes, scores, idxs, threshold)
        assert got.dtype == torch.int64
        assert sorted(got.tolist()) == sorted(want.tolist())
        assert torch.equal(scores[got], scores[want])  # best first


def test_nms_by_hand():
    boxes = torch.tensor(
        [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 5]], dtype=torch.float32
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # IoU(0, 1) = 81 / 119 = 0.68; IoU(3, 0) = 50 / 100 = 0.5; box 2 overlaps nothing.
    assert mtcnn_nets.nms(boxes, scores, 0.6).tolist() == [3, 0, 2]
    assert mtcnn_nets.nms(boxes, scores, 0.7).tolist() == [3, 0, 1, 2]
    assert mtcnn_nets.nms(boxes, scores, 0.49).tolist() == [3, 1, 2]  # 0 goes with 3; IoU(3, 1) = 36 / 114
