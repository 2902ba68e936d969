"""OnnxSession: explicit providers, shapes and metadata read from the file, load failures named."""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
import pytest

from core.errors import ModelError
from core.onnx_session import CPU, OnnxSession, resolve_providers


def test_cpu_and_auto_providers(contract_models_dir, caplog):
    caplog.set_level(logging.INFO, logger="core.onnx_session")
    s = OnnxSession(contract_models_dir / "aging.onnx", providers="cpu")
    assert s.providers == [CPU]
    assert "aging.onnx" in caplog.text and CPU in caplog.text  # what it got is logged

    auto = resolve_providers("auto")
    assert auto[-1] == CPU
    assert all(p in ort.get_available_providers() for p in auto)
    assert "AzureExecutionProvider" not in auto  # only compute providers, best first
    assert OnnxSession(contract_models_dir / "aging.onnx").providers[-1] == CPU


def test_explicit_provider_list_drops_unavailable(caplog):
    caplog.set_level(logging.WARNING, logger="core.onnx_session")
    got = resolve_providers(["NoSuchExecutionProvider", CPU, CPU])
    assert got == [CPU]
    assert "NoSuchExecutionProvider" in caplog.text
    with pytest.raises(ValueError):
        resolve_providers("tpu")


def test_gpu_providers_come_first_in_their_order_and_their_absence_is_said(monkeypatch, caplog):
    import core.onnx_session as onnx_session

    cuda, directml = onnx_session.GPU_ORDER[0], "DmlExecutionProvider"
    monkeypatch.setattr(onnx_session.ort, "get_available_providers",
                        lambda: ["AzureExecutionProvider", CPU, directml, cuda])
    assert resolve_providers("gpu") == resolve_providers("auto") == [p for p in onnx_session.GPU_ORDER
                                                                     if p in (cuda, directml)] + [CPU]
    assert resolve_providers("gpu")[0] == cuda  # CUDA before DirectML, the Azure provider never
    monkeypatch.setattr(onnx_session.ort, "get_available_providers", lambda: ["AzureExecutionProvider", CPU])
    caplog.set_level(logging.WARNING, logger="core.onnx_session")
    assert resolve_providers("gpu") == [CPU]
    assert "no GPU execution provider" in caplog.text and "AzureExecutionProvider" in caplog.text
    caplog.clear()
    assert resolve_providers("auto") == [CPU] and caplog.text == ""  # auto falls back quietly


def test_shapes_metadata_and_run(contract_models_dir):
    s = OnnxSession(contract_models_dir / "aging.onnx", providers="cpu")
    assert list(s.inputs) == ["image", "target", "regions", "landmarks", "hair"]
    assert s.inputs["image"] == (None, 3, 64, 64)
    assert s.inputs["target"] == (None, 8)
    assert s.outputs == {"aged": (None, 3, 64, 64), "attention": (None, 1, 64, 64)}
    assert s.metadata["format"] == "agelapse-aging/2"
    assert s.metadata["image_size"] == "64"

    n = 3
    out = s.run({"image": np.zeros((n, 3, 64, 64)),  # float64 is converted to the declared float32
                 "target": np.eye(8)[:n], "regions": np.full((n, 5, 64, 64), 0.2),
                 "landmarks": np.full((n, 68, 2), 32.0), "hair": np.ones(n)})
    assert set(out) == {"aged", "attention"}
    assert out["aged"].shape == (n, 3, 64, 64) and out["aged"].dtype == np.float32
    assert out["attention"].shape == (n, 1, 64, 64)
    assert not np.allclose(out["aged"][0], out["aged"][2])  # the target matters

    with pytest.raises(ValueError, match="target"):
        s.run({"image": np.zeros((1, 3, 64, 64), np.float32), "regions": np.zeros((1, 5, 64, 64), np.float32)})


def test_wrong_shape_at_run_is_a_model_error(contract_models_dir):
    s = OnnxSession(contract_models_dir / "age.onnx", providers="cpu")
    with pytest.raises(ModelError) as info:
        s.run({"image": np.zeros((1, 3, 10, 10), np.float32)})
    assert info.value.name == "age.onnx"


def test_missing_file(tmp_path):
    with pytest.raises(ModelError) as info:
        OnnxSession(tmp_path / "aging.onnx")
    assert info.value.name == "aging.onnx" and "not found" in info.value.reason


@pytest.mark.parametrize("damage", ["text", "truncated", "empty"])
def test_unloadable_files(tmp_path, contract_models_dir, damage):
    data = (contract_models_dir / "aging.onnx").read_bytes()
    bad = tmp_path / "aging.onnx"
    bad.write_bytes({"text": b"this is not a model\n" * 10, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    with pytest.raises(ModelError) as info:
        OnnxSession(bad, name="aging model")
    assert info.value.name == "aging model"
    assert str(bad) in info.value.reason
