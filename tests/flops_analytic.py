"""Multiply-adds per image of the tiny configuration, written out by hand from its sizes.

Independent of the model code and of torch's counter: convolutions are out_h * out_w * c_out *
c_in * k * k, a Linear on T tokens is T * in * out, attention is 2 * T_q * T_k * width
(Q K^T and A V). Biases, norms, activations and softmax are not counted (torch's convention).
"""

from __future__ import annotations


def conv(out_side: int, c_in: int, c_out: int, k: int = 3) -> int:
    return out_side * out_side * c_out * c_in * k * k


def transformer_block(tokens: int, width: int, mlp_ratio: float = 4.0) -> int:
    """qkv + attention + out-projection + MLP of one block over ``tokens`` tokens."""
    hidden = int(width * mlp_ratio)
    return (
        3 * width * width * tokens
        + 2 * tokens * tokens * width
        + width * width * tokens
        + 2 * width * hidden * tokens
    )


def lora(tokens: int, width: int, rank: int, mlp_ratio: float = 4.0) -> int:
    """LoRA's A and B on qkv, out_proj, c_fc and c_proj of one block."""
    hidden = int(width * mlp_ratio)
    return rank * tokens * ((width + 3 * width) + (width + width) + (width + hidden) + (hidden + width))


def tiny_macs(cfg, num_classes: int | None = None) -> dict[str, int]:
    """Multiply-adds per module group for the tiny-test architecture (small-cnn gaze estimator)."""
    v, t, g = cfg.clip.vision, cfg.clip.text, cfg.agpm
    d, s, a, r = v.width, cfg.clip.embed_dim, g.token_dim, cfg.lora_rank
    x = cfg.num_classes if num_classes is None else num_classes
    # SmallGazeCNN(width=16): four stride-2 convs on the 224 patch, then Linear(64, 2).
    side, c_in, estimator = 224, 3, 0
    for c_out in (16, 32, 64, 64):
        side //= 2
        estimator += conv(side, c_in, c_out)
        c_in = c_out
    estimator += c_in * 2
    side, c_in, encoder = v.image_size, 3, 0
    for c_out in g.conv_channels:
        side //= 2
        encoder += conv(side, c_in, c_out)
        c_in = c_out
    grid_tokens = g.grid * g.grid
    agpm = grid_tokens * c_in * a + d * a + g.layers * transformer_block(grid_tokens + 2, a, g.mlp_ratio)
    patches = (v.image_size // v.patch_size) ** 2
    tokens = patches + 1
    tower = patches * d * 3 * v.patch_size**2 + v.layers * transformer_block(tokens, d, v.mlp_ratio)
    # One injector per block: W_que on the class token, W_key and W_val on the one gaze token,
    # attention of 1 query on 1 key, W_fc on the class token.
    injectors = v.layers * (d * d + 2 * d * d + 2 * 1 * 1 * d + d * d)
    text_tokens = cfg.text_length
    return {
        "gaze estimator (GE, frozen)": estimator,
        "gaze adapter (GE)": 2 * d,
        "AGPM appearance encoder": encoder,
        "AGPM transformer + tokens": agpm,
        "GIE gaze injectors": injectors,
        "GIE LoRA": cfg.gie_lora_blocks * lora(tokens, d, r, v.mlp_ratio),
        "GIE CLIP image tower (frozen)": tower,
        "fusion (W_ig, W_ag)": d * s + a * s,
        "experts (attribution, detection)": s * x + s * 2,
        # train path only: the text tower over t tokens for one prompt set, pooled and projected
        "LRE LoRA": cfg.lre_lora_blocks * lora(text_tokens, t.width, r, t.mlp_ratio),
        "LRE CLIP text tower (frozen)": t.layers * transformer_block(text_tokens, t.width, t.mlp_ratio)
        + t.width * s,
    }


TEXT_GROUPS = ("LRE LoRA", "LRE CLIP text tower (frozen)")
