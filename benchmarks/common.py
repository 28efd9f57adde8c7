"""Shared by the benchmarks: timing, peak memory, the results table and JSON file."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ctpnp import Tomography, physics
from ctpnp.evaluation import markdown_table, write_record
from ctpnp.priors import load
from ctpnp.registry import DEFAULT_PRIOR, PNP_METHODS, solver

RESULTS_DIR = Path(__file__).parent / "results"

# One torch thread: ASTRA's CPU projectors are single-threaded anyway, and on a
# shared 2-core machine two OpenMP threads per process oversubscribe the cores
# and make small torch kernels several times slower (measured: FBP 0.9 s -> 5.8 s).
torch.set_num_threads(1)


def median_seconds(actions: dict[str, Callable[[], object]], repeats: int = 3
                   ) -> dict[str, float]:
    """Median wall time of each action over ``repeats`` rounds (after one warm-up round).

    The actions run interleaved, one of each per round, so that a change in
    the machine's load during the run affects all of them alike and their
    ratios stay meaningful.
    """
    times: dict[str, list[float]] = {name: [] for name in actions}
    for round_index in range(repeats + 1):
        for name, action in actions.items():
            start = time.perf_counter()
            action()
            if round_index:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_rss_mib(action: Callable[[], object]) -> float:
    """Peak resident memory of this process while ``action`` runs (MiB, Linux).

    Resets the kernel's high-water mark first, so the figure is this call's peak.
    """
    Path("/proc/self/clear_refs").write_text("5")
    action()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def print_table(title: str, rows: list[dict[str, object]]) -> None:
    """Print rows (dicts with the same keys) as an aligned Markdown table under ``title``."""
    print(f"\n{title}\n")
    print(markdown_table(rows))


def subset_suffix(methods: list[str] | tuple[str, ...], defaults: list[str] | tuple[str, ...]
                  ) -> str:
    """``""`` for the default methods, else ``"_"`` and the methods' names as one
    lower-case word: a run of a subset writes its own results file."""
    if tuple(methods) == tuple(defaults):
        return ""
    return "_" + re.sub(r"[^a-z0-9]+", "_", " ".join(methods).lower()).strip("_")


def write_json(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the machine description added."""
    path = write_record(RESULTS_DIR / f"{name}.json", payload)
    print(f"\nwrote {path}")
    return path


def default_reconstruction(method: str, y: torch.Tensor, op: Tomography, priors: dict,
                           **stopping: float) -> tuple[torch.Tensor, int, bool]:
    """``method`` (``name`` or ``name:prior``, e.g. ``pnp-admm:lpn``; PnP without a prior
    uses the default prior) on ``y`` with its defaults, the stopping settings ``stopping``
    (``max_iter``, ``rtol``) overridden when given: the ``(1, 1, H, W)`` HU image, the
    iterations run (1 for FBP) and whether its rule stopped it. Loaded priors are kept
    in ``priors`` by name."""
    name, _, prior = method.partition(":")
    if name == "fbp":
        return physics.mu_to_hu(op.fbp(y)), 1, True
    function = solver(name)
    if name in PNP_METHODS:
        prior_name = prior or DEFAULT_PRIOR
        if prior_name not in priors:
            priors[prior_name] = load(prior_name)
        result = function(y, op, priors[prior_name], **stopping)
    else:
        result = function(y, op, **stopping)
    return physics.mu_to_hu(result.x), int(result.n_iter[0]), bool(result.converged[0])
