"""Adapters: the user's data (Datasets or DataLoaders of tensors, tuples or dicts), model outputs
(tensors, tuples, dicts, ``ModelOutput``) and training loss, read in one place."""

from prunepilot.adapters.batches import (
    DEFAULT_INPUT_KEYS,
    DEFAULT_LABEL_KEYS,
    Batch,
    Batches,
    BatchFormat,
    Split,
    batches,
    first_batch,
    first_raw_batch,
    samples,
    to_device,
)
from prunepilot.adapters.loss import Loss
from prunepilot.adapters.outputs import (
    DEFAULT_OUTPUT_KEY,
    LogitsModel,
    NamedInputs,
    as_logits_model,
    logits_of,
    user_model,
)

__all__ = [
    "DEFAULT_INPUT_KEYS",
    "DEFAULT_LABEL_KEYS",
    "DEFAULT_OUTPUT_KEY",
    "Batch",
    "BatchFormat",
    "Batches",
    "LogitsModel",
    "NamedInputs",
    "Loss",
    "Split",
    "as_logits_model",
    "batches",
    "first_batch",
    "first_raw_batch",
    "logits_of",
    "samples",
    "to_device",
    "user_model",
]
