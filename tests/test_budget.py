import pytest

from prunepilot import Budget, BudgetLimit, UsageError, parse_budget


@pytest.mark.parametrize(
    ("text", "metric", "limit", "fraction"),
    [
        ("30ms", "latency_ms", 30.0, None),
        ("1.5ms", "latency_ms", 1.5, None),
        ("800us", "latency_ms", 0.8, None),
        ("0.03s", "latency_ms", 30.0, None),
        ("50%", "latency_ms", None, 0.5),
        ("2x", "latency_ms", None, 0.5),
        ("4X", "latency_ms", None, 0.25),
        ("120MFLOPs", "flops", 120e6, None),
        ("1.2GFLOPs", "flops", 1.2e9, None),
        ("5000 FLOPs", "flops", 5000.0, None),
        ("300k params", "params", 300e3, None),
        ("1.2M params", "params", 1.2e6, None),
        ("2MB", "size_bytes", 2e6, None),
        ("512KB", "size_bytes", 512e3, None),
        ("1.5MiB", "size_bytes", 1.5 * 2**20, None),
    ],
)
def test_parse_valid_forms(text, metric, limit, fraction):
    budget = parse_budget(text)
    assert budget.cost == metric
    assert budget.text == text
    if limit is None:
        assert budget.limit is None
        assert budget.fraction == pytest.approx(fraction)
    else:
        assert budget.limit == pytest.approx(limit)
        assert budget.fraction is None


@pytest.mark.parametrize(
    "text", ["", "fast", "30", "30 parsecs", "ms", "-5ms", "0ms", "0x", "150%", "0.5x", "1e400ms", "3 apples"]
)
def test_parse_invalid_forms_name_the_accepted_ones(text):
    with pytest.raises(UsageError) as info:
        parse_budget(text)
    message = str(info.value)
    assert "\n" not in message
    assert repr(text.strip()) in message
    assert ("accepted" in message) or ("slower than the baseline" in message)


def test_relative_budget_resolves_against_the_baseline():
    assert parse_budget("2x").resolve(8.0).limit == pytest.approx(4.0)
    assert parse_budget("25%").resolve(8.0).limit == pytest.approx(2.0)
    assert parse_budget("30ms").resolve(8.0).limit == pytest.approx(30.0)


def test_budget_needs_exactly_one_bound():
    with pytest.raises(UsageError):
        Budget("latency_ms")
    with pytest.raises(UsageError):
        Budget("latency_ms", limit=1.0, fraction=0.5)
    with pytest.raises(UsageError, match="accepted"):
        Budget("joules", limit=1.0)


def test_a_budget_limit_judges_excess_fit_and_a_remeasured_baseline():
    relative = parse_budget("2x").resolve(8.0)
    assert relative.cost == "latency_ms" and relative.limit == pytest.approx(4.0)
    assert relative.excess(5.0) == pytest.approx(0.25) and relative.excess(3.0) == pytest.approx(-0.25)
    assert relative.fits(4.0) and not relative.fits(4.01)
    assert relative.fits(4.2, margin=0.1) and not relative.fits(3.9, margin=-0.1)
    # A relative latency budget follows the baseline re-timed beside the final model ...
    assert relative.limit_for(10.0).limit == pytest.approx(5.0) and relative.limit_for(10.0).fits(4.5)
    # ... an absolute one, or another cost, does not.
    absolute = parse_budget("3ms").resolve(8.0)
    assert absolute.limit_for(10.0) == absolute
    assert parse_budget("120MFLOPs").resolve(1e9).limit_for(2e9).limit == pytest.approx(1.2e8)


@pytest.mark.parametrize(("cost", "limit"), [("latency", 1.0), ("flops", 0.0), ("flops", float("nan"))])
def test_a_budget_limit_refuses_an_unknown_cost_or_a_limit_that_is_not_positive(cost, limit):
    with pytest.raises(UsageError):
        BudgetLimit(cost, limit)
