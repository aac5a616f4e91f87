"""Fake/target pairs for Fig. 7: each fake face with the real face it was made from.

From a CSV (``fake,real`` source paths) or from the protocol's file names: Celeb-DF++'s
``idA_idB_NNNN`` against ``Celeb-real/idA_NNNN``, DF40's ``A_B`` (FF++) and ``idA_idB_NNNN``
(Celeb-DF) face swaps against the original video. Frames pair with the target video's
nearest frame. docs/DATA.md states every rule.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from gazeclip_cli.core.data.cache import CacheRow
from gazeclip_cli.core.data.protocol import normalize_name
from gazeclip_cli.core.errors import ConfigError, DataError

NAME_RULES = ("celeb-df++", "df40")
CSV_COLUMNS = ("fake", "real")
CELEB_FAKE = re.compile(r"(id\d+)_(id\d+)_(\d{4})")  # Celeb-DF(++): target id, source id, target clip
FF_FAKE = re.compile(r"(\d{3})_(\d{3})")  # FaceForensics++ (DF40's ff/): target video, source video
CELEB_REAL_DIR = "celeb-real"
CELEB_FAKE_DIR = "celeb-synthesis"
CELEB_DF_V2 = normalize_name("Celeb-DF")  # the source name DF40's cdf/ targets come from


@dataclass(frozen=True)
class Pair:
    """One fake row and the real row it is compared with (indices into the rows given)."""

    fake: int
    real: int
    rule: str  # "csv", "celeb-df++" or "df40"
    frame_offset: int  # |fake frame - real frame|; 0 for still images


@dataclass
class Pairing:
    """The pairs found and what could not be paired, per generator."""

    pairs: list[Pair] = field(default_factory=list)
    unmatched: dict[str, int] = field(default_factory=dict)  # a rule applied, no target row found
    ambiguous: dict[str, int] = field(default_factory=dict)  # the target name fits several real videos
    csv_missing: list[str] = field(default_factory=list)  # CSV lines naming a file no cache holds

    def to_dict(self) -> dict[str, object]:
        rules: dict[str, int] = {}
        for p in self.pairs:
            rules[p.rule] = rules.get(p.rule, 0) + 1
        return {
            "pairs": len(self.pairs),
            "by_rule": rules,
            "unmatched_fakes": self.unmatched,
            "ambiguous_fakes": self.ambiguous,
            "csv_lines_without_rows": len(self.csv_missing),
            "csv_lines_without_rows_examples": self.csv_missing[:5],
        }


def file_key(path: str | os.PathLike[str]) -> str:
    """The form two spellings of one source path share: absolute, normalised, links not resolved."""
    return os.path.normcase(os.path.normpath(os.path.abspath(path)))


def video_name(row: CacheRow) -> str:
    """The name a dataset gives a row's video: the last part of its video id, else the file's stem."""
    if row.video_id:
        return PurePath(row.video_id).name
    return Path(row.file).stem if row.file is not None else ""


def _video_key(row: CacheRow) -> tuple[str, str]:
    """What tells two videos apart: generator and video id (or the file, for a still image)."""
    return (row.generator, row.video_id or (file_key(row.file) if row.file is not None else row.sample_id))


def _nearest_frame(fake: CacheRow, candidates: Sequence[int], rows: Sequence[CacheRow]) -> tuple[int, int]:
    """The candidate row whose frame index is nearest the fake's (first in file order on ties)."""
    target = fake.frame_index or 0
    best = min(candidates, key=lambda i: (abs((rows[i].frame_index or 0) - target), i))
    return best, abs((rows[best].frame_index or 0) - target)


def _parts(row: CacheRow) -> list[str]:
    return [p.casefold() for p in Path(file_key(row.file)).parts] if row.file is not None else []


def _root_before(parts: list[str], folder: str) -> tuple[str, ...] | None:
    return tuple(parts[: parts.index(folder)]) if folder in parts else None


def _target(row: CacheRow, rule: str) -> tuple[str, bool] | None:
    """(target video name, whether it is a Celeb-DF name) of a fake under ``rule``; None if it does not apply."""
    if normalize_name(row.source) != normalize_name({"celeb-df++": "Celeb-DF++", "df40": "DF40"}[rule]):
        return None
    name = video_name(row)
    m = CELEB_FAKE.fullmatch(name)
    if m:
        return f"{m.group(1)}_{m.group(3)}", True
    if rule == "df40":
        m = FF_FAKE.fullmatch(name)
        if m:
            return m.group(1), False
    return None


def pairs_from_names(
    rows: Sequence[CacheRow], rules: Sequence[str] = NAME_RULES, skip: set[int] | None = None
) -> Pairing:
    """Pair fakes with their targets by the datasets' file names (module docstring; docs/DATA.md).

    Args:
        rows: every row that may take part, fakes and reals, of one or more caches.
        rules: which name rules to apply.
        skip: fake rows already paired (by a CSV), left alone.
    """
    for rule in rules:
        if rule not in NAME_RULES:
            raise ConfigError(f"unknown pair rule '{rule}' (known: {', '.join(NAME_RULES)})")
    reals_by_name: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if r.dfd == 0:
            reals_by_name.setdefault(video_name(r), []).append(i)
    pairing = Pairing()
    skip = skip or set()
    for i, fake in enumerate(rows):
        if fake.dfd != 1 or i in skip:
            continue
        for rule in rules:
            target = _target(fake, rule)
            if target is None:
                continue
            name, celeb = target
            candidates = reals_by_name.get(name, [])
            if celeb:
                candidates = [j for j in candidates if CELEB_REAL_DIR in _parts(rows[j])]
                own_root = _root_before(_parts(fake), CELEB_FAKE_DIR)
                same_root = [
                    j for j in candidates if _root_before(_parts(rows[j]), CELEB_REAL_DIR) == own_root
                ]
                if own_root is not None and same_root:
                    candidates = same_root
            videos: dict[tuple[str, str], list[int]] = {}
            for j in candidates:
                videos.setdefault(_video_key(rows[j]), []).append(j)
            if celeb and rule == "df40" and len(videos) > 1:
                # DF40's cdf/ fakes were made from Celeb-DF (v2); prefer its copy of the target.
                v2 = {k: v for k, v in videos.items() if normalize_name(rows[v[0]].source) == CELEB_DF_V2}
                videos = v2 or videos
            if not videos:
                pairing.unmatched[fake.generator] = pairing.unmatched.get(fake.generator, 0) + 1
            elif len(videos) > 1:
                pairing.ambiguous[fake.generator] = pairing.ambiguous.get(fake.generator, 0) + 1
            else:
                real, offset = _nearest_frame(fake, next(iter(videos.values())), rows)
                pairing.pairs.append(Pair(fake=i, real=real, rule=rule, frame_offset=offset))
            break
    return pairing


def pairs_from_csv(path: str | os.PathLike[str], rows: Sequence[CacheRow]) -> Pairing:
    """Pairs a CSV names: columns ``fake`` and ``real``, source paths (relative to the CSV's folder, or absolute).

    A path names a still image or a video; every cached frame of a fake video pairs with the
    real video's nearest frame. Lines whose files no cache holds are counted, not fatal.

    Raises:
        DataError: the file is missing or unreadable, lacks the columns, or has an empty cell.
    """
    path = Path(path)
    by_file: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if r.file is not None:
            by_file.setdefault(file_key(r.file), []).append(i)
    pairing = Pairing()
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(
                    f"{path}: needs a header with the columns {', '.join(CSV_COLUMNS)} "
                    f"(found {', '.join(reader.fieldnames or []) or 'none'})"
                )
            for n, line in enumerate(reader, start=2):
                fake_path, real_path = (line.get("fake") or "").strip(), (line.get("real") or "").strip()
                if not fake_path or not real_path:
                    raise DataError(f"{path}: line {n}: both a fake and a real path are needed")
                fakes = by_file.get(file_key(path.parent / fake_path), [])
                reals = by_file.get(file_key(path.parent / real_path), [])
                if not fakes or not reals:
                    pairing.csv_missing.append(f"line {n}: {fake_path if not fakes else real_path}")
                    continue
                for i in fakes:
                    real, offset = _nearest_frame(rows[i], reals, rows)
                    pairing.pairs.append(Pair(fake=i, real=real, rule="csv", frame_offset=offset))
    except FileNotFoundError:
        raise DataError(f"{path}: pairs file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable pairs file ({exc})") from None
    return pairing


def find_pairs(
    rows: Sequence[CacheRow],
    csv_path: str | os.PathLike[str] | None = None,
    rules: Sequence[str] = NAME_RULES,
) -> Pairing:
    """The CSV's pairs first, then the name rules for every fake the CSV did not pair."""
    pairing = pairs_from_csv(csv_path, rows) if csv_path is not None else Pairing()
    named = pairs_from_names(rows, rules, skip={p.fake for p in pairing.pairs}) if rules else Pairing()
    return Pairing(
        pairs=pairing.pairs + named.pairs,
        unmatched=named.unmatched,
        ambiguous=named.ambiguous,
        csv_missing=pairing.csv_missing,
    )
