"""The scanner description: where sources, detectors and pixels are (numpy only, no torch, no I/O).

* :mod:`~ctpnp.scanner.geometry`: :class:`ScanGeometry`, a 2D scan (source
  path, detector, image grid) and the image frame every module shares;
* :mod:`~ctpnp.scanner.acquisition`: :class:`Acquisition`, a raw multi-row
  acquisition as DICOM-CT-PD describes it;
* :mod:`~ctpnp.scanner.rebinning`: helical → fan-beam slice rebinning.
"""

from ctpnp.scanner.acquisition import Acquisition, AcquisitionFieldError
from ctpnp.scanner.geometry import CLINICAL, ScanGeometry
from ctpnp.scanner.rebinning import FanSlices, covered_z_range_mm, rebin_helical

__all__ = ["CLINICAL", "Acquisition", "AcquisitionFieldError", "FanSlices", "ScanGeometry",
           "covered_z_range_mm", "rebin_helical"]
