"""An `evaluate` result folder: the tables, and ``provenance.json`` saying what produced them.

``provenance.json`` records the architecture, its whole config, the model folder's hash, the
test data (cache index hash, split, samples per set) and the threshold, so a row of a
comparison table can always be traced to its model and refused beside rows of other data.
:func:`read_result_folder` is the one reader (``gazeclip compare`` uses it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gazeclip_cli import __version__
from gazeclip_cli.core.config_io import to_dict
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.evaluate.metrics import EvaluationReport, RobustnessResult
from gazeclip_cli.core.evaluate.tables import load_report, load_robustness

PROVENANCE_FILE = "provenance.json"
REPORT_FILE = "evaluation.json"
ROBUSTNESS_FILE = "robustness.json"
EFFICIENCY_FILE = "efficiency.json"
PROVENANCE_FORMAT = "gazeclip-result/1"


@dataclass(frozen=True)
class ResultFolder:
    """One evaluated model: its report and, where it was asked for, robustness and efficiency."""

    path: Path
    provenance: dict[str, Any]
    report: EvaluationReport
    robustness: RobustnessResult | None
    efficiency: dict[str, Any] | None

    @property
    def architecture(self) -> str:
        return str(self.provenance["architecture"])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.provenance["config"])


def write_provenance(
    out_dir: Path,
    *,
    cfg: Any,
    model_dir: Path,
    model_meta: Mapping[str, Any],
    model_sha256: str,
    weights_sha256: str,
    cache_dir: Path,
    cache_index_sha256: str,
    split: str,
    set_sizes: Mapping[str, int],
    tau: float,
    device: str,
    robustness: Mapping[str, Any] | None,
) -> Path:
    """Write ``provenance.json`` into ``out_dir``.

    Args:
        cfg: the evaluated model's config dataclass (written in full).
        model_dir, model_meta: the model folder and its meta.json.
        model_sha256: :func:`~gazeclip_cli.core.model.folder.model_folder_sha256` of the folder.
        cache_index_sha256: SHA-256 of the cache's index, which names every test file and label.
        set_sizes: samples per test set.
        robustness: the corruptions and severities evaluated, or None.
    """
    meta = model_meta
    record = {
        "format": PROVENANCE_FORMAT,
        "architecture": cfg.name,
        "family": cfg.family,
        "config": to_dict(cfg),
        "model": {
            "path": str(Path(model_dir).resolve()),
            "sha256": model_sha256,
            "weights_sha256": weights_sha256,
            "weight_files": meta.get("weight_files", {}),
            "trained_on": meta.get("trained_on", ""),
            "tool_version": meta.get("tool_version", ""),
        },
        "test": {
            "cache": str(Path(cache_dir).resolve()),
            "index_sha256": cache_index_sha256,
            "split": split,
            "sets": dict(set_sizes),
        },
        "tau": tau,
        "robustness": dict(robustness) if robustness is not None else None,
        "device": device,
        "tool_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = Path(out_dir) / PROVENANCE_FILE
    try:
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror}); check the folder") from exc
    return path


def write_efficiency(out_dir: Path, efficiency: Mapping[str, Any]) -> Path:
    """Write ``efficiency.json`` (Table VII's columns measured on this machine)."""
    path = Path(out_dir) / EFFICIENCY_FILE
    try:
        path.write_text(json.dumps(dict(efficiency), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror}); check the folder") from exc
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{path}: not a readable JSON file ({exc}); write it again with gazeclip evaluate"
        ) from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object; write it again with gazeclip evaluate")
    return data


def read_result_folder(folder: str | Path) -> ResultFolder:
    """Read an `evaluate` output folder; DataError naming the file when one is missing or malformed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such result folder (write one with gazeclip evaluate --out)")
    prov_path = folder / PROVENANCE_FILE
    if not prov_path.is_file():
        raise DataError(
            f"{folder}: no {PROVENANCE_FILE} (written by gazeclip evaluate since comparison tables); "
            "evaluate the model again into this folder"
        )
    provenance = _read_json(prov_path)
    if provenance.get("format") != PROVENANCE_FORMAT:
        raise DataError(
            f"{prov_path}: format is {provenance.get('format')!r}, expected {PROVENANCE_FORMAT!r}; "
            "write it again with gazeclip evaluate"
        )
    missing = [k for k in ("architecture", "config", "model", "test", "tau") if k not in provenance]
    if missing:
        raise DataError(
            f"{prov_path}: malformed, no {', '.join(missing)}; write it again with gazeclip evaluate"
        )
    report = load_report(folder / REPORT_FILE)
    robustness = load_robustness(folder / ROBUSTNESS_FILE) if (folder / ROBUSTNESS_FILE).is_file() else None
    efficiency = _read_json(folder / EFFICIENCY_FILE) if (folder / EFFICIENCY_FILE).is_file() else None
    return ResultFolder(folder, provenance, report, robustness, efficiency)
