"""Models of several inputs: their inputs packed into one tensor and back, found from the data and
the model's forward, and a padded-text BERT searched with its attention mask end to end."""

from __future__ import annotations

import json

import onnxruntime
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import prunepilot
from prunepilot.adapters import LogitsModel, user_model
from prunepilot.adapters.several import ModelInputs, forward_inputs
from prunepilot.export import load_plan
from tests import zoo

FAST = dict(
    finetune_steps=5, final_steps=10, bn_batches=2, latency_repeats=3, latency_batch=8, workers=0,
    calibration_samples=8, progress=False,
)  # fmt: skip


def test_inputs_of_one_shape_are_stacked_and_come_back_in_their_dtypes():
    inputs = ModelInputs(("input_ids", "attention_mask"), ((5,), (5,)), ("int64", "int64"))
    ids, mask = torch.randint(0, 100, (3, 5)), torch.ones(3, 5, dtype=torch.long)
    packed = inputs.pack([ids, mask])
    assert packed.shape == (3, 2, 5) and packed.dtype == torch.int64
    longer = inputs.pack([torch.zeros(3, 9, dtype=torch.long)] * 2)  # any length of that shape
    assert longer.shape == (3, 2, 9)
    back = inputs.unpack(packed)
    assert torch.equal(back[0], ids) and torch.equal(back[1], mask)


def test_inputs_of_other_shapes_and_dtypes_are_concatenated_exactly():
    inputs = ModelInputs(("image", "table", "ids"), ((1, 2, 2), (3,), (2,)), ("float32", "float32", "int64"))
    image, table, ids = torch.randn(4, 1, 2, 2), torch.randn(4, 3), torch.tensor([[2**40, 3]] * 4)
    packed = inputs.pack([image, table, ids])
    assert packed.shape == (4, 9) and packed.dtype == torch.float64
    again = inputs.unpack(packed)
    assert torch.equal(again[0], image) and torch.equal(again[1], table) and torch.equal(again[2], ids)
    assert again[2].dtype == torch.int64
    with pytest.raises(prunepilot.UsageError, match="'table' has shape \\(4,\\) per sample"):
        inputs.pack([image, torch.randn(4, 4), ids])
    assert ModelInputs.from_dict(json.loads(json.dumps(inputs.to_dict()))) == inputs


def test_the_model_inputs_are_found_from_its_forward_and_the_batch():
    model = zoo.two_input_net()
    found = forward_inputs(model, (torch.randn(2, 1, 6, 6), torch.randn(2, 5), torch.tensor([0, 1])), None)
    assert found.names == ("image", "table") and found.positional and found.shapes == ((1, 6, 6), (5,))
    assert forward_inputs(nn.Linear(4, 2), (torch.randn(2, 4), torch.tensor([0, 1])), None) is None
    batch = {"image": torch.randn(2, 1, 6, 6), "table": torch.randn(2, 5), "extra": torch.zeros(2), "y": 1}
    found = forward_inputs(model, batch, "y")
    assert found.names == ("image", "table") and not found.positional
    assert forward_inputs(model, batch, "y", ["table", "image"]).names == ("table", "image")
    with pytest.raises(prunepilot.UsageError, match="no tensor under \\['mask'\\]"):
        forward_inputs(model, batch, "y", ["image", "mask"])


@pytest.mark.slow
def test_a_model_of_two_inputs_from_tuple_batches_is_searched_in_int8_and_ships_both(tmp_path):
    model = zoo.two_input_net()
    train, val, test = zoo.two_input_data()
    result = prunepilot.search(
        model, train=train, val=val, test=test, budget="1GFLOPs", trials=2, out=str(tmp_path),
        quantize="int8", log=lambda _: None, **FAST,
    )  # fmt: skip
    assert result.exit_code == 0
    export = result.report["final"]["export"]
    assert export["inputs"]["names"] == ["image", "table"]
    image, table, _ = test[:64]
    expected = user_model(result.model)(image, table).detach().numpy()
    for name in ("model.onnx", "model.int8.onnx"):  # both take the inputs by name, any batch size
        session = onnxruntime.InferenceSession(str(result.run_dir / name))
        assert [i.name for i in session.get_inputs()] == ["image", "table"]
        got = session.run(None, {"image": image.numpy(), "table": table.numpy()})[0]
        bound = 1e-4 if name == "model.onnx" else export["int8_max_abs_diff"] + 1e-6
        assert abs(got - expected).max() <= bound


@pytest.mark.slow
def test_a_padded_text_bert_is_scored_trained_and_shipped_with_its_attention_mask(tmp_path):
    hf = pytest.importorskip("tests.hf_models")
    bert = hf.model("bert")
    train, val, test = hf.padded_text_data()
    optimizer = torch.optim.AdamW(bert.parameters(), lr=3e-3)
    bert.train()
    for step, batch in enumerate(DataLoader(train, batch_size=32, shuffle=True)):  # the team's model
        optimizer.zero_grad()
        bert(**batch).loss.backward()
        optimizer.step()
        if step == 40:
            break
    bert.eval()
    masked = hf.masked_accuracy(bert, DataLoader(val, batch_size=64))
    batch = next(iter(DataLoader(val, batch_size=64)))
    with torch.no_grad():  # the mask matters: an unmasked score would not be the team's
        gap = bert(**batch).logits - bert(input_ids=batch["input_ids"]).logits
    assert gap.abs().max() > 1e-3
    result = prunepilot.search(
        bert, train=train, val=val, test=test, budget="1GFLOPs", trials=2, out=str(tmp_path),
        log=lambda _: None, **FAST,
    )  # fmt: skip
    assert result.exit_code == 0
    report = result.report
    assert abs(report["baseline"]["accuracy"] - masked) <= 1e-6  # the team's own, masked evaluation
    assert report["final"]["export"]["inputs"]["names"] == ["input_ids", "attention_mask"]
    session = onnxruntime.InferenceSession(str(result.run_dir / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    batch = next(iter(DataLoader(test, batch_size=16)))
    shorter = {k: batch[k][:, :20].numpy() for k in ("input_ids", "attention_mask")}  # a free sequence axis
    expected = user_model(result.model)(**{k: torch.from_numpy(v) for k, v in shorter.items()}).logits
    assert abs(session.run(None, shorter)[0] - expected.detach().numpy()).max() < 1e-4
    rebuilt = load_plan(result.run_dir, base_model=bert)
    assert isinstance(rebuilt, LogitsModel)
    masked_test = hf.masked_accuracy(user_model(rebuilt), DataLoader(test, batch_size=64))
    assert abs(masked_test - report["final"]["test_accuracy"]) <= 1e-6


def test_a_bool_mask_and_inputs_of_other_dtypes_pack_and_synthetic_batches_keep_each_dtype():
    inputs = ModelInputs(("image", "ids", "mask"), ((1, 2, 2), (3,), (3,)), ("float32", "int64", "bool"))
    mask = torch.tensor([[True, False, True]] * 2)
    packed = inputs.pack([torch.randn(2, 1, 2, 2), torch.tensor([[5, 6, 7]] * 2), mask])
    assert packed.dtype == torch.float64 and torch.equal(inputs.unpack(packed)[2], mask)
    image, ids, made_mask = inputs.unpack(inputs.example(4))
    assert image.shape == (4, 1, 2, 2) and ids.dtype == torch.int64 and made_mask.dtype == torch.bool
    assert int(ids.abs().max()) == 0  # valid token ids, not noise cast to integers


class _WithMeta(nn.Module):
    """A forward that names a key holding no tensor, and an attribute called ``inputs``."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs = nn.Linear(4, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor, meta: object = None) -> torch.Tensor:
        return self.head(torch.relu(self.inputs(x)))


class _MetaSamples(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 96

    def __getitem__(self, index: int) -> dict:
        x = torch.randn(4, generator=torch.Generator().manual_seed(index))
        return {"x": x, "meta": f"sample {index}", "label": int(x[0] > 0)}


def test_a_key_holding_no_tensor_is_not_an_input_and_an_attribute_called_inputs_is_the_users_own(tmp_path):
    data = _MetaSamples()
    assert forward_inputs(_WithMeta(), next(iter(DataLoader(data, batch_size=4))), "label") is None
    result = prunepilot.search(_WithMeta(), train=data, val=data, test=data, budget="1GFLOPs", trials=1,
                               out=str(tmp_path), log=lambda _: None, **FAST)  # fmt: skip
    assert result.exit_code == 0 and "inputs" not in result.report["final"]["export"]


class _Optional(nn.Module):
    """A forward whose second input is optional: a dict batch holding both feeds it both."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x))) + (0 if offset is None else offset)


class _OffsetSamples(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 96

    def __getitem__(self, index: int) -> dict:
        x = torch.randn(4, generator=torch.Generator().manual_seed(index))
        return {"x": x, "offset": torch.zeros(2), "labels": int(x[0] > 0)}


def test_input_keys_choose_the_inputs_one_key_feeding_one_input(tmp_path):
    data = _OffsetSamples()
    common = {"train": data, "val": data, "test": data, "budget": "1GFLOPs", "trials": 1,
              "log": lambda _: None}  # fmt: skip
    both = prunepilot.search(_Optional(), out=str(tmp_path / "both"), **common, **FAST)
    assert both.report["final"]["export"]["inputs"]["names"] == ["x", "offset"]
    one = prunepilot.search(_Optional(), out=str(tmp_path / "one"), input_keys=["x"], **common, **FAST)
    export = one.report["final"]["export"]
    assert "inputs" not in export and export["input_shape"] == [4]


def test_batches_padded_to_their_own_length_are_searched_and_scored_with_their_masks(tmp_path):
    hf = pytest.importorskip("tests.hf_models")
    bert = hf.model("bert").eval()
    loaders = (DataLoader(split, batch_size=32, collate_fn=hf.trimmed) for split in hf.padded_text_data())
    train, val, test = loaders
    lengths = {batch["input_ids"].shape[1] for batch in val}
    assert len(lengths) > 1  # the splits' batches differ in length
    masked = hf.masked_accuracy(bert, val)
    result = prunepilot.search(
        bert, train=train, val=val, test=test, budget="1GFLOPs", trials=1, out=str(tmp_path),
        log=lambda _: None, **FAST,
    )  # fmt: skip
    assert result.exit_code == 0
    assert abs(result.report["baseline"]["accuracy"] - masked) <= 1e-6
    assert result.report["final"]["export"]["onnx_max_abs_diff"] <= 1e-4
