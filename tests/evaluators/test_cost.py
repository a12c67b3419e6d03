"""Size measures: the saved state dict and its zlib-compressed size."""

from __future__ import annotations

import io
import zlib

import torch
from torch import nn

from prunepilot.evaluators.cost import compressed_size, count_flops, serialized_size, state_dict_bytes


def test_state_dict_bytes_are_what_torch_save_writes_and_reload_safely():
    model = nn.Linear(16, 4)
    data = state_dict_bytes(model)
    assert len(data) == serialized_size(model)
    state = torch.load(io.BytesIO(data), weights_only=True)
    assert torch.equal(state["weight"], model.weight) and torch.equal(state["bias"], model.bias)


def test_compressed_size_is_zlibs_length_at_the_level():
    data = bytes(range(256)) * 64 + b"\0" * 8192
    assert compressed_size(data) == len(zlib.compress(data, 6))
    assert compressed_size(data, 1) == len(zlib.compress(data, 1))
    assert compressed_size(data) < len(data)


def test_zeros_compress_where_saved_bytes_do_not_change():
    torch.manual_seed(0)
    model = nn.Linear(64, 64)
    dense = compressed_size(state_dict_bytes(model))
    saved = serialized_size(model)
    with torch.no_grad():
        model.weight[:, :48] = 0
    assert serialized_size(model) == saved
    assert compressed_size(state_dict_bytes(model)) < 0.6 * dense


def test_a_transformer_encoder_layer_counts_its_attention_too():
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True).eval()
    tokens = torch.randn(1, 17, 32)
    mlp = 2 * 2 * 17 * 32 * 64  # linear1 and linear2, 2 FLOPs a multiply-add
    attention = 2 * 17 * 32 * 3 * 32 + 2 * 17 * 32 * 32  # its input and output projections
    assert count_flops(layer, tokens) >= mlp + attention
    assert torch.backends.mha.get_fastpath_enabled()  # restored after counting
