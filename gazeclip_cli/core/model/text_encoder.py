"""LRE: the frozen CLIP text tower over t = 77 x levels tokens, with the AWS and LoRA.

Input: token ids (U, t) of U distinct prompt sets. Output: T_l_g (U, s), the end-of-text
token of the last prompt after the final LayerNorm and the text projection.
"""

from __future__ import annotations

import torch
from torch import nn

from gazeclip_cli.core.model.clip_towers import add_lora, block_forward, convert_attention, lora_pattern
from gazeclip_cli.core.model.openclip import CLIP


class WordSelector(nn.Module):
    """AWS: a learnable diagonal t x t matrix, stored as a length-t vector.

    Shapes: (B, t, s) -> (B, t, s), each token scaled by its diagonal entry.
    """

    def __init__(self, length: int, init: str = "normal") -> None:
        super().__init__()
        weight = torch.randn(length) if init == "normal" else torch.ones(length)
        self.diagonal = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.diagonal.to(x.dtype)[None, :, None]


class LanguageRefinementEncoder(nn.Module):
    """The LRE built from an open_clip CLIP's text parts (frozen, converted in place).

    Args:
        clip: the CLIP model, weights loaded; its text parts are taken over.
        num_prompts: prompts per set (levels); t = context_length * num_prompts.
        aws: use word selectors; aws_placement: "before", "between" or "after"; aws_init: "normal" or "ones".
        lora_blocks: LoRA on the last K text blocks.
        learnable_tokens: LP, learnable context tokens replacing the filler words ("X") at the start of each prompt.
    """

    def __init__(
        self,
        clip: CLIP,
        num_prompts: int,
        aws: bool,
        aws_placement: str,
        aws_init: str,
        lora_blocks: int,
        lora_rank: int,
        lora_alpha: int,
        learnable_tokens: int = 0,
    ) -> None:
        super().__init__()
        self.context_length = clip.context_length
        self.num_prompts = num_prompts
        length = clip.context_length * num_prompts
        self.token_embedding = clip.token_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        for module in (self.token_embedding, self.transformer, self.ln_final):
            for p in module.parameters():
                p.requires_grad_(False)
        self.text_projection.requires_grad_(False)
        # New length-t position embedding, initialised by tiling CLIP's 77 positions.
        self.positional_embedding = nn.Parameter(
            clip.positional_embedding.detach().clone().repeat(num_prompts, 1)
        )
        causal = torch.full((length, length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", causal, persistent=False)
        convert_attention(self.transformer.resblocks)
        n = len(self.transformer.resblocks)
        self.aws_placement = aws_placement
        self.selectors = nn.ModuleList(WordSelector(length, aws_init) for _ in range(n)) if aws else None
        self.learnable = (
            nn.Parameter(torch.randn(learnable_tokens, clip.transformer.width) * 0.02)
            if learnable_tokens
            else None
        )
        self.lora_blocks = list(range(n - lora_blocks, n))
        if lora_blocks:
            add_lora(self.transformer, lora_pattern(r"resblocks", self.lora_blocks), lora_rank, lora_alpha)

    def _hooks(self, i: int) -> dict:
        if self.selectors is None:
            return {}
        key = {"before": "pre_attn", "between": "pre_mlp", "after": "after_block"}[self.aws_placement]
        return {key: self.selectors[i]}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens)  # (U, t) -> (U, t, s)
        if self.learnable is not None:
            n = self.learnable.shape[0]
            x = x.clone()
            for p in range(self.num_prompts):
                start = p * self.context_length + 1  # just after the start-of-text token
                x[:, start : start + n] = self.learnable.to(x.dtype)
        x = x + self.positional_embedding.to(x.dtype)
        for i, block in enumerate(self.transformer.resblocks):
            x = block_forward(block, x, attn_mask=self.attn_mask, **self._hooks(i))
        x = self.ln_final(x)
        last = tokens[:, -self.context_length :]  # (U, 77): the last prompt
        eot = (self.num_prompts - 1) * self.context_length + last.argmax(dim=-1)  # end-of-text has the top id
        pooled = x[torch.arange(x.shape[0], device=x.device), eot]  # (U, t, s) -> (U, s)
        return pooled @ self.text_projection  # (U, s) -> (U, embed_dim)
