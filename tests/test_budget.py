import pytest

from prunepilot import Budget, UsageError, parse_budget


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
