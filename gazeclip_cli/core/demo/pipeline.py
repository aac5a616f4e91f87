"""`gazeclip demo`: the whole pipeline on the embedded synthetic benchmark, on a CPU, in minutes.

Stages, each the real code a user runs: render the benchmark and write its manifest ->
fit the demo's gaze estimator on renders whose gaze is known -> ``preprocess`` (aligned
mode, gaze cached by that estimator) -> ``train`` (the ``demo-small`` architecture) ->
``evaluate`` (the paper's tables) -> ``analyze`` (Figs 1 and 10) -> ``attribute`` one
seen fake and one unseen fake with the HTML report, which embeds the two figures.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gazeclip_cli.core.data.preprocess import preprocess
from gazeclip_cli.core.demo.gaze_fit import (
    DEMO_PREPROCESSING,
    GazeFitConfig,
    fit_on_renders,
    save_gaze_estimator,
)
from gazeclip_cli.core.demo.synthetic import SyntheticBenchmarkConfig, write_synthetic_benchmark
from gazeclip_cli.core.evaluate.runner import EvaluateResult, evaluate_model
from gazeclip_cli.core.model.folder import SYNTHETIC_KEY
from gazeclip_cli.core.train.run_config import RunConfig
from gazeclip_cli.core.train.trainer import TrainResult, train

Progress = Callable[[str, dict[str, Any]], None]
DEMO_ARCHITECTURE = "demo-small"


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of one demo run; ``quick()`` is the CI variant."""

    seed: int = 0
    benchmark: SyntheticBenchmarkConfig = field(default_factory=SyntheticBenchmarkConfig)
    gaze_fit: GazeFitConfig = field(default_factory=GazeFitConfig)
    epochs: int = 3
    batch_size: int = 16
    lr: float = 1e-3  # the paper's 1e-4 is for pretrained towers and 30 epochs; the demo has a few epochs
    lr_step_epochs: int = 2
    threshold: float = 0.9
    analysis_per_class: int = 24  # t-SNE samples per class in the report's Fig. 10

    @classmethod
    def quick(cls, seed: int = 0) -> DemoConfig:
        return cls(
            seed=seed,
            benchmark=SyntheticBenchmarkConfig.quick(seed),
            gaze_fit=GazeFitConfig.quick(seed),
            epochs=3,
            lr_step_epochs=2,
            analysis_per_class=12,
        )


@dataclass
class DemoResult:
    out_dir: Path
    seconds: dict[str, float]
    gaze_error_deg: float
    gaze_baseline_deg: float
    train: TrainResult
    evaluation: EvaluateResult
    report_html: Path
    attributed: list[dict[str, Any]]
    headline: dict[str, float | None]
    analysis_dir: Path | None = None  # Fig. 1 and Fig. 10 with their numbers (also in the report)


def _headline(evaluation: EvaluateResult, num_classes: int) -> dict[str, float | None]:
    report = evaluation.report
    seen = [s for s in report.sets if s.kind == "seen"]
    unseen = [s for s in report.sets if s.kind == "unseen"]
    closed = [s.closed_set_acc for s in seen if s.closed_set_acc is not None]
    aucs = [s.detection_auc for s in seen if s.detection_auc is not None]
    rejected = [s.open_set_acc for s in unseen if s.open_set_acc is not None]
    return {
        "seen_closed_set_acc": float(np.mean(closed)) if closed else None,
        "chance_closed_set_acc": 1.0 / num_classes,
        "seen_detection_auc": float(np.mean(aucs)) if aucs else None,
        "unseen_rejected_as_unknown": float(np.mean(rejected)) if rejected else None,
        "unseen_detection_auc": report.unseen_average.detection_auc if report.unseen_average else None,
    }


def run_demo(
    out_dir: str | Path, config: DemoConfig = DemoConfig(), progress: Progress | None = None
) -> DemoResult:
    """Run every stage into ``out_dir`` (replaced if it holds a previous demo)."""
    from gazeclip_cli.core.analyze.report import demo_figures
    from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings
    from gazeclip_cli.core.inference.report_html import attribute_with_report, write_report

    out = Path(out_dir)
    for sub in ("data", "cache", "run", "results", "analysis"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda stage, info: None)
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    say("stage", {"name": "render", "text": "rendering the synthetic benchmark"})
    bench = write_synthetic_benchmark(
        out / "data", config.benchmark, progress=lambda d, n: say("render", {"done": d, "total": n})
    )
    seconds["render"] = time.perf_counter() - t

    t = time.perf_counter()
    say("stage", {"name": "gaze", "text": "fitting the demo gaze estimator on renders with known gaze"})
    fit = fit_on_renders(
        config.gaze_fit, progress=lambda phase, d, n: say("gaze", {"phase": phase, "done": d, "total": n})
    )
    save_gaze_estimator(fit, out / "gaze-estimator.safetensors")
    seconds["gaze_fit"] = time.perf_counter() - t

    t = time.perf_counter()
    say(
        "stage",
        {"name": "preprocess", "text": "preprocessing (aligned faces, ETH-XGaze normalisation, cached gaze)"},
    )
    preprocess(
        bench.manifest,
        out / "cache",
        DEMO_PREPROCESSING,
        gaze_estimator=fit.estimator,
        workers=2,
        progress=lambda p: say("preprocess", {"progress": p}),
    )
    seconds["preprocess"] = time.perf_counter() - t

    t = time.perf_counter()
    say("stage", {"name": "train", "text": f"training GazeCLIP ({DEMO_ARCHITECTURE}) on the CPU"})
    run = RunConfig(
        architecture=DEMO_ARCHITECTURE,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        lr_step_epochs=config.lr_step_epochs,
        seed=config.seed,
        workers=0,
        device="cpu",
        log_every_steps=5,
    )
    estimator_state = fit.estimator.state_dict()
    trained = train(
        run,
        out / "cache",
        out / "run",
        progress=say,
        prepare_model=lambda model: model.gaze_encoder.estimator.load_state_dict(estimator_state),
        folder_meta={SYNTHETIC_KEY: True},  # every verdict of this model says it learned from renders
    )
    seconds["train"] = time.perf_counter() - t

    t = time.perf_counter()
    say("stage", {"name": "evaluate", "text": "evaluating (the paper's tables)"})
    evaluation = evaluate_model(
        trained.model_dir,
        out / "cache",
        out / "results",
        tau=config.threshold,
        device="cpu",
        progress=lambda p: say("evaluate", {"progress": p}),
    )
    seconds["evaluate"] = time.perf_counter() - t

    t = time.perf_counter()
    say(
        "stage",
        {"name": "analyze", "text": "analysing: gaze distance per generator (Fig. 1), t-SNE (Fig. 10)"},
    )
    figures = demo_figures(
        out / "cache",
        trained.model_dir,
        out / "analysis",
        per_class=config.analysis_per_class,
        seed=config.seed,
    )
    seconds["analyze"] = time.perf_counter() - t

    t = time.perf_counter()
    say("stage", {"name": "attribute", "text": "attributing two test images with the HTML report"})
    predictor = Predictor(
        trained.model_dir,
        device="cpu",
        settings=PredictorSettings(threshold=config.threshold, face_mode="aligned"),
    )
    samples = _pick_samples(bench.manifest)
    entries = [attribute_with_report(predictor, path) for path in samples]
    attributed = [entry.result.as_dict() for entry in entries]
    report = write_report(out / "report.html", entries, predictor.provenance({"command": "demo"}), figures)
    seconds["attribute"] = time.perf_counter() - t
    return DemoResult(
        out_dir=out,
        seconds=seconds,
        gaze_error_deg=fit.heldout_error_deg,
        gaze_baseline_deg=fit.mean_baseline_error_deg,
        train=trained,
        evaluation=evaluation,
        report_html=report,
        attributed=attributed,
        headline=_headline(evaluation, predictor.model.cfg.num_classes),
        analysis_dir=out / "analysis",
    )


def _pick_samples(manifest: Path) -> list[Path]:
    """The first test image of a seen generator and of an unseen one."""
    from gazeclip_cli.core.data.manifest import read_manifest

    m = read_manifest(manifest)
    seen = next(r for r in m.rows if r.split == "test" and int(r.dfa_label) > 0)
    unseen = next(r for r in m.rows if r.split == "test" and int(r.dfa_label) < 0 and int(r.dfd_label) == 1)
    return [Path(m.resolve(seen)), Path(m.resolve(unseen))]
