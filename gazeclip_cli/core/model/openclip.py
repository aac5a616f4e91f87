"""open_clip's CLIP classes, imported without its optional Hugging Face and timm towers.

open_clip imports ``transformers`` (1-2 s, with SciPy) and ``timm`` when installed, for towers
this project never builds; they are kept out while open_clip is first imported.
"""

from __future__ import annotations

import sys

_OPTIONAL = ("transformers", "timm")  # open_clip's hf_model and timm_model treat an ImportError as absent


def _import_open_clip() -> None:
    if "open_clip" in sys.modules:
        return
    blocked = [name for name in _OPTIONAL if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # an import of it raises ImportError
    try:
        import open_clip  # noqa: F401
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]  # later imports (peft, the timm family) load them normally


_import_open_clip()

from open_clip.model import CLIP, resize_pos_embed  # noqa: E402
from open_clip.tokenizer import SimpleTokenizer  # noqa: E402
from open_clip.transformer import VisionTransformer  # noqa: E402

__all__ = ["CLIP", "SimpleTokenizer", "VisionTransformer", "resize_pos_embed"]
