"""Reconstruction algorithms: PnP-ADMM, PnP-DRS, PnP-PGD and the TV baseline.

Every solver takes post-log sinograms ``y`` ``(B, 1, views, channels)``, a
:class:`~ctpnp.Tomography` and (PnP) a prior with ``prox(x, sigma)``, and
returns a :class:`SolverResult`. Solvers never print; pass ``callback``.
"""

from ctpnp.solvers.admm import pnp_admm
from ctpnp.solvers.drs import pnp_drs
from ctpnp.solvers.monitor import SolverResult, StoppingRule
from ctpnp.solvers.pgd import pnp_pgd
from ctpnp.solvers.tv import tv

__all__ = ["SolverResult", "StoppingRule", "pnp_admm", "pnp_drs", "pnp_pgd", "tv"]
