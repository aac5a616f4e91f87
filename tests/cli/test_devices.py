"""The one device resolver, directly and through every command's --device."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from gazeclip_cli.cli.app import app
from gazeclip_cli.core.devices import resolve_device
from gazeclip_cli.core.errors import ConfigError

runner = CliRunner()


def test_names_resolve_to_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "gpu0", "mps", "cuda:x", "cpu:1", "", "cuda:-1"):
        with pytest.raises(ConfigError, match="not a device; use auto, cpu, cuda or cuda:N"):
            resolve_device(bad)


def test_missing_cuda_and_missing_device_numbers_say_what_to_use(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="CUDA is not available on this machine; use --device cpu or auto"):
        resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"has 2 CUDA devices \(cuda:0..cuda:1\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize(
    "command",
    [
        ["train", "{tmp}", "--out", "{tmp}/run"],
        ["evaluate", "{tmp}", "--model", "{tmp}", "--out", "{tmp}/ev"],
        ["preprocess", "{tmp}", "--out", "{tmp}/cache"],
        ["attribute", "{tmp}/x.png", "--model", "{tmp}"],
        ["scan", "{tmp}", "--out", "{tmp}/r.csv", "--model", "{tmp}"],
    ],
)
def test_an_unknown_device_is_one_line_on_every_command(command, tmp_path):
    args = [a.format(tmp=tmp_path) for a in command] + ["--device", "gpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        "error: --device gpu: not a device; use auto, cpu, cuda or cuda:N"
    ]
