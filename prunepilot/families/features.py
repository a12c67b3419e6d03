"""Input-feature pruning: a model whose input is flat features feeding one ``nn.Linear`` takes fewer
features when that layer's weight columns of the dropped ones are cut.

The cut model keeps its input shape ``(F,)``: :class:`KeptFeatures` selects the kept features before
the model's own forward, so every consumer of the model (scoring, FLOPs, latency, the user's loss)
runs unchanged; exports unwrap it (:attr:`KeptFeatures.inner` takes the kept features only).
Torch-Pruning's graph has no node for the model's input, so whether the input feeds that one layer
only is checked by behaviour (:func:`check_single_use`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from numbers import Integral

import torch
from torch import nn

from prunepilot.adapters import user_model
from prunepilot.errors import UsageError, invalid_parameter
from prunepilot.inputs import eval_copy, example_batch

#: Samples of the random batch that checks the input feeds one layer only.
CHECK_BATCH = 8
#: Relative tolerance of that check (summing fewer columns rounds differently from zeroed ones).
CHECK_TOLERANCE = 1e-4


class KeptFeatures(nn.Module):
    """``inner`` run on the kept features of a full input: ``forward(x) = inner(x[..., index])``.

    Args:
        inner: The model whose first layer takes the kept features only.
        index: The kept features' indices in the full input.
    """

    index: torch.Tensor

    def __init__(self, inner: nn.Module, index: Sequence[int] | torch.Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long).clone())

    @property
    def kept(self) -> tuple[int, ...]:
        """The kept features' indices."""
        return tuple(int(i) for i in self.index.tolist())

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> object:
        return self.inner(x.index_select(-1, self.index), *args, **kwargs)


def first_linear_name(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """The qualified name of the ``nn.Linear`` that takes the model's flat input of shape ``(F,)``:
    the first one with ``in_features == F`` that a forward pass calls.

    Raises:
        UsageError: when the input is not flat or feeds no such layer.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 1:
        raise UsageError(f"{_NEEDS}; this model's input shape is {shape}.", "input_features")
    features = shape[0]
    probe = eval_copy(model)
    called: list[str] = []
    hooks = [
        module.register_forward_pre_hook(lambda _m, _a, name=name: called.append(name))
        for name, module in probe.named_modules()
        if isinstance(module, nn.Linear) and module.in_features == features
    ]
    device = next(iter(probe.parameters()), torch.empty(0)).device
    try:
        with torch.no_grad():
            probe(example_batch(input_shape, 2, device))
    except Exception as exc:  # noqa: BLE001 - the model failing is bad input
        raise UsageError(
            f"{_NEEDS}; this model fails on a batch of shape {(2, *shape)} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else ''}).",
            "input_features",
        ) from exc
    finally:
        for hook in hooks:
            hook.remove()
    if not called:
        raise UsageError(
            f"{_NEEDS}; this model's input of shape {shape} feeds no nn.Linear of {features} input features.",
            "input_features",
        )
    return called[0]


def keep_features(model: nn.Module, input_shape: tuple[int, ...], kept: Sequence[int]) -> KeptFeatures:
    """A copy of ``model`` that uses the ``kept`` input features only: its first Linear's weight
    columns of the others are cut, and the copy is wrapped in :class:`KeptFeatures` (so it still
    takes inputs of shape ``(F,)``).

    Args:
        model: The model (not changed).
        input_shape: One sample's shape, ``(F,)``.
        kept: Distinct indices in ``[0, F)`` of the features kept (at least one), in the order the
            cut layer takes them.

    Raises:
        UsageError: when the input is not flat features feeding an nn.Linear, or ``kept`` is not
            distinct indices of its features.
    """
    name = first_linear_name(model, input_shape)
    return _cut(model, name, _index(kept, int(input_shape[0])))


def check_single_use(model: nn.Module, input_shape: tuple[int, ...], seed: int = 0) -> str:
    """Checks that the model's input feeds its first Linear only (no skip of the raw input, no
    second branch): the model cut to every other feature, run on those features, must give what the
    whole model gives with the dropped features' weight columns zeroed.

    Returns:
        The qualified name of the first Linear.

    Raises:
        UsageError: when the input is not flat features feeding an nn.Linear, or feeds anything else.
    """
    name = first_linear_name(model, input_shape)
    features = int(input_shape[0])
    if features < 2:
        return name
    kept = list(range(0, features, 2))
    zeroed = eval_copy(model)
    with torch.no_grad():
        dropped = [i for i in range(features) if i % 2]
        zeroed.get_submodule(name).weight[:, dropped] = 0
    cut = _cut(zeroed, name, torch.tensor(kept))  # the kept columns are the model's own
    generator = torch.Generator().manual_seed(seed)
    weight = zeroed.get_submodule(name).weight
    inputs = torch.randn(CHECK_BATCH, features, generator=generator).to(weight.device, weight.dtype)
    try:
        with torch.no_grad():
            same = _same(cut.inner(inputs[:, kept]), zeroed(inputs))
    except Exception:  # noqa: BLE001 - a layer that also takes the whole input fails on fewer features
        same = False
    if not same:
        model_name = type(user_model(model)).__name__
        raise UsageError(
            f"--input-features needs the input to feed one nn.Linear only; model {model_name!r} "
            f"uses it elsewhere too (besides {name!r}).",
            "input_features",
        )
    return name


def _cut(model: nn.Module, name: str, index: torch.Tensor) -> KeptFeatures:
    """A copy of ``model`` whose Linear ``name`` keeps the weight columns ``index`` only, wrapped."""
    cut = copy.deepcopy(model)
    linear = cut.get_submodule(name)
    weight = linear.weight
    index = index.to(weight.device)
    linear.weight = nn.Parameter(weight.detach().index_select(1, index).clone(),
                                 requires_grad=weight.requires_grad)  # fmt: skip
    linear.in_features = len(index)
    wrapped = KeptFeatures(cut, index)
    wrapped.training = cut.training
    return wrapped


_NEEDS = "--input-features needs a model whose input is flat features (shape (F,)) feeding an nn.Linear"


def _index(kept: Sequence[int], features: int) -> torch.Tensor:
    """``kept`` as a long tensor, checked to be distinct indices in ``[0, features)``."""
    values = list(kept.tolist() if isinstance(kept, torch.Tensor) else kept)
    valid = (
        bool(values)
        and all(isinstance(i, Integral) and not isinstance(i, bool) and 0 <= i < features for i in values)
        and len(set(values)) == len(values)
    )
    if not valid:
        accepted = f"distinct feature indices in [0, {features - 1}], at least one"
        raise invalid_parameter("input_features", "Policy", accepted, kept)
    return torch.tensor([int(i) for i in values], dtype=torch.long)


def _same(got: object, expected: object) -> bool:
    """Whether two model outputs (tensors, or tuples, lists and dicts of them) are equal up to
    rounding."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            return False
        if not expected.is_floating_point():
            return bool(torch.equal(got, expected))
        scale = float(expected.abs().max()) if expected.numel() else 0.0
        tolerance = CHECK_TOLERANCE * max(scale, 1.0)
        return bool(torch.allclose(got, expected, rtol=CHECK_TOLERANCE, atol=tolerance))
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and got.keys() == expected.keys()
            and all(_same(got[k], expected[k]) for k in expected)
        )
    if isinstance(expected, (tuple, list)):
        return (
            isinstance(got, (tuple, list))
            and len(got) == len(expected)
            and all(_same(a, b) for a, b in zip(got, expected))
        )
    try:
        return bool(got == expected)
    except Exception:  # noqa: BLE001 - not comparable: not the same
        return False
