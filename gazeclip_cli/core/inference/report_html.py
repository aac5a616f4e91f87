"""A self-contained HTML report of ``attribute``: one file a person can open and hand on.

Per input file: the image with each face's box (red: fake, green: real) and gaze arrow,
and per face the crop the model saw, its Grad-CAM heatmap over that crop with its colour
scale, the verdict, the attribution probabilities of every class as bars (the threshold
marked) and the gaze. The provenance block closes the report. Images are embedded as
base64 PNG and the chart is plain HTML: no script, no stylesheet or font from elsewhere,
nothing fetched. The layout reflows down to a phone's width (no fixed width over 360 px).

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
from gazeclip_cli.core.inference.predictor import (
    FacePrediction,
    InputResult,
    Predictor,
    PreparedInput,
    camera_gaze,
)
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
    headlines: list[str] = field(default_factory=list)  # per face, the verdict in words (Predictor.describe)


@dataclass(frozen=True)
class ReportFigure:
    """A figure file (PNG or SVG) the report embeds, e.g. an analysis of the data the model saw."""

    title: str
    path: Path
    caption: str = ""


def figure_data_uri(path: str | os.PathLike[str]) -> str:
    """A PNG or SVG file as a ``data:`` URI."""
    path = Path(path)
    kind = "image/svg+xml" if path.suffix.lower() == ".svg" else "image/png"
    return f"data:{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


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
    font_scale, font_thick = 0.5 * thick / 2 + 0.3, max(1, thick // 2)
    for p in entry.result.faces:
        colour = FAKE_RGB if p.verdict == "fake" else REAL_RGB
        x0, y0, x1, y1 = (v * scale for v in p.box)
        cv2.rectangle(canvas, (round(x0), round(y0)), (round(x1), round(y1)), colour, thick)
        text = f"#{p.face_index}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, font_thick)
        lx, ly = label_origin((x0, y0, x1, y1), (tw, th + base), canvas.shape[:2], pad=thick + 2)
        cv2.putText(
            canvas, text, (lx, ly), cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour, font_thick, cv2.LINE_AA
        )
        if p.gaze_pitch is not None and p.gaze_yaw is not None:
            pitch, yaw = camera_gaze(p.gaze_pitch, p.gaze_yaw, rotations.get(p.face_index))
            start, end = gaze_arrow((x0, y0, x1, y1), pitch, yaw, length=(x1 - x0))
            cv2.arrowedLine(
                canvas, (round(start[0]), round(start[1])), (round(end[0]), round(end[1])),
                (255, 210, 0), thick, cv2.LINE_AA, tipLength=0.2,
            )  # fmt: skip
    return canvas


def label_origin(
    box: Sequence[float], text_size: tuple[int, int], image_shape: tuple[int, int], pad: int = 4
) -> tuple[int, int]:
    """Baseline origin of a face's label: just above its box, or just inside it when the box
    touches the image's top edge, so that the whole label stays within the image.

    Args:
        box: x0 y0 x1 y1 in canvas pixels.
        text_size: (width, height) of the label, descent included.
        image_shape: (height, width) of the canvas.
    """
    tw, th = text_size
    h, w = image_shape
    x = int(min(max(0, round(box[0])), max(0, w - tw)))
    above = round(box[1]) - pad
    y = above if above - th >= 0 else round(box[1]) + pad + th  # inside the box, below its top edge
    return x, int(min(y, h - 1))


def colour_scale(width: int = CROP_DISPLAY, height: int = 12) -> np.ndarray:
    """The heatmap's colour scale (JET, as :func:`heatmap_overlay`), 0 on the left to 1 on the right, RGB."""
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.float32), (height, 1))
    return cv2.applyColorMap(np.uint8(ramp), cv2.COLORMAP_JET)[:, :, ::-1]  # BGR -> RGB


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


# Every width is relative or at most 224 px (the crops), so the report reads at a phone's
# 360-390 px; long paths, hashes and class names wrap instead of overflowing.
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1em auto;padding:0 1em;color:#222;max-width:1100px;overflow-wrap:anywhere}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
.notice{background:#fff3cd;border:1px solid #c9a227;padding:.6em .8em;font-weight:bold}
.photo{max-width:100%;height:auto;border:1px solid #ccc}.face{display:flex;gap:1.5em;margin:1em 0;flex-wrap:wrap}
.face img{display:block;width:224px;max-width:100%;height:auto;image-rendering:auto;border:1px solid #ccc}
.face img.scale{height:12px;border:0}.facts{flex:1 1 16em;min-width:0}
.verdict-fake{color:#c00;font-weight:bold}.verdict-real{color:#080;font-weight:bold}
.chart{width:100%;max-width:36em}.row{display:flex;align-items:center;gap:.5em;font-size:.85em;margin:2px 0}
.label{flex:0 1 9em;min-width:0;text-align:right}.track{position:relative;flex:1 1 8em;min-width:3em;height:12px;background:#eee}
.bar{position:absolute;left:0;top:0;bottom:0;background:#7a9cc6}.bar.top{background:#2a5ca8}
.tau{position:absolute;top:-2px;bottom:-2px;border-left:2px dashed #c60}
.value{flex:0 0 auto;font-variant-numeric:tabular-nums}
.kv{border-collapse:collapse;width:100%;table-layout:fixed}.kv th{width:9em;text-align:left;vertical-align:top;padding-right:1em;font-weight:normal;color:#555}
.kv td{font-family:monospace}.error{color:#c00}figure{margin:0;max-width:100%}
figcaption{font-size:.8em;color:#555;max-width:224px}.scale-labels{display:flex;justify-content:space-between}
pre{white-space:pre-wrap}
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
            f'<img class="scale" alt="colour scale, blue (0) to red (1)" src="{png_base64(colour_scale())}">'
            '<figcaption><span class="scale-labels"><span>0 low</span><span>1 high</span></span>'
            f"{html.escape(gradcam_caption(cam, names, pred))}</figcaption></figure>"
        )
    gaze = (
        "n/a"
        if pred.gaze_pitch is None
        else f"pitch {pred.gaze_pitch:+.3f} rad, yaw {pred.gaze_yaw:+.3f} rad (normalised camera)"
    )
    headline = (
        entry.headlines[index] if index < len(entry.headlines) else f"{pred.verdict}, {pred.attribution}"
    )
    no_det, no_att = (
        "absent: the model has no detection expert",
        "absent: the model has no attribution expert",
    )
    verdict = no_det if pred.p_fake is None else f"{pred.verdict} (P(fake) = {pred.p_fake:.4f})"
    attributed = (
        no_att
        if pred.generator_probability is None
        else f"{pred.attribution} (top class {pred.generator}, p = {pred.generator_probability:.4f})"
    )
    facts = _kv_table(
        [
            ("verdict", verdict),
            ("attribution", attributed),
            ("top 3", "; ".join(f"{c.name} {c.probability:.4f}" for c in pred.top) if pred.top else no_att),
            ("gaze", gaze),
            ("face box", " ".join(f"{v:.1f}" for v in pred.box)),
        ]
    )
    chart = "" if pred.p_fake is None else _bars(["P(fake)"], [pred.p_fake], 0.5, -1)
    if pred.probabilities:
        chart += _bars(names, pred.probabilities, threshold, int(np.argmax(pred.probabilities)))
    marked = pred.verdict or ""
    before, _, rest = headline.partition(marked) if marked else (headline, "", "")
    return (
        f'<h3>Face #{pred.face_index}: {html.escape(before)}<span class="verdict-{marked or "none"}">'
        f"{html.escape(marked)}</span>{html.escape(rest)}</h3>"
        f'<div class="face">{figures}<div class="facts">{facts}<p>Attribution probabilities (dashed line: '
        f"threshold {threshold:g}; the detection bar's line is 0.5):</p>{chart}</div></div>"
    )


def gradcam_caption(cam: GradCam, names: Sequence[str], pred: FacePrediction) -> str:
    """Which logit the map explains, and how that relates to the verdict shown beside it."""
    name = names[cam.class_index]
    text = f"Grad-CAM of the attribution logit of {name}, the most probable class (p {pred.generator_probability:.4f})"
    if pred.unknown:
        text += f"; the attribution reads '{pred.attribution}' because p is below the threshold"
    return text + ". Red: the patches that raise this logit most; blue: least. Scaled to this map's maximum."


def render_report(
    entries: Sequence[ReportEntry], provenance: Provenance, figures: Sequence[ReportFigure] = ()
) -> str:
    """The whole report as one HTML string; ``figures`` go in a section before the provenance."""
    names = provenance.model.class_names
    threshold = float(provenance.settings.get("threshold", 0.9))
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>gazeclip attribution report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>gazeclip attribution report</h1>",
    ]
    if provenance.notice:
        parts.append(f'<p class="notice">Synthetic-demo model: {html.escape(provenance.notice)}.</p>')
    parts.append(
        f"<p>Generated {html.escape(provenance.time_utc)} by gazeclip {html.escape(provenance.tool_version)} "
        f"with the model in {html.escape(provenance.model.path)}.</p>"
    )
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
    if figures:
        parts.append('<h2 id="analyses">Analyses</h2>')
    for fig in figures:
        parts.append(
            f'<h3>{html.escape(fig.title)}</h3><figure><img class="photo" alt="{html.escape(fig.title)}" '
            f'src="{figure_data_uri(fig.path)}"><figcaption>{html.escape(fig.caption)}</figcaption></figure>'
        )
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
    model = predictor.model
    explainable = model.cam_layer() is not None and model.attribution_expert is not None  # Grad-CAM's logit
    heatmaps = [predictor.gradcam(f) for f in prepared.faces] if explainable else []
    return ReportEntry(prepared, result, heatmaps, [predictor.describe(p) for p in result.faces])


def write_report(
    path: str | os.PathLike[str],
    entries: Sequence[ReportEntry],
    provenance: Provenance,
    figures: Sequence[ReportFigure] = (),
) -> Path:
    """Write the report atomically (a temporary file renamed into place); returns its path."""
    path = Path(path)
    text = render_report(entries, provenance, figures)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # plain open(): the user's umask applies
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
