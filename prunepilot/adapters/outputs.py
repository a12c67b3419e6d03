"""Reading the user's model outputs: tensors, tuples, dicts or ``ModelOutput`` objects.

Everything after loading sees a model whose output is the tensor of class scores:
:func:`as_logits_model` wraps a model whose outputs hold them (a Hugging Face model's ``.logits``)
in :class:`LogitsModel`, which is what is pruned, measured and exported.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from prunepilot.adapters.several import ModelInputs, cache_off
from prunepilot.adapters.structured import OutputLayout
from prunepilot.errors import UsageError

#: The key (or attribute) read from dict-like outputs when no ``output_key`` is set.
DEFAULT_OUTPUT_KEY = "logits"


def logits_of(output: object, key: str | None = None) -> torch.Tensor:
    """The class scores in ``output``: ``output[key]`` (or ``output.key``) when ``key`` is set; else
    the tensor itself, ``logits`` (else the first tensor that is not a scalar) of a dict or
    ``ModelOutput``, or the first element of a tuple.

    Raises:
        UsageError: when ``output`` holds no such tensor.
    """
    if key is None and isinstance(output, torch.Tensor):
        return output
    wanted = key or DEFAULT_OUTPUT_KEY
    if isinstance(output, Mapping):  # dicts and ModelOutput (an OrderedDict)
        found = output.get(wanted)
        if found is None and key is None:  # the first batch of scores (not a scalar loss)
            found = next((v for v in output.values() if isinstance(v, torch.Tensor) and v.dim()), None)
        where = f"keys {list(output)}"
    elif isinstance(output, (tuple, list)) and output:
        found = getattr(output, wanted, None) if key else output[0]
        where = f"a {type(output).__name__} of {len(output)}"
    else:
        found = getattr(output, wanted, None)
        where = type(output).__name__
    if not isinstance(found, torch.Tensor):
        raise UsageError(
            f"Cannot find the class scores in the model's output ({where}); "
            f"set output_key to the key that holds them{' (got ' + repr(key) + ')' if key else ''}.",
            "output_key",
        )
    return found


class LogitsModel(nn.Module):
    """A user's model as prunepilot runs it: one tensor in, the class scores its output holds out
    (or, for a structured output, every tensor of it packed into one).

    Attributes:
        model: The user's model (its modules are this one's, under ``model.``).
        output_key: See :func:`logits_of`.
        inputs: The model's several inputs, unpacked from the one tensor it is given (see
            :mod:`prunepilot.adapters.several`); None for a model of one input.
        outputs: How a structured output is packed (see :mod:`prunepilot.adapters.structured`);
            None for class scores.
    """

    def __init__(
        self,
        model: nn.Module,
        output_key: str | None = None,
        inputs: ModelInputs | None = None,
        outputs: OutputLayout | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.output_key = output_key
        self.inputs = inputs
        self.outputs = outputs

    def raw(self, inputs: torch.Tensor) -> object:
        """The user's model's own output."""
        if self.inputs is None:
            return self.model(inputs, **cache_off(self.model))
        return self.inputs.call(self.model, self.inputs.unpack(inputs))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return _read(self.raw(inputs), self.output_key, self.outputs)


def as_logits_model(
    model: nn.Module,
    output: object,
    output_key: str | None = None,
    inputs: ModelInputs | None = None,
    structured: bool = False,
) -> nn.Module:
    """``model`` itself when it takes one input, its ``output`` (on a batch) is a tensor and no
    ``output_key`` is set, else ``model`` in a :class:`LogitsModel`; with ``structured`` (a loss and a
    metric of the user's read the outputs), an output of several tensors is packed whole (see
    :func:`is_structured`).

    Raises:
        UsageError: when ``output`` holds no class scores, or cannot be packed.
    """
    tensor = isinstance(output, torch.Tensor)
    if isinstance(model, LogitsModel) or (output_key is None and inputs is None and tensor):
        return model
    if structured and output_key is None and not tensor and is_structured(output):
        return LogitsModel(model, None, inputs, OutputLayout.of(output))
    logits_of(output, output_key)
    return LogitsModel(model, output_key, inputs)


def is_structured(output: object) -> bool:
    """Whether ``output`` holds several tensors and no ``logits``: what a user's loss and metric get
    whole (a Hugging Face output with ``logits`` gives them its logits, as without them)."""
    if isinstance(output, torch.Tensor) or (isinstance(output, Mapping) and DEFAULT_OUTPUT_KEY in output):
        return False
    return len([t for t in _flatten(output) if isinstance(t, torch.Tensor)]) > 1


class NamedInputs(nn.Module):
    """What ships for a model of several inputs: it takes them as separate tensors, in
    :attr:`ModelInputs.names`' order (an export's named inputs), and returns the class scores.

    Attributes:
        model: The user's model.
        inputs: Its inputs.
        output_key: Where its output holds the class scores (see
            :func:`~prunepilot.adapters.logits_of`).
        outputs: How a structured output is packed; None for class scores.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: ModelInputs,
        output_key: str | None = None,
        outputs: OutputLayout | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.inputs = inputs
        self.output_key = output_key
        self.outputs = outputs

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return _read(self.inputs.call(self.model, tensors), self.output_key, self.outputs)


def _read(output: object, output_key: str | None, outputs: OutputLayout | None) -> torch.Tensor:
    """What prunepilot reads of the user's model's ``output``: its class scores, or every tensor of a
    structured output packed into one."""
    return outputs.pack(output) if outputs is not None else logits_of(output, output_key)


def user_model(model: nn.Module) -> nn.Module:
    """The user's own model inside ``model`` (``model`` itself unless it is a :class:`LogitsModel` or
    :class:`NamedInputs`)."""
    return model.model if isinstance(model, (LogitsModel, NamedInputs)) else model


def output_layers(model: nn.Module, inputs: torch.Tensor) -> list[nn.Module]:
    """The layers whose output channels are the model's outputs (never pruned).

    A layer counts when its output tensor *is* the model's output (or one of them). When the output
    comes from no module (a functional op), the last Conv/Linear run is taken.
    """
    produced: list[tuple[nn.Module, torch.Tensor]] = []
    executed: list[nn.Module] = []

    def hook(module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            produced.append((module, output))
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            executed.append(module)

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            outputs = model.raw(inputs) if isinstance(model, LogitsModel) else model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    flat = [t for t in _flatten(outputs) if isinstance(t, torch.Tensor)]
    producers = [m for m, out in produced if any(out is t for t in flat)]
    layers = [m for m in producers if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    return layers or executed[-1:]


def _flatten(obj: object) -> list:
    if isinstance(obj, (list, tuple)):
        return [x for item in obj for x in _flatten(item)]
    if isinstance(obj, dict):
        return [x for item in obj.values() for x in _flatten(item)]
    return [obj]
