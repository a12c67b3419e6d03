"""Reading the user's data: Datasets or DataLoaders whose batches are tensors, tuples or dicts.

Every part of prunepilot that reads data (BatchNorm recalibration, fine-tuning, gradients for the
taylor criterion, scoring) asks :func:`batches` for ``(inputs, labels)`` pairs, so that the user's
format is read in one place:

- a :class:`~torch.utils.data.Dataset` is batched by prunepilot (its batch size, seeded shuffling);
- a :class:`~torch.utils.data.DataLoader` is iterated as it is (the user's batch size, sampler and
  augmentation);
- a batch is an ``(inputs, labels, ...)`` tuple or list, or a dict (a Hugging Face batch) read
  through :class:`BatchFormat`'s keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from prunepilot.adapters.several import ModelInputs
from prunepilot.errors import UsageError

#: Keys tried, in order, for the model's input of a dict batch when no ``input_key`` is set.
DEFAULT_INPUT_KEYS = ("input_ids", "pixel_values", "input_values", "inputs", "input", "x", "image", "images")
#: Keys tried, in order, for the labels of a dict batch when no ``label_key`` is set.
DEFAULT_LABEL_KEYS = ("labels", "label", "targets", "target", "y")


class Batch(tuple):
    """One batch as ``(inputs, labels)``; :attr:`raw` is the batch as the data gave it (what a
    user's loss callable receives)."""

    raw: object

    def __new__(cls, inputs: torch.Tensor, labels: torch.Tensor, raw: object) -> Batch:
        batch = super().__new__(cls, (inputs, labels))
        batch.raw = raw
        return batch


@dataclass(frozen=True)
class BatchFormat:
    """Where a dict batch keeps the model's input and the labels.

    Attributes:
        input_key: The key of the model's input; None tries :data:`DEFAULT_INPUT_KEYS`.
        label_key: The key of the labels; None tries :data:`DEFAULT_LABEL_KEYS`.
        inputs: The model's several inputs, read from each batch and packed into one tensor (see
            :mod:`prunepilot.adapters.several`); None for a model of one input.
    """

    input_key: str | None = None
    label_key: str | None = None
    inputs: ModelInputs | None = None

    def read(self, batch: object) -> Batch:
        """``batch`` as ``(inputs, labels)``.

        Raises:
            UsageError: naming what the batch is and what is accepted.
        """
        if self.inputs is not None:
            return self._read_several(batch, self.inputs)
        if isinstance(batch, Mapping):
            inputs = _pick(batch, self.input_key, DEFAULT_INPUT_KEYS, "input_key", "model's input")
            labels = _pick(batch, self.label_key, DEFAULT_LABEL_KEYS, "label_key", "labels")
        elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
            inputs, labels = batch[0], batch[1]
        else:
            raise UsageError(
                f"A batch of the data is a {_describe(batch)}; accepted: an (inputs, labels) tuple or "
                "a dict holding both (see input_key and label_key).",
                "data",
            )
        if not isinstance(inputs, torch.Tensor):
            shown = _describe(inputs)
            raise UsageError(f"The data's inputs must be torch tensors. Got {shown} instead.", "data")
        return Batch(inputs, torch.as_tensor(labels), batch)

    def _read_several(self, batch: object, inputs: ModelInputs) -> Batch:
        if isinstance(batch, Mapping) and not inputs.positional:
            missing = [n for n in inputs.names if not isinstance(batch.get(n), torch.Tensor)]
            if missing:
                have = sorted(batch)
                raise UsageError(f"A batch of the data lacks the model's inputs {missing}; it has {have}.",
                                 "data")  # fmt: skip
            tensors = [batch[n] for n in inputs.names]
            labels = _pick(batch, self.label_key, DEFAULT_LABEL_KEYS, "label_key", "labels")
        elif isinstance(batch, (tuple, list)) and inputs.positional and len(batch) > len(inputs.names):
            tensors, labels = list(batch[: len(inputs.names)]), batch[len(inputs.names)]
        else:
            raise UsageError(
                f"A batch of the data is a {_describe(batch)}; the model's inputs are {list(inputs.names)}, "
                "read from every batch as from the first.",
                "data",
            )
        return Batch(inputs.pack(tensors), torch.as_tensor(labels), batch)


class Split:
    """One split of the user's data (a Dataset or a DataLoader) and the format of its batches."""

    def __init__(self, source: Dataset | DataLoader, batch_format: BatchFormat | None = None) -> None:
        self.source = source
        self.batch_format = batch_format or BatchFormat()

    def __repr__(self) -> str:
        return f"Split({type(self.source).__name__}, {self.batch_format})"


class Batches:
    """The ``(inputs, labels)`` batches of one split, read through its format; iterable again and
    again (a shuffled Dataset in a new order each time, following one seeded generator)."""

    def __init__(self, loader: DataLoader, batch_format: BatchFormat) -> None:
        self.loader = loader
        self.batch_format = batch_format

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.loader:
            yield self.batch_format.read(batch)


def batches(
    data: Dataset | DataLoader | Split, batch_size: int, *, shuffle: bool = False, seed: int = 0
) -> Batches:
    """The ``(inputs, labels)`` batches of ``data``.

    A Dataset is batched here (``batch_size``; with ``shuffle``, in an order fixed by ``seed`` and
    full batches only when there is more than one); a DataLoader is iterated as it is.

    Raises:
        UsageError: while iterating, when a batch cannot be read (see :meth:`BatchFormat.read`).
    """
    split = data if isinstance(data, Split) else Split(data)
    source = split.source
    if not isinstance(source, DataLoader):
        sized = not isinstance(source, IterableDataset)
        generator = torch.Generator().manual_seed(seed) if shuffle and sized else None
        source = DataLoader(
            source,
            batch_size=batch_size,
            shuffle=shuffle and sized,
            generator=generator,
            drop_last=shuffle and sized and len(source) > batch_size,
        )
    return Batches(source, split.batch_format)


def first_raw_batch(data: Dataset | DataLoader, batch_size: int = 64) -> object:
    """The first batch of ``data`` (unshuffled) as the data gives it, unread.

    Raises:
        UsageError: when ``data`` yields no batch.
    """
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size)
    for batch in loader:
        return batch
    raise UsageError("The data yields no batch (it is empty).", "data")


def first_batch(data: Dataset | DataLoader | Split, batch_size: int = 64) -> Batch:
    """The first batch of ``data`` (unshuffled).

    Raises:
        UsageError: when ``data`` yields no batch or its first cannot be read.
    """
    for batch in batches(data, batch_size):
        return batch
    raise UsageError("The data yields no batch (it is empty).", "data")


def samples(data: Dataset | DataLoader | Split, count: int) -> torch.Tensor:
    """The inputs of the first ``count`` samples (fewer when ``data`` has fewer, or when a later batch
    is padded to another length than the first), as one batch."""
    taken, seen = [], 0
    for inputs, _ in batches(data, count):
        if taken and inputs.shape[1:] != taken[0].shape[1:]:
            break
        taken.append(inputs[: count - seen])
        seen += len(taken[-1])
        if seen >= count:
            break
    return torch.cat(taken)


def to_device(batch: object, device: str | torch.device) -> object:
    """``batch`` with every tensor it holds (in dicts, tuples and lists) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return type(batch)({key: to_device(value, device) for key, value in batch.items()})
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


def _pick(batch: Mapping, key: str | None, defaults: tuple[str, ...], setting: str, what: str) -> object:
    if key is not None:
        if key not in batch:
            raise UsageError(
                f"The data's batches have no key {key!r} (set by {setting}); they have {sorted(batch)}.",
                setting,
            )
        return batch[key]
    found = next((k for k in defaults if k in batch), None)
    if found is None:
        raise UsageError(
            f"Cannot tell which key of the data's batches holds the {what}: they have {sorted(batch)}; "
            f"set {setting} (tried {list(defaults)}).",
            setting,
        )
    return batch[found]


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        kinds = sorted({type(item).__name__ for item in value})
        return f"{type(value).__name__} of {len(value)}" + (f" {'/'.join(kinds)}" if kinds else "")
    return type(value).__name__
