"""Tiny Hugging Face models built from ``transformers`` configs (nothing downloaded), and data they
fit: the digits as 32x32 images, and a token task (the label is the first token modulo 3).

Shared by the tests and ``benchmarks/zoo.py``; importing this module needs ``prunepilot[hf]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import transformers as hf
from torch.utils.data import Dataset, TensorDataset

from prunepilot.tasks.builtin import digits_datasets

#: Token sequence length and vocabulary of the text task.
SEQUENCE, VOCAB, TEXT_LABELS = 32, 100, 3


def _build(config: Callable[[], object], model: type) -> Callable[[], torch.nn.Module]:
    return lambda: model(config())


#: name -> factory of a randomly initialised model, and whether it reads text (token ids).
TEXT = {
    "distilbert": _build(lambda: hf.DistilBertConfig(
        n_layers=2, n_heads=4, dim=64, hidden_dim=128, vocab_size=VOCAB, max_position_embeddings=SEQUENCE,
        num_labels=TEXT_LABELS), hf.DistilBertForSequenceClassification),
    "bert": _build(lambda: hf.BertConfig(
        num_hidden_layers=2, num_attention_heads=4, hidden_size=64, intermediate_size=128, vocab_size=VOCAB,
        max_position_embeddings=SEQUENCE, num_labels=TEXT_LABELS), hf.BertForSequenceClassification),
}  # fmt: skip
VISION = {
    "resnet": _build(lambda: hf.ResNetConfig(
        num_channels=1, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], num_labels=10),
        hf.ResNetForImageClassification),
    "mobilenet_v2": _build(lambda: hf.MobileNetV2Config(
        num_channels=1, image_size=32, depth_multiplier=0.35, num_labels=10),
        hf.MobileNetV2ForImageClassification),
    "convnext": _build(lambda: hf.ConvNextConfig(
        num_channels=1, num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], num_labels=10),
        hf.ConvNextForImageClassification),
    "vit": _build(lambda: hf.ViTConfig(
        num_channels=1, image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=128, num_labels=10), hf.ViTForImageClassification),
    "swin": _build(lambda: hf.SwinConfig(
        num_channels=1, image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 4],
        window_size=4, num_labels=10, attn_implementation="eager"), hf.SwinForImageClassification),
    # Attention layers whose train() returns None and cache biases in eval mode; groups that break
    # when pruned beyond one channel.
    "levit": _build(lambda: hf.LevitConfig(
        num_channels=1, image_size=32, hidden_sizes=[32, 48, 64], num_attention_heads=[1, 2, 2],
        depths=[1, 1, 1], key_dim=[8, 8, 8], num_labels=10), hf.LevitForImageClassification),
    # Heads coupled to a position-bias MLP: attention groups left whole, never scored.
    "swinv2": _build(lambda: hf.Swinv2Config(
        num_channels=1, image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 4],
        window_size=4, num_labels=10, attn_implementation="eager"), hf.Swinv2ForImageClassification),
}  # fmt: skip


def model(name: str) -> torch.nn.Module:
    """A randomly initialised model of ``name`` (seeded), in eval mode."""
    torch.manual_seed(0)
    return {**TEXT, **VISION}[name]().eval()


def image_data(limit: int = 400) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """The digits as 1x32x32 images: (train, val, test), at most ``limit`` samples each."""
    splits = []
    for split in digits_datasets():
        images = torch.nn.functional.interpolate(split.tensors[0][:limit], size=32, mode="nearest")
        splits.append(TensorDataset(images, split.tensors[1][:limit]))
    return tuple(splits)


def text_data(sizes: tuple[int, int, int] = (400, 150, 150)) -> tuple[TensorDataset, ...]:
    """Token ids of length :data:`SEQUENCE`; the label is the first token modulo 3."""
    splits = []
    for seed, size in enumerate(sizes):
        tokens = torch.randint(1, VOCAB, (size, SEQUENCE), generator=torch.Generator().manual_seed(seed))
        splits.append(TensorDataset(tokens, tokens[:, 0] % TEXT_LABELS))
    return tuple(splits)


class PaddedText(Dataset):
    """Token sequences padded to :data:`SEQUENCE` as a tokenizer pads them: dict samples of
    ``input_ids`` (0 past the text), ``attention_mask`` (1 over the text) and ``labels`` (the last
    token of the text modulo 3, so that where the text ends matters)."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        tokens = torch.randint(1, VOCAB, (size, SEQUENCE), generator=generator)
        lengths = torch.randint(4, SEQUENCE + 1, (size,), generator=generator)
        self.mask = (torch.arange(SEQUENCE) < lengths[:, None]).long()
        self.ids = tokens * self.mask
        self.labels = tokens[torch.arange(size), lengths - 1] % TEXT_LABELS

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "attention_mask": self.mask[index],
                "labels": self.labels[index]}  # fmt: skip


def padded_text_data(sizes: tuple[int, int, int] = (400, 150, 150)) -> tuple[PaddedText, ...]:
    """(train, val, test) of :class:`PaddedText`."""
    return tuple(PaddedText(size, seed) for seed, size in enumerate(sizes))


def trimmed(samples: list[dict]) -> dict:
    """A batch of :class:`PaddedText` padded to its longest text only (a tokenizer's dynamic padding,
    as a data loader's ``collate_fn``)."""
    batch = torch.utils.data.default_collate(samples)
    length = int(batch["attention_mask"].sum(1).max())
    return {**batch, "input_ids": batch["input_ids"][:, :length],
            "attention_mask": batch["attention_mask"][:, :length]}  # fmt: skip


def masked_accuracy(model: torch.nn.Module, batches: Iterable[dict]) -> float:
    """A team's own evaluation of a text classifier: the model called with its attention mask."""
    right = total = 0
    with torch.no_grad():
        for batch in batches:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            right += int((logits.argmax(1) == batch["labels"]).sum())
            total += len(batch["labels"])
    return right / total


def data(name: str) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """The data ``name``'s model reads."""
    return text_data() if name in TEXT else image_data()


def distilbert() -> torch.nn.Module:
    """The DistilBERT-style text classifier (a ``--model`` factory)."""
    return model("distilbert")
