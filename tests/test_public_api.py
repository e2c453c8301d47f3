"""The top-level names and the callbacks' keyword-only signatures."""

from __future__ import annotations

import inspect

import pytest

import lightning_prunelimit
from lightning_prunelimit import (
    GlobalOneShotPruning,
    HessianSpectrum,
    L1Regularization,
    LimitPrediction,
    PruningLimit,
    SparsitySweep,
    Spectrum,
)
from lightning_prunelimit.curvature import Spectrum as CoreSpectrum
from lightning_prunelimit.limit import LimitPrediction as CoreLimitPrediction

CALLBACKS = (L1Regularization, HessianSpectrum, PruningLimit, GlobalOneShotPruning, SparsitySweep)


def test_result_types_are_importable_from_the_top_level() -> None:
    assert Spectrum is CoreSpectrum and LimitPrediction is CoreLimitPrediction
    assert {"Spectrum", "LimitPrediction"} <= set(lightning_prunelimit.__all__)


@pytest.mark.parametrize("callback", CALLBACKS, ids=lambda c: c.__name__)
def test_every_callback_takes_keyword_arguments_only(callback: type) -> None:
    parameters = list(inspect.signature(callback.__init__).parameters.values())[1:]
    assert parameters and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters)
    with pytest.raises(TypeError, match="positional"):
        callback(0.5)
