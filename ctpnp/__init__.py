"""ctpnp: low-dose CT reconstruction with convergent plug-and-play priors.

Images are float32 torch tensors shaped ``(B, 1, H, W)`` holding linear
attenuation ``mu`` in 1/mm; sinograms are ``(B, 1, views, channels)`` post-log
line integrals. See :mod:`ctpnp.geometry` for the coordinate frame.
"""

from ctpnp.geometry import ScanGeometry
from ctpnp.projector import Tomography

__version__ = "0.1.0"
__all__ = ["ScanGeometry", "Tomography", "__version__"]
