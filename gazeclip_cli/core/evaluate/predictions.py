"""The one prediction loop over a cache split, and its rows grouped into the paper's test sets.

``evaluate`` and training's validation both call :func:`predict_dataset` and
:func:`evaluate_rows`, so the best epoch is chosen by the numbers ``evaluate`` prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from gazeclip_cli.core import distributed as D
from gazeclip_cli.core.data.cache import CacheRow
from gazeclip_cli.core.devices import autocast_for
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.evaluate.metrics import DEFAULT_TAU, EvaluationReport, SetPredictions, evaluate_sets
from gazeclip_cli.core.model.detector import Detector

Progress = Callable[[str, dict[str, Any]], None]


@torch.no_grad()
def predict_dataset(
    model: Detector,
    dataset: Dataset,
    device: torch.device,
    batch_size: int,
    workers: int = 0,
    *,
    ctx: D.DistContext = D.DistContext(),
    amp: str = "off",
    progress: Progress | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Softmax attribution (N, x) and detection (N, 2) probabilities for every item, in dataset order.

    An expert the model does not have (the paper's Fig. 9 ablation) gives None.

    Under torchrun each rank predicts its shard and every rank gets all rows back. Items are
    :class:`~gazeclip_cli.core.data.cache.CacheDataset`'s: ``image``, ``gaze`` or ``patch``,
    ``dfa``, ``index``. Only the probabilities are kept, so memory is bounded by the batch.
    """
    model.eval()
    indices = D.shard(list(range(len(dataset))), ctx)
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, num_workers=workers, shuffle=False)
    keep_on = device if ctx.enabled else torch.device("cpu")  # the gather runs on the device
    has_att, has_det = "attribution" in model.experts, "detection" in model.experts
    att, det, idx = [], [], []
    done = 0
    for batch in loader:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast_for(device, amp):
            out = model(batch["image"], gaze_patches=batch.get("patch"), gaze=batch.get("gaze"))
        if has_att:
            att.append(out.attribution_logits.float().softmax(-1).to(keep_on))
        if has_det:
            det.append(out.detection_logits.float().softmax(-1).to(keep_on))
        idx.append(batch["index"].to(keep_on))
        done += len(batch["index"])
        if progress:
            progress("predict", {"done": done, "total": len(indices)})
    a = torch.cat(att) if att else torch.zeros(0, model.cfg.num_classes, device=keep_on)
    d = torch.cat(det) if det else torch.zeros(0, 2, device=keep_on)
    i = torch.cat(idx) if idx else torch.zeros(0, dtype=torch.long, device=keep_on)
    if ctx.enabled:
        a, d, i = D.all_gather_tensor(a, ctx), D.all_gather_tensor(d, ctx), D.all_gather_tensor(i, ctx)
    first: dict[int, int] = {}
    for pos, k in enumerate(i.tolist()):
        first.setdefault(k, pos)  # the shards' padding repeats a few rows: keep the first
    order = torch.tensor([first[k] for k in range(len(dataset))], dtype=torch.long, device=a.device)
    return (a[order].cpu().numpy() if has_att else None), (d[order].cpu().numpy() if has_det else None)


def prediction_sets(
    rows: Sequence[CacheRow], att: np.ndarray | None, det: np.ndarray | None
) -> dict[str, SetPredictions]:
    """One test set per generator (and per real source), in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.generator, []).append(i)
    out = {}
    for name, idx in groups.items():
        ix = np.array(idx)
        videos = [rows[i].video_id for i in idx]
        out[name] = SetPredictions(
            attribution_probs=None if att is None else att[ix],
            detection_probs=None if det is None else det[ix],
            dfa_labels=np.array([rows[i].dfa for i in idx]),
            dfd_labels=np.array([rows[i].dfd for i in idx]),
            video_ids=np.array(videos) if any(videos) else None,
        )
    return out


def real_pairing(rows: Sequence[CacheRow]) -> dict[str, str]:
    """Pair all-fake seen sets with the seen real set, all-fake unseen sets with the unseen real set."""
    seen_real = next((r.generator for r in rows if r.dfd == 0 and r.dfa >= 0), None)
    unseen_real = next((r.generator for r in rows if r.dfd == 0 and r.dfa < 0), None)
    pairing = {}
    for r in rows:
        if r.dfd == 1 and r.generator not in pairing:
            partner = unseen_real if r.dfa < 0 else seen_real
            partner = partner or seen_real or unseen_real
            if partner:
                pairing[r.generator] = partner
    return pairing


def evaluate_rows(
    rows: Sequence[CacheRow], att: np.ndarray | None, det: np.ndarray | None, tau: float = DEFAULT_TAU
) -> EvaluationReport:
    """The paper's metrics of a split's predictions: sets per generator, reals paired as ``evaluate`` pairs them."""
    return evaluate_sets(prediction_sets(rows, att, det), tau=tau, pair_reals=real_pairing(rows))


def check_classes(class_names: Sequence[str], rows: Sequence[CacheRow], split: str) -> None:
    """Every seen row's DFA label must name the class the model gives that label.

    Raises:
        DataError: a row's label is another class's, or no class's, in the model.
    """
    for r in rows:
        if r.dfa >= 0 and (r.dfa >= len(class_names) or class_names[r.dfa] != r.generator):
            expected = class_names[r.dfa] if r.dfa < len(class_names) else "nothing"
            raise DataError(
                f"{split} row '{r.generator}' has DFA label {r.dfa}, which this model calls {expected!r}; "
                "use the protocol the model was trained on"
            )
