"""Names of the reconstruction methods and the defaults, importable without torch.

The command-line parser offers these as choices; :mod:`ctpnp.volume` maps the
PnP names to their solvers.
"""

from __future__ import annotations

__all__ = ["DEFAULT_METHOD", "DEFAULT_PRIOR", "METHODS", "PNP_METHODS"]

PNP_METHODS = ("pnp-admm", "pnp-drs", "pnp-pgd")
"""PnP solvers (:func:`ctpnp.solvers.pnp_admm`, ``pnp_drs``, ``pnp_pgd``)."""

METHODS = (*PNP_METHODS, "tv", "fbp")
"""Every method a volume can be reconstructed with."""

DEFAULT_METHOD = "pnp-admm"
"""Method of ``ctpnp reconstruct`` when none is given."""

DEFAULT_PRIOR = "prox"
"""Prior of the PnP methods when none is given."""
