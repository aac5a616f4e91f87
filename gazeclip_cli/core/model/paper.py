"""The paper's efficiency rows (Tables VII and IX) beside the architectures that reproduce them.

``model-info`` and ``compare`` print ours beside these; docs/DECISIONS.md says where they differ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class PaperRow:
    """One method's efficiency figures as the paper reports them."""

    method: str  # the row's label in the paper
    table: str  # where the figures are printed
    params_m: float  # parameters, millions
    gflops: float  # the paper's "FLOPs (G)": multiply-adds by the counts of its baselines (SPEC section 7)
    seconds_per_image: float | None  # inference time on the paper's A100; None where not given

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


OURS = PaperRow("GazeCLIP (Ours)", "VII", 204.40, 17.65, 0.192)
RESNET = PaperRow("ResNet [59]", "VII", 11.19, 1.82, 0.004)
XCEPTION = PaperRow("Xception [57]", "VII", 20.83, 4.64, 0.006)
VIT = PaperRow("ViT [58]", "VII", 85.63, 16.88, 0.007)
CLIP = PaperRow("CLIP [12]", "VII", 84.26, 15.91, 0.023)
CLIP_AWS = PaperRow("CLIP w/ AWS", "IX", 84.26, 15.91, None)

# Architecture name -> the paper's row it reproduces. A tiny variant points at its family's row,
# which it does not match (it is small on purpose): the figure says what the full size should give.
PAPER_ROWS: dict[str, PaperRow] = {
    "gazeclip-vit-b-32": OURS,
    "tiny-test": OURS,
    "demo-small": OURS,
    "resnet-18": RESNET,
    "tiny-test-resnet": RESNET,
    "xception": XCEPTION,
    "tiny-test-xception": XCEPTION,
    "vit-b-16": VIT,
    "tiny-test-vit": VIT,
    "clip-vit-b-32": CLIP,
    "tiny-test-clip": CLIP,
    "clip-vit-b-32-aws": CLIP_AWS,
}


def paper_row(architecture: str) -> PaperRow | None:
    """The paper's row for an architecture name, or None (a ``timm:`` model, a user's file)."""
    return PAPER_ROWS.get(architecture)
