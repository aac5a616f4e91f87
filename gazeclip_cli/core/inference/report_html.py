"""A self-contained HTML report of ``attribute``: one file a person can open and hand on.

Per input file: the image with each face's box (red: fake, green: real) and gaze arrow,
and per face the crop the model saw, its Grad-CAM heatmap over that crop, the verdict,
the attribution probabilities of every class as bars (the threshold marked) and the gaze.
The provenance block closes the report. Images are embedded as base64 PNG and the chart
is plain HTML: no script, no stylesheet or font from elsewhere, nothing fetched.

The gaze arrow follows ETH-XGaze's ``draw_gaze``: from the face centre, length L,
``dx = -L sin(yaw) cos(pitch)``, ``dy = -L sin(pitch)``, with (pitch, yaw) turned back from
the normalised camera into the photo's camera (:func:`~.predictor.camera_gaze`).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from gazeclip_cli.core.inference.gradcam import GradCam
from gazeclip_cli.core.inference.predictor import InputResult, Predictor, PreparedInput, camera_gaze
from gazeclip_cli.core.inference.provenance import Provenance

# The report shows the photo at most this wide or high; the evidence itself is hashed in full.
MAX_SIDE = 1024
CROP_DISPLAY = 224
FAKE_RGB = (220, 40, 40)
REAL_RGB = (30, 170, 60)


@dataclass
class ReportEntry:
    """One input file in the report."""

    prepared: PreparedInput  # with ``image`` kept
    result: InputResult
    heatmaps: list[GradCam | None] = field(default_factory=list)  # per prepared face, in order


def png_base64(image: np.ndarray) -> str:
    """RGB uint8 (H, W, 3) or grey (H, W) -> a ``data:`` URI of a PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def gaze_arrow(
    box: Sequence[float], pitch: float, yaw: float, length: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Start and end of the gaze arrow: from the box centre, ETH-XGaze's ``draw_gaze`` projection."""
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    dx = -length * math.sin(yaw) * math.cos(pitch)
    dy = -length * math.sin(pitch)
    return (cx, cy), (cx + dx, cy + dy)


def annotate(entry: ReportEntry) -> np.ndarray:
    """The photo, scaled to at most :data:`MAX_SIDE`, with every face's box, index and gaze arrow."""
    image = entry.prepared.image
    assert image is not None, "the report needs the decoded image (prepare(..., keep_image=True))"
    h, w = image.shape[:2]
    scale = min(1.0, MAX_SIDE / max(h, w))
    canvas = (
        image
        if scale == 1.0
        else cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    )
    canvas = np.ascontiguousarray(canvas).copy()
    thick = max(2, round(max(canvas.shape[:2]) / 300))
    rotations = {f.face_index: f.rotation for f in entry.prepared.faces}
    for p in entry.result.faces:
        colour = FAKE_RGB if p.verdict == "fake" else REAL_RGB
        x0, y0, x1, y1 = (v * scale for v in p.box)
        cv2.rectangle(canvas, (round(x0), round(y0)), (round(x1), round(y1)), colour, thick)
        cv2.putText(
            canvas, f"#{p.face_index}", (round(x0), max(12, round(y0) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * thick / 2 + 0.3, colour, max(1, thick // 2), cv2.LINE_AA,
        )  # fmt: skip
        if p.gaze_pitch is not None and p.gaze_yaw is not None:
            pitch, yaw = camera_gaze(p.gaze_pitch, p.gaze_yaw, rotations.get(p.face_index))
            start, end = gaze_arrow((x0, y0, x1, y1), pitch, yaw, length=(x1 - x0))
            cv2.arrowedLine(
                canvas, (round(start[0]), round(start[1])), (round(end[0]), round(end[1])),
                (255, 210, 0), thick, cv2.LINE_AA, tipLength=0.2,
            )  # fmt: skip
    return canvas


def heatmap_overlay(crop: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The crop with a Grad-CAM heatmap (JET colours) blended over it, RGB uint8."""
    heat = cv2.resize(
        heatmap.astype(np.float32), (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR
    )
    colour = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)[
        :, :, ::-1
    ]  # BGR -> RGB
    return np.uint8(
        np.clip((1 - alpha) * crop.astype(np.float32) + alpha * colour.astype(np.float32), 0, 255)
    )


def _bars(names: Sequence[str], probs: Sequence[float], threshold: float, highlight: int) -> str:
    rows = []
    for i, (name, p) in enumerate(zip(names, probs, strict=True)):
        cls = "bar top" if i == highlight else "bar"
        rows.append(
            f'<div class="row"><span class="label">{html.escape(name)}</span>'
            f'<span class="track"><span class="{cls}" style="width:{100 * p:.2f}%"></span>'
            f'<span class="tau" style="left:{100 * threshold:.2f}%"></span></span>'
            f'<span class="value">{p:.4f}</span></div>'
        )
    return '<div class="chart">' + "".join(rows) + "</div>"


def _kv_table(items: Sequence[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in items)
    return f'<table class="kv">{cells}</table>'


def _flatten(prefix: str, value: object) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out += _flatten(f"{prefix}.{k}" if prefix else str(k), v)
        return out
    if isinstance(value, list):
        return [(prefix, ", ".join(str(v) for v in value))]
    return [(prefix, "" if value is None else str(value))]


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
.photo{max-width:100%;border:1px solid #ccc}.face{display:flex;gap:1.5em;margin:1em 0;flex-wrap:wrap}
.face img{width:224px;height:224px;image-rendering:auto;border:1px solid #ccc}
.verdict-fake{color:#c00;font-weight:bold}.verdict-real{color:#080;font-weight:bold}
.chart{min-width:380px}.row{display:flex;align-items:center;gap:.5em;font-size:.85em;margin:2px 0}
.label{width:9em;text-align:right}.track{position:relative;width:220px;height:12px;background:#eee}
.bar{position:absolute;left:0;top:0;bottom:0;background:#7a9cc6}.bar.top{background:#2a5ca8}
.tau{position:absolute;top:-2px;bottom:-2px;border-left:2px dashed #c60}
.value{font-variant-numeric:tabular-nums}.kv th{text-align:left;padding-right:1em;font-weight:normal;color:#555}
.kv td{font-family:monospace;word-break:break-all}.error{color:#c00}figure{margin:0}figcaption{font-size:.8em;color:#555}
"""


def _face_html(entry: ReportEntry, index: int, names: Sequence[str], threshold: float) -> str:
    pred = entry.result.faces[index]
    face = entry.prepared.faces[index]
    crop_uri = png_base64(cv2.resize(face.crop, (CROP_DISPLAY, CROP_DISPLAY), interpolation=cv2.INTER_LINEAR))
    cam = entry.heatmaps[index] if index < len(entry.heatmaps) else None
    figures = (
        f'<figure><img alt="face crop" src="{crop_uri}"><figcaption>crop the model saw</figcaption></figure>'
    )
    if cam is not None:
        overlay = heatmap_overlay(face.crop, cam.heatmap)
        heat_uri = png_base64(
            cv2.resize(overlay, (CROP_DISPLAY, CROP_DISPLAY), interpolation=cv2.INTER_LINEAR)
        )
        figures += (
            f'<figure><img class="heatmap" alt="Grad-CAM heatmap" src="{heat_uri}">'
            f"<figcaption>Grad-CAM for {html.escape(names[cam.class_index])}</figcaption></figure>"
        )
    gaze = (
        "n/a"
        if pred.gaze_pitch is None
        else f"pitch {pred.gaze_pitch:+.3f} rad, yaw {pred.gaze_yaw:+.3f} rad (normalised camera)"
    )
    attribution = html.escape(pred.attribution)
    facts = _kv_table(
        [
            ("verdict", f"{pred.verdict} (P(fake) = {pred.p_fake:.4f})"),
            (
                "attribution",
                f"{pred.attribution} (top class {pred.generator}, p = {pred.generator_probability:.4f})",
            ),
            ("top 3", "; ".join(f"{c.name} {c.probability:.4f}" for c in pred.top)),
            ("gaze", gaze),
            ("face box", " ".join(f"{v:.1f}" for v in pred.box)),
        ]
    )
    best = int(np.argmax(pred.probabilities))
    chart = _bars(["P(fake)"], [pred.p_fake], 0.5, -1) + _bars(names, pred.probabilities, threshold, best)
    return (
        f'<h3>Face #{pred.face_index}: <span class="verdict-{pred.verdict}">{pred.verdict}</span>, '
        f"{attribution}</h3>"
        f'<div class="face">{figures}<div>{facts}<p>Attribution probabilities (dashed line: '
        f"threshold {threshold:g}; the detection bar's line is 0.5):</p>{chart}</div></div>"
    )


def render_report(entries: Sequence[ReportEntry], provenance: Provenance) -> str:
    """The whole report as one HTML string."""
    names = provenance.model.class_names
    threshold = float(provenance.settings.get("threshold", 0.9))
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>gazeclip attribution report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>gazeclip attribution report</h1>",
        f"<p>Generated {html.escape(provenance.time_utc)} by gazeclip {html.escape(provenance.tool_version)} "
        f"with the model in {html.escape(provenance.model.path)}.</p>",
    ]
    for entry in entries:
        res = entry.result
        parts.append(f"<h2>{html.escape(res.path)}</h2>")
        parts.append(_kv_table([("SHA-256", res.sha256 or "n/a"), ("kind", res.kind)]))
        if res.error is not None:
            parts.append(f'<p class="error">{html.escape(res.error)}</p>')
            continue
        if entry.prepared.image is not None:
            parts.append(
                f'<img class="photo" alt="photo with faces marked" src="{png_base64(annotate(entry))}">'
            )
        for i in range(len(res.faces)):
            parts.append(_face_html(entry, i, names, threshold))
        for failure in res.face_failures:
            parts.append(f'<p class="error">{html.escape(failure.error)}</p>')
    prov = provenance.as_dict()
    parts.append('<h2 id="provenance">Provenance</h2>')
    parts.append(_kv_table(_flatten("", prov)))
    parts.append(
        "<details><summary>as JSON</summary><pre>"
        + html.escape(json.dumps(prov, indent=2, ensure_ascii=False))
        + "</pre></details>"
    )
    parts.append("</body></html>\n")
    return "".join(parts)


def attribute_with_report(predictor: Predictor, path: str | os.PathLike[str]) -> ReportEntry:
    """Attribute one file keeping what the report shows: the image, the result, a heatmap per face."""
    prepared = predictor.prepare(path, keep_image=True)
    result = predictor.result(prepared, predictor.predict_faces(prepared.faces) if prepared.faces else [])
    heatmaps = (
        [predictor.gradcam(f) for f in prepared.faces] if predictor.model.cam_layer() is not None else []
    )
    return ReportEntry(prepared, result, heatmaps)


def write_report(
    path: str | os.PathLike[str], entries: Sequence[ReportEntry], provenance: Provenance
) -> Path:
    """Write the report atomically (a temporary file renamed into place); returns its path."""
    path = Path(path)
    text = render_report(entries, provenance)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # plain open(): the user's umask applies
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
