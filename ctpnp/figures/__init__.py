"""Every plot of ctpnp, in one place (matplotlib's object API, no pyplot; PNGs written atomically).

* :mod:`~ctpnp.figures.panels`: images side by side in an HU window (the demo);
* :mod:`~ctpnp.figures.log_prior`: a slice beside its log-prior map (``ctpnp reconstruct``);
* :mod:`~ctpnp.figures.comparison`: references, reconstructions, differences (``ctpnp compare``);
* :mod:`~ctpnp.figures.study`: the phantom study's figures (``ctpnp study``).
"""
