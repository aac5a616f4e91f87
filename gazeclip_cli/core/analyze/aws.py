"""Fig. 11: the learnt AWS diagonal of every LRE block over the tokens of one class's prompts.

The first model folder must have been trained with the LRE and AWS. Folders given to compare
(e.g. the same model trained without AWS) are set beside it on the "language feature matrix":
the norm of each token's feature leaving the last text block, relative to the prompt tokens'
mean (defined with or without AWS). Only token positions between start- and end-of-text are shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gazeclip_cli.core.analyze.common import (
    AnalysisFiles,
    ProgressFn,
    prepare_out,
    tell,
    write_csv,
    write_json,
)
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.evaluate.tables import Table
from gazeclip_cli.core.figures import new_figure, save_figure
from gazeclip_cli.core.model.builder import prompt_sets
from gazeclip_cli.core.model.config import GazeCLIPConfig
from gazeclip_cli.core.model.folder import ModelFolder
from gazeclip_cli.core.model.prompts import class_prompts, load_templates

STEM = "aws-weights"
LEARNABLE_TOKEN = "[ctx]"  # a learnable prompt vector (LP) in place of a filler word


@dataclass(frozen=True)
class PromptTokens:
    """The shown token positions of one class's prompt set and their text."""

    class_name: str
    prompts: tuple[str, ...]  # the prompt texts, level order
    positions: tuple[int, ...]  # indices into the t = 77 x levels token axis
    tokens: tuple[str, ...]  # text of each shown position
    prompt_of: tuple[int, ...]  # which prompt (0-based) each shown position belongs to


def _token_text(tokenizer: Any, token_id: int) -> str:
    if token_id == tokenizer.sot_token_id:
        return "<sot>"
    if token_id == tokenizer.eot_token_id:
        return "<eot>"
    piece = tokenizer.decoder[token_id]
    text = bytearray(tokenizer.byte_decoder[c] for c in piece).decode("utf-8", errors="replace")
    return text.replace("</w>", "")


def prompt_token_positions(cfg: GazeCLIPConfig, class_name: str) -> PromptTokens:
    """The token positions of ``class_name``'s prompts, start-of-text to end-of-text of each prompt."""
    from open_clip.tokenizer import SimpleTokenizer

    names = [c.name for c in cfg.classes]
    index = names.index(class_name)
    sets, of_class = prompt_sets(cfg)
    ids = sets[of_class[index]]  # (t,): the class's prompt set
    tokenizer = SimpleTokenizer(context_length=cfg.clip.text.context_length)
    prompts = class_prompts(cfg.classes[index], cfg.prompt_levels, load_templates(cfg.prompt_templates))
    context = cfg.clip.text.context_length
    positions, tokens, prompt_of = [], [], []
    for p in range(len(cfg.prompt_levels)):
        chunk = ids[p * context : (p + 1) * context]
        eot = int(chunk.argmax())  # end-of-text has the highest id
        for j in range(eot + 1):
            positions.append(p * context + j)
            learnable = 1 <= j <= cfg.learnable_prompt_tokens
            tokens.append(LEARNABLE_TOKEN if learnable else _token_text(tokenizer, int(chunk[j])))
            prompt_of.append(p)
    return PromptTokens(class_name, tuple(prompts), tuple(positions), tuple(tokens), tuple(prompt_of))


def _class_tokens(model: Any, index: int) -> torch.Tensor:
    """(t,) token ids of class ``index``'s prompts: its prompt set (classes with equal prompts share one)."""
    return model.prompt_tokens[model.class_prompt_set[index]]


@torch.inference_mode()
def token_feature_norms(folder: ModelFolder, class_name: str) -> np.ndarray:
    """(t,) L2 norm of every token's feature leaving the last LRE block (before the final LayerNorm)."""
    model = folder.model
    index = [c.name for c in model.cfg.classes].index(class_name)
    captured: list[torch.Tensor] = []
    hook = model.lre.ln_final.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        model.lre(_class_tokens(model, index)[None])  # (1, t) -> (1, embed_dim)
    finally:
        hook.remove()
    return captured[-1][0].float().norm(dim=-1).cpu().numpy()  # (1, t, s) -> (t,)


@dataclass
class AwsPanel:
    """One model folder's word weights and token feature norms."""

    label: str
    aws: bool
    placement: str
    diagonals: np.ndarray | None = field(repr=False)  # (L, t) learnt diagonals, None without AWS
    feature_norms: np.ndarray = field(repr=False)  # (t,)


@dataclass
class AwsResult:
    """Fig. 11 for one class."""

    tokens: PromptTokens
    panels: list[AwsPanel]
    inputs: dict[str, Any] = field(default_factory=dict)

    def prompt_means(self, panel: AwsPanel) -> list[tuple[float | None, float]]:
        """Per prompt: mean |AWS weight| over its tokens and blocks, and its mean relative feature norm."""
        pos = np.array(self.tokens.positions)
        which = np.array(self.tokens.prompt_of)
        norms = panel.feature_norms[pos]
        relative = norms / norms.mean()
        out = []
        for p in range(len(self.tokens.prompts)):
            sel = pos[which == p]
            weight = None if panel.diagonals is None else float(np.abs(panel.diagonals[:, sel]).mean())
            out.append((weight, float(relative[which == p].mean())))
        return out

    def to_dict(self) -> dict[str, Any]:
        t = self.tokens
        return {
            "analysis": "aws-weights",
            "figure": "Fig. 11",
            "inputs": self.inputs,
            "class": t.class_name,
            "prompts": list(t.prompts),
            "tokens": [
                {"position": p, "prompt": k, "text": s}
                for p, k, s in zip(t.positions, t.prompt_of, t.tokens, strict=True)
            ],
            "models": [
                {
                    "model": panel.label,
                    "aws": panel.aws,
                    "placement": panel.placement,
                    "diagonals": None
                    if panel.diagonals is None
                    else [[float(v) for v in block[list(t.positions)]] for block in panel.diagonals],
                    "feature_norms": [float(panel.feature_norms[p]) for p in t.positions],
                    "per_prompt": [
                        {"prompt": k, "mean_abs_weight": w, "mean_relative_feature_norm": r}
                        for k, (w, r) in enumerate(self.prompt_means(panel))
                    ],
                }
                for panel in self.panels
            ],
        }

    def table(self) -> Table:
        rows = []
        for panel in self.panels:
            for k, (w, r) in enumerate(self.prompt_means(panel)):
                rows.append((panel.label, "on" if panel.aws else "off", f"P{k + 1}", w, r))
        return Table(
            key="aws-weights",
            title=f"AWS word weights over the prompts of {self.tokens.class_name}, Fig. 11",
            columns=("Model", "AWS", "prompt", "mean |weight|", "relative feature norm"),
            rows=tuple(rows),
            notes=tuple(f"P{k + 1}: {text}" for k, text in enumerate(self.tokens.prompts)),
        )


def aws_weights(
    folders: Sequence[tuple[ModelFolder, str]],
    class_name: str | None = None,
    progress: ProgressFn | None = None,
) -> AwsResult:
    """The AWS diagonals of the first folder (and of compared folders with AWS) and every folder's token norms.

    Raises:
        DataError: the first folder has no LRE or no AWS, a compared folder has no LRE, the class is
            unknown to a folder, or the folders tokenise the class's prompts differently.
    """
    first, _ = folders[0]
    for k, (folder, _label) in enumerate(folders):
        if getattr(folder.model, "lre", None) is None:
            raise DataError(
                f"{folder.path}: architecture '{folder.model.cfg.name}' has no language refinement encoder "
                "(use_lre = false, or a baseline without a text tower), so no AWS word weights or text features"
            )
        if k == 0 and folder.model.lre.selectors is None:
            raise DataError(
                f"{folder.path}: trained without AWS (aws = false), so it has no word weights; "
                "give a folder trained with AWS first and this one to compare"
            )
    names = [c.name for c in first.model.cfg.classes]
    if class_name is None:
        class_name = next((c.name for c in first.model.cfg.classes if c.forgery_type != "Real"), names[0])
    for folder, _ in folders:
        known = [c.name for c in folder.model.cfg.classes]
        if class_name not in known:
            raise DataError(
                f"{folder.path}: no attribution class {class_name!r} (classes: {', '.join(known)})"
            )
    tokens = prompt_token_positions(first.model.cfg, class_name)
    reference = _class_tokens(first.model, names.index(class_name))
    panels = []
    for folder, label in folders:
        cfg = folder.model.cfg
        own = _class_tokens(folder.model, [c.name for c in cfg.classes].index(class_name))
        if own.shape != reference.shape or not torch.equal(own, reference):
            raise DataError(
                f"{folder.path}: its prompts for {class_name!r} differ from {first.path}'s "
                "(other templates or prompt levels); the token axes would not line up"
            )
        lre = folder.model.lre
        diagonals = (
            None
            if lre.selectors is None
            else np.stack([s.diagonal.detach().float().cpu().numpy() for s in lre.selectors])
        )  # (L, t)
        panels.append(
            AwsPanel(
                label=label,
                aws=lre.selectors is not None,
                placement=cfg.aws_placement,
                diagonals=diagonals,
                feature_norms=token_feature_norms(folder, class_name),
            )
        )
        tell(progress, "text features", len(panels), len(folders))
    return AwsResult(tokens=tokens, panels=panels)


def _prompt_separators(ax: Any, prompt_of: Sequence[int]) -> None:
    for j in range(1, len(prompt_of)):
        if prompt_of[j] != prompt_of[j - 1]:
            ax.axvline(j - 0.5, color="white", lw=1.5)


def plot_aws(result: AwsResult, out_dir: Path, fmt: str = "png") -> Path:
    """Per folder with AWS: |diagonal| as blocks x tokens; with several folders, their token feature norms."""
    t = result.tokens
    pos = list(t.positions)
    with_aws = [p for p in result.panels if p.diagonals is not None]
    compare = len(result.panels) > 1
    heights = [max(1.2, 0.22 * p.diagonals.shape[0] + 0.6) for p in with_aws]
    if compare:
        heights.append(0.3 * len(result.panels) + 0.6)
    fig = new_figure(max(6.0, 0.16 * len(pos) + 1.5), sum(heights) + 1.4)
    axes = fig.subplots(len(heights), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, panel in zip(axes, with_aws, strict=False):
        values = np.abs(panel.diagonals[:, pos])  # (L, shown)
        image = ax.imshow(values, aspect="auto", cmap="magma", interpolation="nearest")
        ax.set_yticks(range(values.shape[0]), [f"block {b + 1}" for b in range(values.shape[0])], fontsize=6)
        ax.set_title(f"{panel.label}: |AWS weight| ({panel.placement} attention)", fontsize=8)
        _prompt_separators(ax, t.prompt_of)
        fig.colorbar(image, ax=ax, pad=0.01, fraction=0.03)
    if compare:
        ax = axes[-1]
        norms = np.stack([p.feature_norms[pos] / p.feature_norms[pos].mean() for p in result.panels])
        image = ax.imshow(norms, aspect="auto", cmap="magma", interpolation="nearest")
        labels = [f"{p.label} ({'AWS' if p.aws else 'no AWS'})" for p in result.panels]
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        ax.set_title("language feature matrix: token feature norm / mean", fontsize=8)
        _prompt_separators(ax, t.prompt_of)
        fig.colorbar(image, ax=ax, pad=0.01, fraction=0.03)
    for ax in axes:
        ax.set_xticks([])
    axes[-1].set_xticks(range(len(pos)), t.tokens, rotation=90, fontsize=6)
    fig.suptitle(f"prompts of {t.class_name}", fontsize=9)
    return save_figure(fig, out_dir, STEM, fmt)


def write_aws(result: AwsResult, out_dir: str | Path, fmt: str = "png") -> AnalysisFiles:
    """``aws-weights.{png,svg}``, ``aws-weights.csv`` (model, block, token, weight), ``aws-features.csv``, JSON."""
    out = prepare_out(out_dir)
    t = result.tokens
    shown = list(zip(t.positions, t.prompt_of, t.tokens, strict=True))
    weights = write_csv(
        out / f"{STEM}.csv",
        ("model", "block", "position", "prompt", "token", "weight", "abs_weight"),
        [
            (
                panel.label,
                b + 1,
                p,
                k + 1,
                text,
                float(panel.diagonals[b, p]),
                abs(float(panel.diagonals[b, p])),
            )
            for panel in result.panels
            if panel.diagonals is not None
            for b in range(panel.diagonals.shape[0])
            for p, k, text in shown
        ],
    )
    features = write_csv(
        out / "aws-features.csv",
        ("model", "aws", "position", "prompt", "token", "feature_norm", "relative_norm"),
        [
            (panel.label, panel.aws, p, k + 1, text, float(panel.feature_norms[p]),
             float(panel.feature_norms[p] / panel.feature_norms[list(t.positions)].mean()))
            for panel in result.panels
            for p, k, text in shown
        ],
    )  # fmt: skip
    figure = plot_aws(result, out, fmt)
    json_path = write_json(out / f"{STEM}.json", result.to_dict())
    return AnalysisFiles(figure=figure, csv=(weights, features), json=json_path)
