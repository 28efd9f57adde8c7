"""Reconstruction algorithms: PnP-ADMM, PnP-DRS, PnP-PGD and the TV baseline.

Every solver takes post-log sinograms ``y`` ``(B, 1, views, channels)``, a
:class:`~ctpnp.Tomography` and (PnP) a prior with ``prox(x, sigma)``, and
returns a :class:`SolverResult`. Solvers never print; pass ``callback``.
PnP-ADMM and PnP-DRS are :data:`SPLITTINGS` run by one driver
(:mod:`ctpnp.solvers.splitting`); the names are those of :mod:`ctpnp.registry`.
"""

from ctpnp.solvers.admm import ADMM, pnp_admm
from ctpnp.solvers.drs import DRS, pnp_drs
from ctpnp.solvers.monitor import SolverResult, StoppingRule
from ctpnp.solvers.pgd import pnp_pgd
from ctpnp.solvers.splitting import Splitting
from ctpnp.solvers.tv import tv

SPLITTINGS: dict[str, Splitting] = {scheme.method: scheme for scheme in (ADMM, DRS)}
"""The splitting methods by registry name: what ``ctpnp tune`` can learn parameters for."""

__all__ = ["SPLITTINGS", "SolverResult", "Splitting", "StoppingRule", "pnp_admm", "pnp_drs",
           "pnp_pgd", "tv"]
