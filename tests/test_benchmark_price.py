"""benchmarks/price_of_knowing.py: the settings its command line passes to HessianSpectrum."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest
from _benchmark_loader import benchmark_module


@pytest.fixture(scope="module")
def price() -> Iterator[ModuleType]:
    with benchmark_module("price_of_knowing.py") as module:
        yield module


def test_the_defaults_change_nothing(price: ModuleType) -> None:
    assert price.spectrum_budget(price.parse_args([])) == {}


def test_max_iters_and_num_samples_reach_the_spectrum(price: ModuleType) -> None:
    args = price.parse_args(["--max-iters", "1024", "--num-samples", "4096"])
    assert price.spectrum_budget(args) == {"max_iters": 1024, "num_samples": 4096}
    args = price.parse_args(["--num-samples", "all"])
    assert price.spectrum_budget(args) == {"num_samples": None}


@pytest.mark.parametrize("value", ["0", "-3", "auto", "1.5"])
def test_a_bad_num_samples_is_refused_by_the_command_line(
    price: ModuleType, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        price.parse_args(["--num-samples", value])
    assert "expected a positive int or 'all'" in capsys.readouterr().err
