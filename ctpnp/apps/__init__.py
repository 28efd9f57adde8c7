"""Applications: what a user runs, composed from the library.

* :mod:`~ctpnp.apps.reconstruct`: a scan folder in, DICOM/NIfTI/report out (``ctpnp reconstruct``);
* :mod:`~ctpnp.apps.volume`: whole volumes slice by slice, in workers, resumable;
* :mod:`~ctpnp.apps.simulate`: low-dose DICOM-CT-PD scans of a CT series (``ctpnp simulate``);
* :mod:`~ctpnp.apps.compare`: metrics of reconstructions against a reference (``ctpnp compare``);
* :mod:`~ctpnp.apps.study`: the phantom validation study (``ctpnp study``).

Progress goes through one callback shape, :data:`ctpnp.apps.progress.Progress`.
"""
