"""A latency predictor: a pruned model's latency as a fraction of its base model's, from its layers.

An additive model in the manner of NetAdapt's per-layer tables, fit on a few dozen real
measurements on the target device::

    latency / base latency  ~  c + sum over layers l of (a_l * flops_l + b_l * padded_flops_l
                                                      + d_l * outputs_l) + e * layers

``padded_flops_l`` counts the layer's input and output channels rounded up to a vector width ``W``:
kernels compute whole vectors, so 17 channels can cost what 32 cost at ``W = 16``. ``W`` is chosen
by cross-validation from :data:`VECTOR_WIDTHS` (1 means plain FLOPs only). ``outputs_l`` is the
layer's output channels: the element-wise work after it (BatchNorm, activation, residual add,
memory traffic) grows with its channels, not with its FLOPs (which shrink with input and output
channels both), and dominates once a model is pruned hard; cross-validation also decides whether
the term is used (``d = 0``). ``layers`` is the share of the base model's layers still present: each
layer has a fixed cost (dispatch, its BatchNorm and activation calls) however few channels it keeps,
which a model whose blocks were removed (``Policy.removed_blocks``) no longer pays; the term is used when some
measured model lacks layers. Coefficients are non-negative: more work never makes a layer faster.
Every feature is divided by the base model's, so it lies in [0, 1]. With a few features per layer
and a few dozen measurements, the fit is shrunk (ridge) by a strength chosen by cross-validation
from :data:`RIDGE_ALPHAS` once the features are chosen: it lowered the held-out error on the digits
model (many small layers, whose latencies are noisy) and left the mnist model's as it was. The fit
is relative least squares (each squared residual weighted by 1 / ratio^2): it minimizes errors as
shares of the latency, which is what a budget and the percentage error measure. On 30 random
splits of 76 measured policies it lowered the digits model's held-out error from 4.9% to 4.5% and
raised the mnist model's from 4.0% to 4.2%; between runs of ``benchmarks/latency_predictor.py``
the digits figure moves by more than that (timing noise).

:meth:`LatencyPredictor.refit` adds measurements to the ones a predictor was fit on: a search
feeds it its trials' measured latencies, which lie where the search looks (near the budget).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from prunepilot.errors import invalid_parameter
from prunepilot.evaluators.cost import flops_by_module
from prunepilot.inputs import example_batch

if TYPE_CHECKING:  # scikit-learn is imported when a predictor is fitted (a second off every start)
    from sklearn.linear_model import LinearRegression, Ridge

#: Vector widths tried by cross-validation (1: plain FLOPs).
VECTOR_WIDTHS = (1, 4, 8, 16, 32)
#: Ridge strengths tried by cross-validation, once the features are chosen (0: plain least squares).
RIDGE_ALPHAS = (0.0, 1e-3, 1e-2, 1e-1, 1.0)
#: Fewest measurements a predictor is fit on.
MIN_SAMPLES = 8

#: One model's layers: name -> (FLOPs, input channels, output channels, conv groups).
LayerTable = dict[str, tuple[float, int, int, int]]


def layer_table(model: nn.Module, input_shape: tuple[int, ...]) -> LayerTable:
    """The FLOPs and channel counts of each Conv/Linear layer of ``model`` (plain data)."""
    flops = flops_by_module(model, example_batch(input_shape))
    table: LayerTable = {}
    for name, module in model.named_modules():
        if name not in flops:
            continue
        if isinstance(module, nn.modules.conv._ConvNd):
            table[name] = (float(flops[name]), module.in_channels, module.out_channels, module.groups)
        elif isinstance(module, nn.Linear):
            table[name] = (float(flops[name]), module.in_features, module.out_features, 1)
    return table


def _padded(flops: float, inputs: int, outputs: int, groups: int, width: int) -> float:
    if width == 1 or groups != 1 or inputs == 0 or outputs == 0:
        return flops
    return (
        flops * (math.ceil(inputs / width) * width / inputs) * (math.ceil(outputs / width) * width / outputs)
    )


@dataclass
class LatencyPredictor:
    """Predicts latency relative to the base model from a model's :func:`layer_table`.

    Build one with :meth:`fit`; ``__init__`` only stores the fitted state.

    Attributes:
        base: The base model's layer table (sets the feature scale and the layer order).
        width: The vector width chosen by cross-validation.
        channel_term: Whether cross-validation chose the output-channel term.
        layer_term: Whether the layer-count term is used (some measured model lacks layers).
        regression: The fitted non-negative linear regression.
        alpha: The ridge strength cross-validation chose (0: plain least squares).
        cv_mape: Cross-validated mean absolute percentage error on the measurements.
        tables: The measured models' layer tables it was fit on.
        ratios: Their measured latencies relative to the base model.
        relative: Whether the fit is relative least squares (see the module docstring); False is
            plain least squares, for comparison.
    """

    base: LayerTable
    width: int
    channel_term: bool
    layer_term: bool
    regression: LinearRegression | Ridge
    alpha: float
    cv_mape: float
    tables: list[LayerTable] = field(default_factory=list, repr=False)
    ratios: list[float] = field(default_factory=list, repr=False)
    relative: bool = True

    @property
    def samples(self) -> int:
        """Number of measurements it was fit on."""
        return len(self.ratios)

    @classmethod
    def fit(
        cls, base: LayerTable, tables: Sequence[LayerTable], ratios: Sequence[float], relative: bool = True
    ) -> LatencyPredictor:
        """Fits the predictor on measured ``ratios`` (latency / base latency) of models ``tables``
        (by relative least squares, or plain least squares when ``relative`` is False).

        Raises:
            ValueError: with fewer than :data:`MIN_SAMPLES` measurements, or ratios that are not > 0.
        """
        if len(tables) != len(ratios):
            raise ValueError(f"Got {len(tables)} layer tables but {len(ratios)} ratios; they must pair up.")
        if len(tables) < MIN_SAMPLES:
            raise invalid_parameter("samples", "LatencyPredictor", f"at least {MIN_SAMPLES}", len(tables))
        target = np.asarray(ratios, dtype=float)
        if not np.all(np.isfinite(target) & (target > 0)):
            raise invalid_parameter("ratios", "LatencyPredictor", "finite numbers > 0", list(ratios))
        from sklearn.model_selection import KFold, cross_val_predict

        folds = KFold(n_splits=min(5, len(tables)), shuffle=True, random_state=0)
        layer_term = any(name not in table for table in tables for name in base)
        # Relative least squares: each squared residual is weighted by 1 / ratio^2, so the fit
        # minimizes errors as shares of the latency (what a budget and the MAPE measure) and a
        # small model's few tenths of a millisecond count as much as a large model's.
        weight = target**-2.0 if relative else np.ones_like(target)

        def cv_error(features: np.ndarray, alpha: float) -> float:
            predicted = cross_val_predict(
                _regression(alpha), features, target, cv=folds, params={"sample_weight": weight}
            )
            return float(np.mean(np.abs(predicted - target) / target))

        choices = [(c, w) for c in (False, True) for w in VECTOR_WIDTHS]
        feature_errors = [cv_error(_features(base, tables, w, c, layer_term), 0.0) for c, w in choices]
        best = int(np.argmin(feature_errors))  # the first of equals: the simplest
        channel_term, width = choices[best]
        features = _features(base, tables, width, channel_term, layer_term)
        # RIDGE_ALPHAS[0] is plain least squares, whose error is already known.
        alpha_errors = [feature_errors[best], *(cv_error(features, a) for a in RIDGE_ALPHAS[1:])]
        chosen = int(np.argmin(alpha_errors))
        alpha = RIDGE_ALPHAS[chosen]
        regression = _regression(alpha).fit(features, target, sample_weight=weight)
        return cls(
            base, width, channel_term, layer_term, regression, alpha, alpha_errors[chosen],
            list(tables), [float(r) for r in ratios], relative,
        )  # fmt: skip

    def refit(self, tables: Sequence[LayerTable], ratios: Sequence[float]) -> LatencyPredictor:
        """A predictor fit on this one's measurements and ``tables`` / ``ratios`` (the vector width
        and the channel term chosen again); this one is left as it is."""
        tables, ratios = [*self.tables, *tables], [*self.ratios, *ratios]
        return LatencyPredictor.fit(self.base, tables, ratios, self.relative)

    def predict(self, table: LayerTable) -> float:
        """The predicted latency of the model with layer table ``table``, relative to the base."""
        features = _features(self.base, [table], self.width, self.channel_term, self.layer_term)
        value = float(self.regression.predict(features)[0])
        return max(value, 1e-3)

    def describe(self) -> dict:
        """Plain data for reports."""
        return {
            "samples": self.samples,
            "vector_width": self.width,
            "channel_term": self.channel_term,
            "layer_term": self.layer_term,
            "ridge_alpha": self.alpha,
            "cv_mape": self.cv_mape,
        }


def _regression(alpha: float) -> LinearRegression | Ridge:
    """A non-negative linear regression, shrunk by ``alpha`` (0: plain least squares)."""
    from sklearn.linear_model import LinearRegression, Ridge

    return LinearRegression(positive=True) if alpha == 0 else Ridge(alpha=alpha, positive=True)


def _features(
    base: Mapping[str, tuple],
    tables: Sequence[LayerTable],
    width: int,
    channel_term: bool,
    layer_term: bool = False,
) -> np.ndarray:
    rows = []
    for table in tables:
        row = []
        for name, (base_flops, *base_shape) in base.items():
            flops, inputs, outputs, groups = table.get(name, (0.0, 0, 0, 1))
            scale = max(base_flops, 1.0)
            row.append(flops / scale)
            if width != 1:
                padded_scale = max(_padded(base_flops, *base_shape, width), 1.0)
                row.append(_padded(flops, inputs, outputs, groups, width) / padded_scale)
            if channel_term:
                row.append(outputs / max(base_shape[1], 1))
        if layer_term:
            row.append(sum(name in table for name in base) / max(len(base), 1))
        rows.append(row)
    return np.asarray(rows, dtype=float)
