"""Benchmark the CT operator: ctpnp's torch op against raw ODL/ASTRA on the same geometry.

For 256² and 512² clinical curved fan beams (360 and 720 views), times one
forward + adjoint through ODL's ``RayTransform`` on numpy arrays (raw), through
``Tomography(backend="odl")`` with and without autograd, and one FBP; the ratio
op/raw is the overhead of the torch wrapping (goal ≤ 1.05). The CPU default, ASTRA's
system matrix, is measured against ODL by ``bench_projector_matrix.py``. Peak memory is the process
high-water mark during one forward + adjoint.

Run: ``.venv/bin/python benchmarks/bench_projector.py`` (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import warnings

import torch
from common import median_seconds, peak_rss_mib, print_table, write_json

from ctpnp import ScanGeometry, Tomography

warnings.filterwarnings("ignore", message="The 'astra_cpu' backend may be too slow")
FIELD_OF_VIEW_MM = 360.0


def measure(size: int, n_views: int, repeats: int) -> dict[str, object]:
    geometry = ScanGeometry.clinical_fan((size, size), FIELD_OF_VIEW_MM / size, n_views)
    op = Tomography(geometry, device="cpu", backend="odl")
    ray_transform = op._backend.ray_transform  # the ODL operator ctpnp wraps
    x = torch.rand((1, 1, size, size)) * 0.02
    x_numpy = x[0, 0].numpy()
    y = op.forward(x)

    def raw() -> None:
        ray_transform.adjoint(ray_transform(x_numpy).data)

    def op_no_grad() -> None:
        with torch.no_grad():
            op.adjoint(op.forward(x))

    x_grad = x.clone().requires_grad_(True)

    def op_autograd() -> None:  # the adjoint runs in backward()
        (op.forward(x_grad) * y).sum().backward()

    seconds = median_seconds({"raw": raw, "op": op_no_grad, "grad": op_autograd,
                              "fbp": lambda: op.fbp(y)}, repeats)
    t_raw, t_op, t_grad, t_fbp = (seconds[k] for k in ("raw", "op", "grad", "fbp"))
    return {
        "grid": f"{size}²", "views": n_views, "channels": geometry.n_channels,
        "raw ODL fwd+adj s": t_raw, "ctpnp op s": t_op, "ctpnp autograd s": t_grad,
        "ratio op/raw": t_op / t_raw, "ratio autograd/raw": t_grad / t_raw,
        "FBP s": t_fbp, "peak MiB": peak_rss_mib(op_no_grad),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--views", type=int, nargs="+", default=[360, 720])
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = [measure(size, views, args.repeats) for size in args.sizes for views in args.views]
    print_table("Tomography vs raw ODL/ASTRA (astra_cpu, curved clinical fan, median of "
                f"{args.repeats})", rows)
    write_json("bench_projector", {"rows": rows, "goal": "ratio op/raw <= 1.05"})


if __name__ == "__main__":
    main()
