"""`gazeclip weights fetch`: download through open_clip's own mechanism, then store as safetensors.

Runs only when the user asks, on a machine with internet. The ETH-XGaze checkpoint has no
registry; for it the result says where to get it and where to put it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gazeclip_cli.core.errors import WeightsError
from gazeclip_cli.core.weights.locate import KNOWN_WEIGHTS, sha256_file


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


def fetch_weight(
    name: str,
    directory: Path,
    open_clip_name: str = "ViT-B-32-quickgelu",
    open_clip_tag: str = "openai",
    download: Callable[[str, str, Path], Path] = _open_clip_download,
) -> FetchResult:
    """Fetch weight ``name`` into ``directory`` (as ``<name>.safetensors``)."""
    spec = KNOWN_WEIGHTS.get(name)
    if spec is None:
        raise WeightsError(f"unknown weight '{name}' (known: {', '.join(sorted(KNOWN_WEIGHTS))})")
    if not spec.fetchable:
        return FetchResult(
            name,
            None,
            None,
            f"cannot be downloaded automatically: {spec.how_to_get}; put it at {directory / name}.pth.tar",
        )
    directory.mkdir(parents=True, exist_ok=True)
    downloaded = download(open_clip_name, open_clip_tag, directory / ".cache")
    from gazeclip_cli.core.weights.loading import read_state_dict  # torch + open_clip: only when fetching

    state = read_state_dict(downloaded)
    from gazeclip_cli.core.weights.store import save_safetensors

    target = save_safetensors(
        {k: v.contiguous() for k, v in state.items()}, directory / f"{name}.safetensors"
    )
    return FetchResult(
        name, target, sha256_file(target), f"downloaded {open_clip_name}/{open_clip_tag} via open_clip"
    )
