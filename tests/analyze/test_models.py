"""Figs 8, 10, 11 on the synthetic benchmark with tiny model folders: the numbers are the model's own."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.analyze.aws import aws_weights, prompt_token_positions
from gazeclip_cli.core.analyze.common import load_models, select
from gazeclip_cli.core.analyze.features import feature_map, silhouette
from gazeclip_cli.core.analyze.heatmaps import heatmaps
from gazeclip_cli.core.data.cache import load_rgb, read_cache
from gazeclip_cli.core.errors import DataError
from gazeclip_cli.core.inference.gradcam import grad_cam

runner = CliRunner()


@pytest.fixture(scope="module")
def test_rows(synthetic):
    return select([synthetic.cache], ["test"]).rows


def _features(model, rows, **gaze):
    images = torch.stack([load_rgb(r.crop, model.cfg.image_size) for r in rows])
    with torch.no_grad():
        return model.features(images, **gaze)[0].numpy()


def test_tsne_input_rows_are_the_models_visual_features(synthetic, test_rows):
    folders = load_models([synthetic.model, synthetic.model_no_aws])
    settings = [read_cache(synthetic.cache).settings]
    result = feature_map(folders, test_rows, per_class=3, perplexity=5, seed=4, settings=settings)
    assert len(result.samples) == 9 * 3 and len(result.panels) == 2
    picked = [test_rows[i] for i in result.samples]
    assert {r.generator for r in picked} == {r.generator for r in test_rows}
    # Another estimator made the cached angles, so the model's own reads the patches, as in evaluate.
    patches = torch.stack([load_rgb(r.patch, 224) for r in picked])
    for (folder, _), panel in zip(folders, result.panels, strict=True):
        expected = _features(folder.model, picked, gaze_patches=patches)
        np.testing.assert_allclose(panel.features, expected, rtol=1e-5, atol=1e-6)
        assert panel.embedding.shape == (27, 2) and panel.perplexity == 5
    again = feature_map(folders[:1], test_rows, per_class=3, perplexity=5, seed=4, settings=settings)
    assert again.samples == result.samples  # the seed fixes the samples
    np.testing.assert_allclose(again.panels[0].embedding, result.panels[0].embedding)  # and the t-SNE
    # With no settings record to say otherwise, the cached angles are trusted (evaluate's rule too).
    trusting = feature_map(folders[:1], test_rows, per_class=3, perplexity=5, seed=4)
    gaze = torch.tensor([r.gaze for r in picked], dtype=torch.float32)
    np.testing.assert_allclose(
        trusting.panels[0].features, _features(folders[0][0].model, picked, gaze=gaze), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(DataError, match=r"fewer rows than the 5 asked \(--per-class\)"):
        feature_map(folders, test_rows, per_class=5)


def test_silhouette_matches_its_definition():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 1.0], [0.7, 0.7]])
    labels = ["a", "a", "b", "b", "b"]
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = 1.0 - unit @ unit.T  # cosine distance
    scores = []
    for i, li in enumerate(labels):
        own = [d[i, j] for j, lj in enumerate(labels) if lj == li and j != i]
        other = [d[i, j] for j, lj in enumerate(labels) if lj != li]
        a, b = np.mean(own), np.mean(other)
        scores.append((b - a) / max(a, b))
    assert silhouette(x, labels) == pytest.approx(np.mean(scores), rel=1e-9)
    assert silhouette(x, ["a"] * 5) is None and silhouette(x, list("abcde")) is None


def test_features_cli_writes_points_summary_and_inputs(synthetic, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["analyze", "features", str(synthetic.cache), "-m", str(synthetic.model), "--per-class", "2",
         "--perplexity", "4", "--device", "cpu", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with open(out / "features.csv", newline="") as fh:
        points = list(csv.DictReader(fh))
    assert len(points) == 18 and {p["split"] for p in points} == {"test"}
    stored = np.load(out / "features.npz")
    assert stored["features_0"].shape == (18, 32) and list(stored["sample_id"]) == [
        p["sample_id"] for p in points
    ]
    data = json.loads((out / "features.json").read_text())
    assert data["inputs"]["models"][0]["weights_sha256"] and data["per_class"] == 2
    summary = data["panels"][0]
    assert summary["silhouette_generator"] == pytest.approx(
        silhouette(stored["features_0"], [p["generator"] for p in points]), rel=1e-9
    )
    assert f"{summary['silhouette_generator']:.3f}" in result.stdout
    assert (out / "features.png").is_file()


def test_heatmaps_are_grad_cam_of_each_sample_and_refuse_a_model_without_gie(synthetic, test_rows, tmp_path):
    folders = load_models([synthetic.model, synthetic.model_no_aws])
    result = heatmaps(folders, test_rows, per_generator=1, generators=["SwapBlend", "RealWild"], seed=2)
    assert [test_rows[i].generator for i in result.samples] == ["SwapBlend", "RealWild"]
    for (folder, _), cells in zip(folders, result.cells, strict=True):
        for i, cell in zip(result.samples, cells, strict=True):
            model = folder.model
            direct = grad_cam(
                model, load_rgb(test_rows[i].crop, model.cfg.image_size)[None],
                load_rgb(test_rows[i].patch, 224)[None],
            )  # fmt: skip
            assert cell.class_index == direct.class_index and cell.logit == pytest.approx(
                direct.logit, rel=1e-5
            )
            np.testing.assert_allclose(cell.heatmap, direct.heatmap, atol=1e-5)
    with pytest.raises(DataError, match="use_gie = false"):
        heatmaps(load_models([synthetic.model_no_gie]), test_rows)
    with pytest.raises(DataError, match=r"fewer rows than the 5 asked \(--per-generator\)"):
        heatmaps(folders, test_rows, per_generator=5)
    out = tmp_path / "out"
    cli = runner.invoke(
        app,
        ["analyze", "heatmaps", str(synthetic.cache), "-m", str(synthetic.model), "-m", str(synthetic.model_no_aws),
         "--generator", "SwapBlend", "--device", "cpu", "--out", str(out)],
    )  # fmt: skip
    assert cli.exit_code == 0, cli.output
    with open(out / "heatmaps.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["model", "model-no-aws"] and (out / "heatmaps.png").is_file()


def test_aws_weights_are_the_learnt_diagonals_over_the_prompt_tokens(synthetic, tmp_path):
    folders = load_models([synthetic.model, synthetic.model_no_aws], with_text=True)
    result = aws_weights(folders)
    model = folders[0][0].model
    cfg = model.cfg
    assert result.tokens.class_name == cfg.classes[1].name  # the first fake class
    assert result.tokens.prompts[-1].endswith(cfg.classes[1].name)
    words = [t for t in result.tokens.tokens if not t.startswith("<")]
    assert "".join(words) == "".join("".join(p.lower().split()) for p in result.tokens.prompts)  # BPE pieces
    assert words[:6] == ["a", "photo", "of", "a", "fake", "face"]
    assert result.tokens.tokens.count("<sot>") == 4 == result.tokens.tokens.count("<eot>")
    expected = np.stack([s.diagonal.detach().numpy() for s in model.lre.selectors])
    np.testing.assert_array_equal(result.panels[0].diagonals, expected)
    assert result.panels[1].diagonals is None and not result.panels[1].aws
    pos = list(result.tokens.positions)
    for k, (w, _) in enumerate(result.prompt_means(result.panels[0])):
        sel = [p for p, q in zip(pos, result.tokens.prompt_of, strict=True) if q == k]
        assert w == pytest.approx(np.abs(expected[:, sel]).mean())
    assert prompt_token_positions(cfg, cfg.classes[0].name).prompts[0] == "a photo of a real face"


def test_aws_refuses_a_folder_without_lre_or_aws_first(synthetic, tmp_path):
    for folder, message in (
        (synthetic.model_no_lre, "use_lre = false"),
        (synthetic.model_no_aws, "aws = false"),
    ):
        result = runner.invoke(app, ["analyze", "aws-weights", "-m", str(folder), "--out", str(tmp_path)])
        assert result.exit_code == 1 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    out = tmp_path / "ok"
    result = runner.invoke(
        app, ["analyze", "aws-weights", "-m", str(synthetic.model), "-m", str(synthetic.model_no_aws), "--out", str(out),
              "--figure", "svg"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "aws-weights.svg").read_text().lstrip().startswith("<?xml")
    data = json.loads((out / "aws-weights.json").read_text())
    assert [m["aws"] for m in data["models"]] == [True, False]
    assert len(data["models"][0]["diagonals"]) == 2  # tiny-test has two text blocks


def test_a_cache_prepared_otherwise_than_the_models_training_cache_is_refused(synthetic, tmp_path):
    from gazeclip_cli.core.model.builder import WeightSources, build_gazeclip
    from gazeclip_cli.core.model.config import load_architecture
    from gazeclip_cli.core.model.folder import save_model_folder

    record = json.loads((synthetic.cache / "preprocessing.json").read_text())
    record["settings"]["template_size"] = 128  # trained on faces aligned to another template size
    model = build_gazeclip(load_architecture("tiny-test"), WeightSources(pretrained=False), seed=3)
    folder = save_model_folder(model, tmp_path / "m", preprocessing=record)
    for command in ("features", "heatmaps"):
        result = runner.invoke(
            app, ["analyze", command, str(synthetic.cache), "-m", str(folder), "--out", str(tmp_path)]
        )
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
        assert (
            "prepared otherwise" in result.stderr
            and "template_size 256 here, 128 in training" in result.stderr
        )


def test_a_baseline_gets_heatmaps_and_a_tsne_panel_but_no_aws(synthetic, test_rows, tmp_path):
    from gazeclip_cli.core.model.builder import WeightSources, build_model
    from gazeclip_cli.core.model.config import load_architecture
    from gazeclip_cli.core.model.folder import save_model_folder

    resnet = build_model(load_architecture("tiny-test-resnet"), WeightSources(pretrained=False), seed=1)
    folder = save_model_folder(resnet, tmp_path / "resnet")
    folders = load_models([folder, synthetic.model])
    events = []
    result = feature_map(folders, test_rows, per_class=1, perplexity=2, seed=1, progress=events.append)
    assert {e.stage for e in events} == {"features (resnet)", "features (model)", "t-SNE"}
    assert events[-1].stage == "t-SNE" and events[-1].done == events[-1].total == 2
    picked = [test_rows[i] for i in result.samples]
    np.testing.assert_allclose(
        result.panels[0].features, _features(folders[0][0].model, picked), rtol=1e-5, atol=1e-6
    )
    cams = heatmaps(folders, test_rows, generators=["FlowBlock"])
    assert cams.cells[0][0].heatmap.shape == (64, 64) and cams.models == ["resnet", "model"]
    with pytest.raises(DataError, match="use_lre = false"):
        aws_weights(load_models([folder], with_text=True))
