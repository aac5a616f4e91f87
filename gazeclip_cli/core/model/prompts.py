"""FTG: the fine-grained text generator, four hierarchical prompts per attribution class.

Templates live in a TOML file (``prompt_templates.toml`` in this package by default).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gazeclip_cli.core.config_io import read_toml
from gazeclip_cli.core.errors import ConfigError, unknown_key_message
from gazeclip_cli.core.model.config import ClassSpec

LEVEL_KEYS = ("level1", "level2", "level3", "level4")
TEMPLATE_KEYS = set(LEVEL_KEYS) | {"forgery_types", "architectures"}


@dataclass(frozen=True)
class PromptTemplates:
    """Per-level (fake, real) templates and the long names of forgery types and architectures."""

    levels: dict[int, tuple[str, str]]
    forgery_types: dict[str, str]
    architectures: dict[str, str]


def load_templates(path: str | Path = "") -> PromptTemplates:
    """The templates file at ``path``, or the packaged one when ``path`` is empty."""
    if path:
        data = read_toml(Path(path))
        where = str(path)
    else:
        text = (resources.files("gazeclip_cli.core.model") / "prompt_templates.toml").read_text(
            encoding="utf-8"
        )
        data, where = tomllib.loads(text), "packaged prompt_templates.toml"
    for key in data:
        if key not in TEMPLATE_KEYS:
            raise ConfigError(unknown_key_message(key, TEMPLATE_KEYS, where))
    levels = {}
    for i, key in enumerate(LEVEL_KEYS, start=1):
        entry = data.get(key)
        if not isinstance(entry, dict) or set(entry) != {"fake", "real"}:
            raise ConfigError(f"{where}: [{key}] needs exactly the keys 'fake' and 'real'")
        levels[i] = (entry["fake"], entry["real"])
    return PromptTemplates(levels, dict(data.get("forgery_types", {})), dict(data.get("architectures", {})))


def class_prompts(spec: ClassSpec, levels: tuple[int, ...], templates: PromptTemplates) -> list[str]:
    """The prompts of one class, one per requested level, in level order."""
    real = spec.forgery_type == "Real"
    fields = {
        "generator": spec.prompt_generator,
        "forgery_type": templates.forgery_types.get(spec.forgery_type, spec.forgery_type),
        "architecture": templates.architectures.get(spec.architecture, spec.architecture),
    }
    prompts = []
    for level in levels:
        fake_t, real_t = templates.levels[level]
        template = real_t if real else fake_t
        try:
            prompts.append(template.format(**fields))
        except KeyError as exc:
            raise ConfigError(f"prompt template '{template}': unknown field {exc}") from None
    return prompts
