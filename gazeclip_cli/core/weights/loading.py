"""Reading weight files into the CLIP model and the gaze estimator, with clear errors.

Nothing is unpickled freely: safetensors first; torch files with ``weights_only=True``;
OpenAI's TorchScript archive (``ViT-B-32.pt``) through ``torch.jit.load``, which restores
tensors and TorchScript code, never arbitrary Python objects.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from open_clip.model import CLIP, resize_pos_embed
from torch import nn

from gazeclip_cli.core.errors import WeightsError
from gazeclip_cli.core.weights.locate import KNOWN_WEIGHTS

if TYPE_CHECKING:  # the model layer sits above this one: its types only
    from gazeclip_cli.core.model.gaze_estimator import GazeEstimator


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weight file (safetensors, torch pickle with weights_only, or TorchScript)."""
    path = Path(path)
    try:
        if path.name.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        if _is_torchscript(path):
            module = torch.jit.load(str(path), map_location="cpu")
            state = dict(module.state_dict())
            for key in ("input_resolution", "context_length", "vocab_size"):
                state.pop(key, None)
            return state
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except WeightsError:
        raise
    except Exception as exc:  # every reader has its own exception types; all mean "unreadable"
        raise WeightsError(
            f"{path}: cannot read weights ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    return obj


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _load_strict(
    model: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str, hint: str = ""
) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} of wrong shape (e.g. {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
            )
        raise WeightsError(f"{path}: does not fit the {what}: {'; '.join(parts)}{hint}")
    model.load_state_dict(state, strict=True)


def load_clip_weights(model: CLIP, path: Path) -> None:
    """Load CLIP weights (OpenAI or open_clip format) into ``model``, resizing the image position grid.

    224-pixel ViT-B/32 weights have a 7x7 (+1) position embedding; the 256-pixel tower
    has 8x8 (+1): open_clip's ``resize_pos_embed`` interpolates it bicubically.
    """
    state = _strip_prefix(read_state_dict(path), "module.")
    if "logit_scale" in state and state["logit_scale"].ndim != model.logit_scale.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    resize_pos_embed(state, model)
    _load_strict(model, state, path, "CLIP model of this architecture")


def load_gaze_weights(estimator: GazeEstimator, path: Path) -> None:
    """Load a gaze estimator's released checkpoint (its official layout) or a state dict saved from ours.

    A file that does not fit is one line naming the file, the misfit and what to put there.
    """
    state = estimator.from_release(_strip_prefix(read_state_dict(path), "module."))
    spec = KNOWN_WEIGHTS.get(estimator.weights_name)
    hint = f"; replace it with the {spec.description}: {spec.how_to_get}" if spec else ""
    _load_strict(estimator, state, path, f"gaze estimator {estimator.name or type(estimator).__name__}", hint)
