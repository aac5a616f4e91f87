"""The benchmark protocol (the paper's Table I and the extra test sets), read from a TOML file.

The protocol is data: every generator with its source dataset, labels, sample counts and
the folder names it is released under. ``configs/protocol.toml`` is the paper's protocol;
a user copies it and adds a ``[[generators]]`` table to add a generator. This module only
reads and validates the file; :mod:`gazeclip_cli.core.data.discovery` finds the files and
:mod:`gazeclip_cli.core.data.benchmark` samples them.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gazeclip_cli.core.errors import ConfigError, unknown_key_message

FORGERY_TYPES = ("EFS", "FS", "AM", "FR", "TF", "Real")
# "Other" (VAE, autoregressive, autoencoder, unknown) is for unseen sets only: seen classes
# get an architecture prompt, which the text generator words for GAN, diffusion and flow.
ARCHITECTURES = ("GAN", "Diffusion", "Flow", "Other", "Real")
ROLES = ("seen", "unseen")
MEDIA = ("images", "frames", "videos")
SPLITS = ("train", "val", "test")
# The alias that means "the source root itself" (a folder holding only this generator).
ROOT_ALIAS = "."

_TOP_KEYS = ("name", "description", "version", "seed", "defaults", "sources", "generators", "groups")
_DEFAULT_KEYS = ("val_from_train", "media", "exclude_dirs", "frames_per_video")
_SOURCE_KEYS = ("description", "url")
_GENERATOR_KEYS = (
    "name",
    "source",
    "role",
    "forgery_type",
    "architecture",
    "dfd_label",
    "dfa_label",
    "train",
    "test",
    "val_from_train",
    "aliases",
    "media",
    "frames_per_video",
    "test_list",
    "label_file",
    "exclude_dirs",
    "description",
    "prompt_name",
)
_GROUP_KEYS = ("title", "members", "auc_negatives")


def normalize_name(name: str) -> str:
    """Folder-name form used for matching: case-folded, without ``-``, ``_`` and spaces.

    So ``SD-2.1`` matches DF40's ``sd2.1`` and ``StyleGAN2`` matches ``stylegan2``; dots
    are kept (``sd2.1`` is not ``sd21``).
    """
    return name.casefold().replace("-", "").replace("_", "").replace(" ", "")


@dataclass(frozen=True)
class SourceSpec:
    """One source dataset; the user gives its root folder with ``--root NAME=DIR``."""

    name: str  # e.g. "GenFace", "DF40", "Celeb-DF++"
    description: str  # what the dataset is and how it is released
    url: str  # where to request it ("" when unknown)


@dataclass(frozen=True)
class GeneratorSpec:
    """One row of the protocol: a generator (or a real set) and how many samples it gives."""

    name: str  # protocol name written to the manifest, e.g. "StyleGAN2"
    prompt_name: str  # how the level-4 prompt names it, e.g. "LatentDiffusion" for LatDiff (default: name)
    source: str  # name of a SourceSpec
    role: str  # "seen" (train, val and test) or "unseen" (test only)
    forgery_type: str  # EFS, FS, AM, FR, TF or Real
    architecture: str  # GAN, Diffusion, Flow, Other (unseen only) or Real
    dfd_label: int  # 0 real, 1 fake
    dfa_label: int  # 0 real, 1..K seen generators, -1 unseen
    train: int  # Table I train count; includes the validation samples carved from it
    test: int  # Table I test count
    val_from_train: int  # validation samples taken out of ``train`` (seen only)
    aliases: tuple[str, ...]  # folder names the generator is released under; "." = the source root
    media: str  # "images" (still images), "frames" (images grouped by video folder) or "videos"
    frames_per_video: int | None  # frames per video file; for "frames", an optional cap per video folder
    test_list: str | None  # Celeb-DF style list of test videos, relative to the source root
    label_file: str | None  # DFDC style labels (CSV filename,label or JSON metadata) for mixed folders
    exclude_dirs: tuple[str, ...]  # sub-folders never read (masks, landmarks, ...)
    description: str  # free text (the paper's citation, notes)

    @property
    def is_real(self) -> bool:
        return self.dfd_label == 0

    def wanted(self) -> dict[str, int]:
        """Rows wanted per split in the manifest (validation carved out of train)."""
        return {"train": self.train - self.val_from_train, "val": self.val_from_train, "test": self.test}

    @property
    def total_wanted(self) -> int:
        return self.train + self.test


@dataclass(frozen=True)
class GroupSpec:
    """A set of generators reported together, e.g. the columns of the paper's Table II."""

    name: str  # key in [groups], e.g. "table2"
    title: str  # caption for the printed table
    members: tuple[str, ...]  # generator names, in column order
    auc_negatives: str | None  # real set paired with all-fake members for AUC (e.g. "FFHQ")


@dataclass(frozen=True)
class Protocol:
    """A validated protocol file."""

    name: str
    description: str
    version: int
    seed: int
    sources: Mapping[str, SourceSpec]
    generators: tuple[GeneratorSpec, ...]
    groups: Mapping[str, GroupSpec]
    path: str  # the file it was read from ("" when built from a dict)
    sha256: str  # hash of the file's bytes ("" when built from a dict)

    def generator(self, name: str) -> GeneratorSpec:
        """The generator called ``name`` (case-insensitive); ConfigError naming the near miss."""
        for g in self.generators:
            if g.name == name or normalize_name(g.name) == normalize_name(name):
                return g
        raise ConfigError(unknown_key_message(name, self.names(), f"{self.where}: generator"))

    def names(self) -> list[str]:
        return [g.name for g in self.generators]

    def seen(self) -> list[GeneratorSpec]:
        return [g for g in self.generators if g.role == "seen"]

    def unseen(self) -> list[GeneratorSpec]:
        return [g for g in self.generators if g.role == "unseen"]

    def attribution_classes(self) -> list[str]:
        """Names of the attribution classes, index = DFA label (0 is the real class)."""
        return [g.name for g in sorted(self.seen(), key=lambda g: g.dfa_label)]

    def for_source(self, source: str) -> list[GeneratorSpec]:
        return [g for g in self.generators if g.source == source]

    def select(self, names: Iterable[str]) -> list[GeneratorSpec]:
        """Generators named directly or through a group name, in protocol order."""
        wanted: set[str] = set()
        for raw in names:
            key = normalize_name(raw)
            group = next((grp for n, grp in self.groups.items() if normalize_name(n) == key), None)
            if group is not None:
                wanted.update(group.members)
                continue
            wanted.add(self.generator(raw).name)
        return [g for g in self.generators if g.name in wanted]

    @property
    def where(self) -> str:
        return self.path or f"protocol '{self.name}'"


def load_protocol(path: str | Path) -> Protocol:
    """Read and validate a protocol TOML file.

    Args:
        path: the protocol file, e.g. ``configs/protocol.toml``.

    Returns:
        The validated :class:`Protocol`.

    Raises:
        ConfigError: the file is missing, is not valid TOML, has an unknown key (the message
            suggests the near miss) or breaks a rule (labels, counts, aliases, groups).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: protocol file not found; pass --protocol configs/protocol.toml") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the protocol file ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_protocol(data, where=str(path), sha256=hashlib.sha256(raw).hexdigest())


def parse_protocol(data: Mapping[str, Any], where: str = "protocol", sha256: str = "") -> Protocol:
    """Validate an already-parsed protocol mapping (what ``tomllib`` returns).

    Args:
        data: the TOML document as a dict.
        where: the file name used in error messages.
        sha256: hash of the file's bytes, kept in the summary for provenance.

    Raises:
        ConfigError: as :func:`load_protocol`.
    """
    _check_keys(data, _TOP_KEYS, where)
    name = _get(data, "name", str, where)
    description = _get(data, "description", str, where, "")
    version = _get(data, "version", int, where, 1)
    if version != 1:
        raise ConfigError(f"{where}: version {version} is not supported (this gazeclip reads version 1)")
    seed = _get(data, "seed", int, where)

    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{where}: [defaults] must be a table")
    _check_keys(defaults, _DEFAULT_KEYS, f"{where}: [defaults]")

    raw_sources = data.get("sources")
    if not isinstance(raw_sources, dict) or not raw_sources:
        raise ConfigError(f"{where}: needs a [sources.NAME] table for each source dataset")
    sources: dict[str, SourceSpec] = {}
    for sname, sdata in raw_sources.items():
        swhere = f"{where}: [sources.{sname}]"
        if not isinstance(sdata, dict):
            raise ConfigError(f"{swhere} must be a table")
        _check_keys(sdata, _SOURCE_KEYS, swhere)
        if "=" in sname or not sname.strip():
            raise ConfigError(
                f"{swhere}: a source name cannot be empty or contain '=' (it is used as --root NAME=DIR)"
            )
        sources[sname] = SourceSpec(
            name=sname,
            description=_get(sdata, "description", str, swhere, ""),
            url=_get(sdata, "url", str, swhere, ""),
        )
    _check_unique_normalized(sources, f"{where}: [sources]", "source")

    raw_generators = data.get("generators")
    if not isinstance(raw_generators, list) or not raw_generators:
        raise ConfigError(f"{where}: needs at least one [[generators]] table")
    generators = [_parse_generator(g, i, defaults, sources, where) for i, g in enumerate(raw_generators)]
    _check_generators(generators, where)

    raw_groups = data.get("groups", {})
    if not isinstance(raw_groups, dict):
        raise ConfigError(f"{where}: [groups] must be a table of [groups.NAME] tables")
    by_name = {g.name: g for g in generators}
    groups: dict[str, GroupSpec] = {}
    for gname, gdata in raw_groups.items():
        gwhere = f"{where}: [groups.{gname}]"
        if not isinstance(gdata, dict):
            raise ConfigError(f"{gwhere} must be a table")
        _check_keys(gdata, _GROUP_KEYS, gwhere)
        members = tuple(_get_list(gdata, "members", gwhere))
        if not members:
            raise ConfigError(f"{gwhere}: members is empty")
        for m in members:
            if m not in by_name:
                raise ConfigError(unknown_key_message(m, by_name, f"{gwhere}: member"))
        if len(set(members)) != len(members):
            raise ConfigError(f"{gwhere}: a generator is listed twice in members")
        negatives = _get(gdata, "auc_negatives", str, gwhere, None)
        if negatives is not None:
            if negatives not in by_name:
                raise ConfigError(unknown_key_message(negatives, by_name, f"{gwhere}: auc_negatives"))
            if not by_name[negatives].is_real:
                raise ConfigError(f"{gwhere}: auc_negatives '{negatives}' must be a real set (dfd_label = 0)")
        if gname in by_name:
            raise ConfigError(f"{gwhere}: a group cannot have the name of a generator")
        groups[gname] = GroupSpec(
            name=gname,
            title=_get(gdata, "title", str, gwhere, gname),
            members=members,
            auc_negatives=negatives,
        )

    return Protocol(
        name=name,
        description=description,
        version=version,
        seed=seed,
        sources=sources,
        generators=tuple(generators),
        groups=groups,
        path=where if sha256 else "",
        sha256=sha256,
    )


def _parse_generator(
    raw: Any, index: int, defaults: Mapping[str, Any], sources: Mapping[str, SourceSpec], where: str
) -> GeneratorSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [[generators]] #{index + 1} must be a table")
    label = raw.get("name") if isinstance(raw.get("name"), str) else f"#{index + 1}"
    gwhere = f"{where}: generator '{label}'"
    _check_keys(raw, _GENERATOR_KEYS, gwhere)
    merged = {**defaults, **raw}

    name = _get(merged, "name", str, gwhere)
    prompt_name = _get(raw, "prompt_name", str, gwhere, name)
    if not prompt_name.strip():
        raise ConfigError(f"{gwhere}: prompt_name cannot be empty (leave it out to use the name)")
    source = _get(merged, "source", str, gwhere)
    if source not in sources:
        raise ConfigError(unknown_key_message(source, sources, f"{gwhere}: source"))
    role = _choice(merged, "role", ROLES, gwhere)
    forgery_type = _choice(merged, "forgery_type", FORGERY_TYPES, gwhere)
    architecture = _choice(merged, "architecture", ARCHITECTURES, gwhere)
    dfd_label = _get(merged, "dfd_label", int, gwhere)
    dfa_label = _get(merged, "dfa_label", int, gwhere)
    train = _get(merged, "train", int, gwhere, 0)
    test = _get(merged, "test", int, gwhere, 0)
    media = _choice(merged, "media", MEDIA, gwhere, "images")
    frames_per_video = _get(merged, "frames_per_video", int, gwhere, None)
    aliases = tuple(_get_list(merged, "aliases", gwhere))
    exclude_dirs = tuple(_get_list(merged, "exclude_dirs", gwhere, []))
    # Unseen sets never train, so a [defaults] val_from_train only applies to seen ones.
    val = (
        _get(merged, "val_from_train", int, gwhere, 0)
        if role == "seen"
        else _get(raw, "val_from_train", int, gwhere, 0)
    )

    if dfd_label not in (0, 1):
        raise ConfigError(f"{gwhere}: dfd_label must be 0 (real) or 1 (fake), got {dfd_label}")
    if (forgery_type == "Real") != (dfd_label == 0) or (architecture == "Real") != (dfd_label == 0):
        raise ConfigError(
            f'{gwhere}: a real set has dfd_label = 0, forgery_type = "Real" and architecture = "Real"; '
            "a fake set has none of them"
        )
    if role == "seen":
        if dfd_label == 0 and dfa_label != 0:
            raise ConfigError(f"{gwhere}: a seen real set has dfa_label = 0, got {dfa_label}")
        if dfd_label == 1 and dfa_label < 1:
            raise ConfigError(f"{gwhere}: a seen generator has dfa_label >= 1, got {dfa_label}")
        if architecture == "Other":
            raise ConfigError(
                f"{gwhere}: a seen generator needs architecture GAN, Diffusion or Flow (its prompt names it)"
            )
        if train <= 0:
            raise ConfigError(f"{gwhere}: a seen set needs train > 0")
    else:
        if dfa_label != -1:
            raise ConfigError(f"{gwhere}: an unseen set has dfa_label = -1, got {dfa_label}")
        if train != 0 or val != 0:
            raise ConfigError(f"{gwhere}: an unseen set is test-only; remove train and val_from_train")
    if train < 0 or test < 0 or val < 0:
        raise ConfigError(f"{gwhere}: train, test and val_from_train cannot be negative")
    if train + test == 0:
        raise ConfigError(f"{gwhere}: train and test are both 0; set at least one")
    if val >= train and role == "seen":
        raise ConfigError(f"{gwhere}: val_from_train ({val}) must be smaller than train ({train})")
    if not aliases or any(not a.strip() for a in aliases):
        raise ConfigError(f'{gwhere}: aliases must list at least one folder name ("." = the source root)')
    if media == "videos" and frames_per_video is None:
        raise ConfigError(f'{gwhere}: media = "videos" needs frames_per_video (frames sampled per video)')
    if frames_per_video is not None and frames_per_video < 1:
        raise ConfigError(f"{gwhere}: frames_per_video must be at least 1")
    if frames_per_video is not None and media == "images":
        raise ConfigError(f'{gwhere}: frames_per_video applies to media "frames" or "videos", not "images"')
    test_list = _get(merged, "test_list", str, gwhere, None)
    label_file = _get(merged, "label_file", str, gwhere, None)
    if media == "images" and (test_list or label_file):
        raise ConfigError(
            f'{gwhere}: test_list and label_file name videos; they need media "frames" or "videos"'
        )
    for key, value in (("test_list", test_list), ("label_file", label_file)):
        if value is not None and (Path(value).is_absolute() or value.startswith("~")):
            raise ConfigError(f"{gwhere}: {key} must be relative to the source root, got '{value}'")
    return GeneratorSpec(
        name=name,
        prompt_name=prompt_name,
        source=source,
        role=role,
        forgery_type=forgery_type,
        architecture=architecture,
        dfd_label=dfd_label,
        dfa_label=dfa_label,
        train=train,
        test=test,
        val_from_train=val,
        aliases=aliases,
        media=media,
        frames_per_video=frames_per_video,
        test_list=test_list,
        label_file=label_file,
        exclude_dirs=exclude_dirs,
        description=_get(merged, "description", str, gwhere, ""),
    )


def _check_generators(generators: list[GeneratorSpec], where: str) -> None:
    seen_names: dict[str, str] = {}
    for g in generators:
        key = normalize_name(g.name)
        if key in seen_names:
            raise ConfigError(f"{where}: generator '{g.name}' is listed twice (also as '{seen_names[key]}')")
        seen_names[key] = g.name
    # The attribution head has one output per seen class, so the labels must be 0..K-1 exactly.
    seen = sorted((g for g in generators if g.role == "seen"), key=lambda g: g.dfa_label)
    labels = [g.dfa_label for g in seen]
    if seen and labels != list(range(len(seen))):
        dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
        detail = f"label {dupes[0]} is used twice" if dupes else f"got {labels}"
        raise ConfigError(f"{where}: seen dfa_labels must be 0..{len(seen) - 1}, one per seen set ({detail})")
    # Two generators of one source must not claim the same folder name.
    owner: dict[tuple[str, str], str] = {}
    for g in generators:
        for alias in g.aliases:
            key = (g.source, normalize_name(alias))
            if key in owner and owner[key] != g.name:
                raise ConfigError(
                    f"{where}: alias '{alias}' of source {g.source} is claimed by both '{owner[key]}' and '{g.name}'"
                )
            owner[key] = g.name


def _check_keys(data: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    known = tuple(known)
    for key in data:
        if key not in known:
            raise ConfigError(unknown_key_message(key, known, where))


def _check_unique_normalized(items: Mapping[str, Any], where: str, what: str) -> None:
    seen: dict[str, str] = {}
    for name in items:
        key = normalize_name(name)
        if key in seen:
            raise ConfigError(
                f"{where}: {what} names '{seen[key]}' and '{name}' differ only in case or separators"
            )
        seen[key] = name


_MISSING = object()


def _get(data: Mapping[str, Any], key: str, tp: type, where: str, default: Any = _MISSING) -> Any:
    if key not in data:
        if default is _MISSING:
            raise ConfigError(f"{where}: missing required key '{key}'")
        return default
    value = data[key]
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
    if tp is str and not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
    return value


def _get_list(data: Mapping[str, Any], key: str, where: str, default: Any = _MISSING) -> list[str]:
    value = _get(data, key, list, where, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be an array of strings, got {value!r}")
    return value


def _choice(
    data: Mapping[str, Any], key: str, choices: tuple[str, ...], where: str, default: Any = _MISSING
) -> str:
    value = _get(data, key, str, where, default)
    if value not in choices:
        raise ConfigError(f"{where}: {key} must be one of {', '.join(choices)}; got '{value}'")
    return value
