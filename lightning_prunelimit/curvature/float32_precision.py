"""True float32 arithmetic for curvature work, whatever TF32 or autocast settings are in force."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch


def _precision_settings() -> list[tuple[object, str]]:
    """Every ``fp32_precision`` switch of this torch build (global, CUDA matmul, cuDNN, oneDNN)."""
    backends = torch.backends
    owners = [
        backends,
        getattr(backends.cuda, "matmul", None),
        backends.cudnn,
        getattr(backends.cudnn, "conv", None),
        getattr(backends.cudnn, "rnn", None),
        backends.mkldnn,
        getattr(backends.mkldnn, "matmul", None),
        getattr(backends.mkldnn, "conv", None),
        getattr(backends.mkldnn, "rnn", None),
    ]
    found = [(owner, "fp32_precision") for owner in owners if hasattr(owner, "fp32_precision")]
    if found:
        return found
    # torch builds before the fp32_precision switches: the TF32 flags
    return [(backends.cuda.matmul, "allow_tf32"), (backends.cudnn, "allow_tf32")]


def _exact(name: str) -> object:
    return "ieee" if name == "fp32_precision" else False


@contextmanager
def full_float32_precision() -> Iterator[None]:
    """Run the block with IEEE float32 matmuls and convolutions, no TF32, no autocast.

    Many training scripts enable TF32 (``torch.set_float32_matmul_precision("high")`` or
    ``torch.backends.cudnn.allow_tf32``), which keeps about 10 bits of mantissa in float32
    matrix products: Hessian-vector products then cannot resolve the near-zero eigenvalues the
    pruning limit depends on. Inside this block every ``fp32_precision`` switch (the global
    one, CUDA matmul, cuDNN convolutions and RNNs, oneDNN; on torch builds without them the
    ``allow_tf32`` flags of CUDA matmul and cuDNN) is ``"ieee"`` and autocast is off
    on the CPU and, where present, CUDA; on exit every setting is put back as it was, also
    after an exception. Reduced-precision models (bfloat16, float16) still compute in their
    dtype; the Lanczos vectors that use this block are float32 or wider.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import full_float32_precision
        >>> before = torch.backends.cuda.matmul.fp32_precision
        >>> with full_float32_precision():
        ...     torch.backends.cuda.matmul.fp32_precision
        'ieee'
        >>> torch.backends.cuda.matmul.fp32_precision == before
        True
    """
    saved = [(owner, name, getattr(owner, name)) for owner, name in _precision_settings()]
    with ExitStack() as stack:
        try:
            for owner, name, _ in saved:
                setattr(owner, name, _exact(name))
            stack.enter_context(torch.autocast("cpu", enabled=False))
            if torch.cuda.is_available():
                stack.enter_context(torch.autocast("cuda", enabled=False))
            yield
        finally:
            for owner, name, value in reversed(saved):
                setattr(owner, name, value)
