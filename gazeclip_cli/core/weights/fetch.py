"""`gazeclip weights fetch`: download through open_clip's or timm's own mechanism, store as safetensors.

Runs only when the user asks, on a machine with internet. The gaze estimators' checkpoints
have no registry; for them the result says where to get them and where to put them. timm
weights are kept in timm's own key layout (classifier included), as the baselines' loader expects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gazeclip_cli.core.errors import WeightsError
from gazeclip_cli.core.weights.locate import KNOWN_WEIGHTS, sha256_file, weight_spec

if TYPE_CHECKING:
    import torch


@dataclass
class FetchResult:
    name: str
    path: Path | None  # where the weights now are; None when the user must fetch by hand
    sha256: str | None
    instructions: str  # what was done, or what to do


def _open_clip_download(model_name: str, tag: str, cache_dir: Path) -> Path:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        raise WeightsError(f"open_clip has no pretrained weights '{tag}' for '{model_name}'")
    try:
        return Path(open_clip.download_pretrained(cfg, cache_dir=str(cache_dir)))
    except Exception as exc:  # network errors come from urllib, requests or huggingface_hub
        raise WeightsError(
            f"download of {model_name}/{tag} failed ({type(exc).__name__}); this needs internet. "
            f"On an offline machine copy the file into {cache_dir.parent} instead"
        ) from None


def _timm_download(timm_name: str) -> dict[str, torch.Tensor]:
    """timm's pretrained weights of ``<model>.<tag>``, through timm (Hugging Face hub or its URL)."""
    import timm

    model_name, _, tag = timm_name.partition(".")
    if not timm.is_model(model_name):
        raise WeightsError(f"unknown timm model '{model_name}' (see timm.list_models())")
    try:
        model = timm.create_model(model_name, pretrained=True, pretrained_cfg=tag or None)
    except Exception as exc:  # network errors come from urllib, requests, httpx or huggingface_hub
        raise WeightsError(
            f"download of timm {timm_name} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
            "this needs internet. On an offline machine copy timm's model.safetensors into the weights folder"
        ) from None
    return model.state_dict()


def fetch_weight(
    name: str,
    directory: Path,
    open_clip_name: str = "ViT-B-32-quickgelu",
    open_clip_tag: str = "openai",
    download: Callable[[str, str, Path], Path] = _open_clip_download,
    timm_download: Callable[[str], dict[str, torch.Tensor]] = _timm_download,
) -> FetchResult:
    """Fetch weight ``name`` into ``directory`` (as ``<name>.safetensors``)."""
    spec = weight_spec(name)
    if spec is None:
        raise WeightsError(
            f"unknown weight '{name}' (known: {', '.join(sorted(KNOWN_WEIGHTS))}, or timm-<model>.<tag>)"
        )
    if not spec.fetchable:
        return FetchResult(
            name,
            None,
            None,
            f"cannot be downloaded automatically: {spec.how_to_get}; put it at {directory / spec.put_at}",
        )
    directory.mkdir(parents=True, exist_ok=True)
    if spec.timm_name:
        state = timm_download(spec.timm_name)
        how = f"downloaded {spec.timm_name} via timm"
    else:
        downloaded = download(open_clip_name, open_clip_tag, directory / ".cache")
        from gazeclip_cli.core.weights.loading import read_state_dict  # torch + open_clip: only when fetching

        state = read_state_dict(downloaded)
        how = f"downloaded {open_clip_name}/{open_clip_tag} via open_clip"
    from gazeclip_cli.core.weights.store import save_safetensors

    # clone: safetensors refuses tensors that share memory (tied weights)
    tensors = {k: v.detach().clone().contiguous() for k, v in state.items()}
    target = save_safetensors(tensors, directory / f"{name}.safetensors")
    return FetchResult(name, target, sha256_file(target), how)
