"""Runtimes: ONNX Runtime in fp32 and int8, PyTorch eager, and what neither can take."""

from __future__ import annotations

import pickle

import onnx
import pytest
import torch

from prunepilot.adapters import samples
from prunepilot.errors import UsageError
from prunepilot.evaluators import serialized_size
from prunepilot.evaluators.accuracy import top1_accuracy
from prunepilot.runtimes import DeployError, get_runtime, runtime_names
from prunepilot.runtimes.int8 import uses_dynamic_quantization
from tests import zoo


@pytest.fixture(scope="module")
def onnxruntime():
    return get_runtime("onnxruntime")


def test_the_runtimes_are_registered_and_an_unknown_one_is_named_with_those_accepted():
    assert runtime_names() == ["torch", "onnxruntime"]
    with pytest.raises(
        UsageError, match=r"'runtime' parameter .* one of \['torch', 'onnxruntime'\]\. Got 'tvm'"
    ):
        get_runtime("tvm")


def test_torch_runs_the_model_itself_and_refuses_int8(trained_tiny):
    runtime = get_runtime("torch")
    deployed = runtime.deploy(trained_tiny, torch.zeros(2, 1, 8, 8), threads=1)
    assert deployed.module is trained_tiny
    assert deployed.size_bytes == serialized_size(trained_tiny)
    assert not deployed.quantized
    with pytest.raises(ValueError, match="int8 needs the onnxruntime runtime"):
        runtime.deploy(trained_tiny, torch.zeros(2, 1, 8, 8), threads=1, int8=True)


def test_onnxruntime_reproduces_the_model_in_fp32_and_int8_is_smaller_and_as_accurate(
    onnxruntime, trained_tiny, digits
):
    train, val, _ = digits
    inputs = samples(val, 128)
    fp32 = onnxruntime.deploy(trained_tiny, inputs, threads=1)
    with torch.no_grad():
        assert (fp32.module(inputs) - trained_tiny(inputs)).abs().max() < 1e-4
    assert not fp32.quantized and fp32.data is not None and fp32.size_bytes == len(fp32.data)

    int8 = onnxruntime.deploy(trained_tiny, inputs, threads=1, int8=True, calibration=samples(train, 256))
    assert int8.quantized
    # int8 weights as stored (the graph's scales and zero points weigh much in a 10k-parameter model)
    assert int8.size_bytes < 0.8 * fp32.size_bytes
    ops = {node.op_type for node in onnx.load_from_string(int8.data).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # static QDQ for a convolutional model
    assert top1_accuracy(int8.module, val) >= top1_accuracy(trained_tiny, val) - 0.03


def test_a_deployed_model_pickles_without_its_session(onnxruntime, trained_tiny):
    inputs = torch.randn(3, 1, 8, 8)
    deployed = onnxruntime.deploy(trained_tiny, inputs, threads=1)
    expected = deployed.module(inputs)
    copied = pickle.loads(pickle.dumps(deployed.module))
    assert copied._session is None
    assert torch.equal(copied(inputs), expected)


def test_linear_heavy_models_are_quantized_dynamically(onnxruntime):
    mlp = zoo.mlp_logsoftmax().eval()
    assert uses_dynamic_quantization(mlp)
    assert not uses_dynamic_quantization(zoo.tiny_resnet())
    inputs = torch.randn(4, 1, 8, 8)
    deployed = onnxruntime.deploy(mlp, inputs, threads=1, int8=True)
    ops = {node.op_type for node in onnx.load_from_string(deployed.data).graph.node}
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}, ops
    with torch.no_grad():
        assert (deployed.module(inputs) - mlp(inputs)).abs().max() < 0.1


def test_a_model_onnx_cannot_export_is_one_line_naming_the_operator(onnxruntime):
    with pytest.raises(DeployError, match="ONNX cannot export the model: .*aten::cummax") as caught:
        onnxruntime.deploy(zoo.cummax_net(), torch.randn(2, 1, 8, 8), threads=1)
    assert "\n" not in str(caught.value)


def test_a_model_onnx_runtime_cannot_quantize_names_the_operator_or_falls_back_to_fp32(onnxruntime):
    model = zoo.grouped_transpose_net().eval()
    inputs = torch.randn(4, 1, 8, 8)
    with pytest.raises(DeployError, match="cannot quantize the model to int8 at its ConvTranspose operator"):
        onnxruntime.deploy(model, inputs, threads=1, int8=True)
    deployed = onnxruntime.deploy_or_fp32(model, inputs, threads=1, int8=True)
    assert not deployed.quantized
    assert "ConvTranspose" in deployed.fallback
    with torch.no_grad():
        assert (deployed.module(inputs) - model(inputs)).abs().max() < 1e-4
