"""GIE: the frozen CLIP image tower (class token and position embedding trainable), a gaze injector per block, LoRA.

Input: images (B, 3, H, H) already normalised for the tower, gaze tokens (B, G, d) or None.
Output: I_ig_g, the class token after the final LayerNorm, (B, d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gazeclip_cli.core.model.clip_towers import add_lora, block_forward, convert_attention, lora_pattern
from gazeclip_cli.core.model.openclip import VisionTransformer

TRAINABLE_EMBEDDINGS = ("class_embedding", "positional_embedding")  # of the CLIP image tower


class GazeInjector(nn.Module):
    """Cross-attention from image tokens (queries) to gaze tokens (keys/values), added back.

    ``query`` selects which tokens ask: "cls" (the paper), "patch" or "all" (Table X).
    With a single gaze token the softmax is identically 1, so the update of each query
    token is ``W_fc(W_val(gaze))``; the attention form is kept because it is what the
    paper specifies and admits several gaze tokens.

    Args:
        width: d, the image token width.
        heads: r, attention heads; must divide ``width``.
        query: "cls", "patch" or "all".

    Shapes: x (B, 1 + m, d), gaze (B, G, d) -> (B, 1 + m, d).
    """

    def __init__(self, width: int, heads: int, query: str = "cls") -> None:
        super().__init__()
        self.heads = heads
        self.query = query
        self.w_que = nn.Linear(width, width)
        self.w_key = nn.Linear(width, width)
        self.w_val = nn.Linear(width, width)
        self.w_fc = nn.Linear(width, width)
        # Start as the identity so the frozen CLIP features are intact at step 0.
        nn.init.zeros_(self.w_fc.weight)
        nn.init.zeros_(self.w_fc.bias)

    def _select(self, x: torch.Tensor) -> slice:
        return {"cls": slice(0, 1), "patch": slice(1, None), "all": slice(0, None)}[self.query]

    def forward(self, x: torch.Tensor, gaze: torch.Tensor) -> torch.Tensor:
        sel = self._select(x)
        q_tokens = x[:, sel]  # (B, Q, d)
        b, nq, d = q_tokens.shape
        h = self.heads
        q = self.w_que(q_tokens).view(b, nq, h, d // h).transpose(1, 2)  # (B, Q, d) -> (B, h, Q, d/h)
        k = self.w_key(gaze).view(b, -1, h, d // h).transpose(1, 2)  # (B, G, d) -> (B, h, G, d/h)
        v = self.w_val(gaze).view(b, -1, h, d // h).transpose(1, 2)  # (B, G, d) -> (B, h, G, d/h)
        glo = F.scaled_dot_product_attention(q, k, v)  # (B, h, Q, d/h)
        update = self.w_fc(glo.transpose(1, 2).reshape(b, nq, d))  # (B, Q, d)
        out = x.clone()
        out[:, sel] = q_tokens + update
        return out


class GazeAwareImageEncoder(nn.Module):
    """The GIE around an open_clip :class:`VisionTransformer` (frozen, converted in place).

    Args:
        visual: the CLIP image tower, weights already loaded.
        gi_heads: r, heads of each gaze injector.
        gi_query: "cls", "patch" or "all".
        use_gi: add gaze injectors (off = the Table XIII "w/o GI" ablation).
        lora_blocks: LoRA on the last K blocks (0 = none).
        lora_rank: LoRA rank.
        lora_alpha: LoRA alpha.
        merged_lora: leave the LoRA blocks plain Linear layers, for weights with the adapters
            merged in (:func:`~gazeclip_cli.core.model.folder.merge_lora`; the test path, without peft).
    """

    def __init__(
        self,
        visual: VisionTransformer,
        gi_heads: int,
        gi_query: str,
        use_gi: bool,
        lora_blocks: int,
        lora_rank: int,
        lora_alpha: int,
        merged_lora: bool = False,
    ) -> None:
        super().__init__()
        for p in visual.parameters():
            p.requires_grad_(False)
        convert_attention(visual.transformer.resblocks)
        self.visual = visual
        width = visual.transformer.width
        n = len(visual.transformer.resblocks)
        self.width = width
        self.injectors = (
            nn.ModuleList(GazeInjector(width, gi_heads, gi_query) for _ in range(n)) if use_gi else None
        )
        self.lora_blocks = list(range(n - lora_blocks, n))
        if lora_blocks and not merged_lora:
            add_lora(
                self.visual, lora_pattern(r"transformer\.resblocks", self.lora_blocks), lora_rank, lora_alpha
            )
        # The paper's "learnable class token" and "learnable position embedding P_i" train (the
        # position embedding is also resized from 7x7 to 8x8 for 256 pixels); after peft, which
        # freezes everything but its adapters. DECISIONS.md.
        for name in TRAINABLE_EMBEDDINGS:
            getattr(self.visual, name).requires_grad_(True)

    def forward(self, images: torch.Tensor, gaze_tokens: torch.Tensor | None) -> torch.Tensor:
        x = self.visual._embeds(images)  # (B, 3, H, H) -> (B, 1 + m, d)
        for i, block in enumerate(self.visual.transformer.resblocks):
            inject = None
            if self.injectors is not None and gaze_tokens is not None:
                injector = self.injectors[i]

                def inject(t: torch.Tensor, injector: GazeInjector = injector) -> torch.Tensor:
                    return injector(t, gaze_tokens)

            x = block_forward(block, x, after_attn=inject)
        return self.visual.ln_post(x[:, 0])  # (B, 1 + m, d) -> (B, d)
