"""Full float32 arithmetic for the priors' networks on CUDA.

cuDNN runs float32 convolutions in TF32 by default on Ampere and later GPUs
(``torch.backends.cudnn.allow_tf32``): a 10-bit mantissa, relative rounding of
about 5e-4 in every convolution. A learned prox is exact only up to the
arithmetic it runs in, and a GPU result should match the CPU's; the priors'
gradients are therefore computed with TF32 off. On the CPU this changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def ieee_float32() -> Iterator[None]:
    """Within the block cuDNN convolutions use full float32 (TF32 off), then the setting
    is restored."""
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous
