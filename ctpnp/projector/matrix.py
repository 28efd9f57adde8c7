"""The CPU ray transform as ASTRA's own system matrix, applied as sparse products.

ODL's ``astra_cpu`` ray transform runs ASTRA's CPU kernels (``linear`` for a
parallel beam, ``line_fanflat`` for a fan beam), one slice per call,
single-threaded and holding the GIL. The same ASTRA projector, asked for its
system matrix (``astra.projector.matrix``), gives the same operator as a sparse
matrix ``A`` of shape ``(views * flat channels, H * W)``: the weights are
ASTRA's, the geometry is ODL's (built by ODL's own ``astra_setup`` functions
from the :class:`~ctpnp.projector.backend.OdlRayTransform` it replaces), and
with the unit-weighted spaces of that backend no scale factor, flip or
transpose separates the two (measured: results equal to float32 rounding).
Rows are ``view * channels + channel`` of the ``(views, channels)`` sinogram,
columns ``row * W + column`` of the ``(H, W)`` image.

The forward product is torch's sparse CSR times a dense ``(H * W, B)`` batch
(one pass over the matrix serves the B slices; torch's threads); the adjoint
is scipy's product with the same CSR arrays read as the CSC matrix ``A^T``,
in blocks of views shared by ``torch.get_num_threads()`` threads (scipy
releases the GIL), so ``A^T`` costs no second copy. Measured on 2 shared
cores, forward + adjoint per slice: 4-8 times faster than ODL + ``astra_cpu``
for one slice, 8-17 times for a batch of 8
(``benchmarks/bench_projector_matrix.py``).

Curved detectors keep the backend's :class:`~ctpnp.projector.channels.ChannelResampler`
after the flat-detector matrix: composing it into the matrix would make the
matrix 1.7 times larger (measured at 256², 360 views: 31.5 M → 53.2 M nonzeros).

Memory: 8 bytes per nonzero (a float32 weight and an int32 column), about
``0.85 * max(H, W)`` nonzeros per ray of a clinical fan: 241 MiB at 256² with
360 views, 964 MiB at 512² with 360 views, twice that with 720 views. Where
the matrix would exceed the budget (:func:`matrix_budget_mib`, by default
2 GiB but at most half the available memory) ``Tomography`` stays on ODL.
Building reads the matrix out of ASTRA block by block (25-55 s per GiB on
this shared machine, most of it in ``astra.matrix.get``; the memory peaks at
1.1 times the matrix), so a matrix is shared by every operator of the same
geometry in the process while any of them holds it, and kept on disk
(:mod:`ctpnp.projector.matrix_cache`; memory-mapped when read back, so
processes of one geometry share the pages).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import astra
import numpy as np
import scipy.sparse
import torch
from odl.applications.tomo.backends.astra_cpu import default_astra_proj_type
from odl.applications.tomo.backends.astra_setup import (
    astra_projection_geometry,
    astra_projector,
    astra_volume_geometry,
)

from ctpnp.projector import matrix_cache
from ctpnp.projector.backend import OdlRayTransform
from ctpnp.scanner.geometry import ScanGeometry

DEFAULT_MAX_MATRIX_MIB = 2048.0
"""Largest system matrix built by default (MiB); see :func:`matrix_budget_mib`."""

BLOCKS_PER_MATRIX = 32
"""The matrix is built and applied in about this many blocks of consecutive views."""

_SAMPLE_VIEWS = 8
_BYTES_PER_NONZERO = 8  # float32 weight + int32 column index


class MatrixTooLarge(MemoryError):
    """The system matrix of a geometry would exceed the memory budget."""


BACKENDS = ("auto", "matrix", "odl")


def choose_backend(
    reference: OdlRayTransform, backend: str = "auto", max_matrix_mib: float | None = None
) -> OdlRayTransform | MatrixRayTransform:
    """The backend a :class:`~ctpnp.Tomography` projects with.

    Args:
        reference: the ODL + ASTRA backend of the scan on its device.
        backend: ``"odl"``: ``reference`` itself; ``"matrix"``: the system
            matrix (CPU only; :class:`MatrixTooLarge` at the first projection
            when it exceeds the budget); ``"auto"``: the matrix on the CPU when
            it fits the budget, else ``reference`` (always on CUDA).
        max_matrix_mib: the budget, see :func:`matrix_budget_mib`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown: expected one of {list(BACKENDS)}")
    on_cpu = reference.device.type == "cpu"
    if backend == "matrix" and not on_cpu:
        raise ValueError(f"backend='matrix' runs on the CPU only, not on {reference.device}; "
                         "use backend='odl' (astra_cuda) there")
    if backend == "odl" or not on_cpu:
        return reference
    return MatrixRayTransform(reference, matrix_budget_mib(max_matrix_mib),
                              fall_back=backend == "auto")


class SystemMatrix:
    """ASTRA's system matrix as CSR arrays, for torch's and scipy's sparse products.

    The forward product is torch's (CSR times dense, fastest for a batch), the
    transposed one scipy's (the CSR arrays read as CSC, in blocks of views
    shared by threads): both use the same arrays in place, which may be
    read-only memory maps.

    Args:
        data: ``(nnz,)`` float32 weights.
        indices: ``(nnz,)`` int32 column of each weight.
        indptr: ``(rows + 1,)`` int32 start of each row in ``data``.
        n_columns: ``H * W``.
        block_rows: ``(blocks + 1,)`` increasing row boundaries of the blocks,
            from 0 to ``rows``.
    """

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
                 n_columns: int, block_rows: np.ndarray) -> None:
        self.data, self.indices, self.indptr = data, indices, indptr
        self.shape = (indptr.size - 1, int(n_columns))
        self.nnz = int(indptr[-1])
        self.block_rows = np.asarray(block_rows, dtype=np.int64)
        with warnings.catch_warnings():  # torch only reads them; CSR is "beta" in torch 2
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            self._csr = torch.sparse_csr_tensor(torch.from_numpy(indptr),
                                                torch.from_numpy(indices),
                                                torch.from_numpy(data), size=self.shape,
                                                check_invariants=False)  # checked on load
        self.blocks = [_csr_view(data, indices, indptr, start, stop, self.shape[1])
                       for start, stop in itertools.pairwise(self.block_rows.tolist())]
        self._cumulative_nnz = indptr[self.block_rows[1:]].astype(np.int64)

    @property
    def mib(self) -> float:
        """Memory held by the weights, column indices and row pointers (MiB)."""
        return (self.data.nbytes + self.indices.nbytes + self.indptr.nbytes) / 2**20

    def multiply(self, columns: torch.Tensor) -> torch.Tensor:
        """``A @ columns``: ``(H * W, B)`` float32 → ``(rows, B)`` (torch's threads)."""
        return self._csr @ columns.contiguous()

    def multiply_transpose(self, rows: np.ndarray, threads: int = 1) -> np.ndarray:
        """``A^T @ rows``: ``(rows, B)`` C-contiguous float32 → ``(H * W, B)``."""

        def run(group: range) -> np.ndarray:
            total = np.zeros((self.shape[1], rows.shape[1]), dtype=np.float32)
            for index in group:
                start, stop = self.block_rows[index], self.block_rows[index + 1]
                total += self.blocks[index].T @ rows[start:stop]
            return total

        total, *others = self._in_threads(run, threads)
        for partial_sum in others:
            total += partial_sum
        return total

    def _in_threads(self, run, threads: int) -> list:
        """Run ``run(group)`` on ``threads`` groups of blocks of equal nnz, in threads."""
        threads = max(1, min(threads, len(self.blocks)))
        if threads == 1:
            return [run(range(len(self.blocks)))]
        targets = self._cumulative_nnz[-1] * np.arange(1, threads) / threads
        bounds = [0, *(np.searchsorted(self._cumulative_nnz, targets) + 1).tolist(),
                  len(self.blocks)]
        groups = [range(a, b) for a, b in itertools.pairwise(bounds) if b > a]
        return list(_pool(len(groups)).map(run, groups))


def _csr_view(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, start: int, stop: int,
              n_columns: int) -> scipy.sparse.csr_matrix:
    """Rows ``start:stop`` as a scipy CSR matrix on views of the arrays.

    (scipy's constructor copies a view of less than half its array.)
    """
    first, last = int(indptr[start]), int(indptr[stop])
    rows = scipy.sparse.csr_matrix((stop - start, n_columns), dtype=np.float32)
    rows.data, rows.indices = data[first:last], indices[first:last]
    rows.indptr = indptr[start:stop + 1] - indptr[start]
    return rows


class MatrixRayTransform:
    """The backend's forward and adjoint as products with ASTRA's system matrix.

    Same interface as :class:`~ctpnp.projector.backend.OdlRayTransform`
    (``forward``, ``adjoint``, ``fbp``), CPU only. The matrix is obtained on
    the first projection, not before (FBP never needs it); where it would
    exceed the budget, the backend either projects with ``reference`` from
    then on (``fall_back``) or raises :class:`MatrixTooLarge`.

    Args:
        reference: the ODL backend on the CPU whose operator this is; FBP is its.
        budget_mib: memory the matrix may take (MiB).
        fall_back: use ``reference`` where the matrix exceeds the budget.
    """

    def __init__(self, reference: OdlRayTransform, budget_mib: float = math.inf,
                 fall_back: bool = False) -> None:
        if reference.device.type != "cpu":
            raise ValueError(f"the matrix backend runs on the CPU, not on {reference.device}")
        self.reference = reference
        self.geometry = reference.geometry
        self.device = reference.device
        self.ray_transform = reference.ray_transform  # the ODL operator A is the matrix of
        self.budget_mib = budget_mib
        self.fall_back = fall_back
        self._matrix: SystemMatrix | None = None
        self._resolved = False

    @property
    def matrix(self) -> SystemMatrix | None:
        """The system matrix, obtained on first use; ``None`` where it fell back to ODL."""
        if not self._resolved:
            try:
                self._matrix = system_matrix(self.reference, self.budget_mib)
            except MatrixTooLarge:
                if not self.fall_back:
                    raise
            self._resolved = True
        return self._matrix

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` μ → ``(B, 1, views, channels)`` line integrals."""
        matrix = self.matrix
        if matrix is None:
            return self.reference.forward(images)
        batch = images.shape[0]
        rows = matrix.multiply(images.detach().reshape(batch, -1).T)
        sinograms = rows.T.reshape(batch, 1, *self.ray_transform.range.shape)
        resampler = self.reference.resampler
        return sinograms if resampler is None else resampler.apply(sinograms)

    def adjoint(self, sinograms: torch.Tensor) -> torch.Tensor:
        """``(B, 1, views, channels)`` → ``(B, 1, H, W)``, the transpose of :meth:`forward`."""
        matrix = self.matrix
        if matrix is None:
            return self.reference.adjoint(sinograms)
        resampler = self.reference.resampler
        if resampler is not None:
            sinograms = resampler.adjoint(sinograms)
        batch = sinograms.shape[0]
        rows = np.ascontiguousarray(sinograms.detach().reshape(batch, -1).numpy().T)
        columns = matrix.multiply_transpose(rows, torch.get_num_threads())
        return torch.from_numpy(np.ascontiguousarray(columns.T)).reshape(
            batch, 1, *self.geometry.image_shape)

    def fbp(self, sinograms: torch.Tensor, filter_name: str, frequency_scaling: float
            ) -> torch.Tensor:
        """The reference backend's filtered back-projection (see ``OdlRayTransform.fbp``)."""
        return self.reference.fbp(sinograms, filter_name, frequency_scaling)


# ---------------------------------------------------------------------- building
_CACHE: weakref.WeakValueDictionary[ScanGeometry, SystemMatrix] = weakref.WeakValueDictionary()
_CACHE_LOCK = threading.Lock()


def system_matrix(reference: OdlRayTransform, budget_mib: float = math.inf) -> SystemMatrix:
    """ASTRA's system matrix of ``reference`` (CPU), shared within the process per geometry.

    Taken from the process, else from the disk cache
    (:mod:`ctpnp.projector.matrix_cache`), else built and stored there.

    Raises:
        MatrixTooLarge: if it is not in the process and exceeds ``budget_mib``
            (estimated before building, see :func:`estimate_matrix_mib`).
    """
    with _CACHE_LOCK:
        matrix = _CACHE.get(reference.geometry)
        if matrix is not None:
            return matrix
        setup = _astra_setup(reference)
        key = matrix_cache.matrix_key(*setup)
        n_rows = reference.geometry.n_views * reference.ray_transform.range.shape[1]
        arrays = matrix_cache.load(key, (n_rows, reference.space.size))
        if arrays is not None:
            matrix = SystemMatrix(*arrays)
        else:
            nnz = estimate_nnz(reference)
            size_mib = estimate_matrix_mib(reference, nnz)
            if size_mib > budget_mib:
                raise MatrixTooLarge(
                    f"the system matrix of {reference.geometry} would take about "
                    f"{size_mib:.0f} MiB, over the budget of {budget_mib:.0f} MiB; "
                    "raise max_matrix_mib or use backend='odl'")
            matrix = build_system_matrix(reference, nnz)
            matrix_cache.store(key, matrix)
        if matrix.mib > budget_mib:
            raise MatrixTooLarge(f"the system matrix of {reference.geometry} takes "
                                 f"{matrix.mib:.0f} MiB, over the budget of {budget_mib:.0f} MiB")
        _CACHE[reference.geometry] = matrix
        return matrix


def build_system_matrix(reference: OdlRayTransform, nnz_estimate: int | None = None
                        ) -> SystemMatrix:
    """Read ASTRA's system matrix of ``reference`` out block by block (float32 CSR).

    The blocks are written straight into arrays sized by ``nnz_estimate``
    (:func:`estimate_nnz` when not given) with a margin, so building takes the
    matrix's memory plus one block, not twice the matrix; the unused tail of
    the arrays is never touched, so it takes no memory.
    """
    setup = _astra_setup(reference)
    n_views = reference.geometry.n_views
    views_per_block = math.ceil(n_views / BLOCKS_PER_MATRIX)
    capacity = int(1.1 * (estimate_nnz(reference) if nnz_estimate is None else nnz_estimate))
    data = np.empty(capacity, dtype=np.float32)
    indices = np.empty(capacity, dtype=np.int32)
    indptr = np.empty(n_views * reference.ray_transform.range.shape[1] + 1, dtype=np.int32)
    indptr[0] = 0
    block_rows, offset = [0], 0
    for start in range(0, n_views, views_per_block):
        block = _matrix_rows(*setup, np.arange(start, min(start + views_per_block, n_views)))
        if offset + block.nnz >= 2**31:
            raise MatrixTooLarge(f"{offset + block.nnz} nonzeros: more than int32 can index")
        if offset + block.nnz > data.size:  # the estimate was low: grow
            capacity = max(2 * data.size, offset + block.nnz)
            data, indices = (np.concatenate([a[:offset], np.empty(capacity - offset, a.dtype)])
                             for a in (data, indices))
        row = block_rows[-1]
        data[offset:offset + block.nnz] = block.data
        indices[offset:offset + block.nnz] = block.indices
        indptr[row + 1:row + block.shape[0] + 1] = block.indptr[1:] + offset
        block_rows.append(row + block.shape[0])
        offset += block.nnz
    return SystemMatrix(data[:offset], indices[:offset], indptr, reference.space.size,
                        np.array(block_rows))


def estimate_nnz(reference: OdlRayTransform) -> int:
    """The system matrix's nonzeros from a few evenly spread views (within a few %)."""
    n_views = reference.geometry.n_views
    # Spread over the turn, off the axis-aligned views (fewer nonzeros there).
    sample = np.unique((n_views * (np.arange(_SAMPLE_VIEWS) + 0.5) / _SAMPLE_VIEWS).astype(int))
    return round(_matrix_rows(*_astra_setup(reference), sample).nnz / sample.size * n_views)


def estimate_matrix_mib(reference: OdlRayTransform, nnz: int | None = None) -> float:
    """The system matrix's size (MiB) for ``nnz`` nonzeros (default :func:`estimate_nnz`)."""
    n_rows = reference.geometry.n_views * reference.ray_transform.range.shape[1]
    nnz = estimate_nnz(reference) if nnz is None else nnz
    return (nnz * _BYTES_PER_NONZERO + 4 * (n_rows + 1)) / 2**20


def matrix_budget_mib(max_matrix_mib: float | None = None) -> float:
    """The memory a system matrix may take (MiB).

    ``max_matrix_mib`` (default :data:`DEFAULT_MAX_MATRIX_MIB`), but never more
    than half the memory the system reports available (Linux ``MemAvailable``).
    """
    cap = DEFAULT_MAX_MATRIX_MIB if max_matrix_mib is None else float(max_matrix_mib)
    available = _available_mib()
    return cap if available is None else min(cap, 0.5 * available)


def _available_mib() -> float | None:
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return None


def _astra_setup(reference: OdlRayTransform) -> tuple[str, dict, dict]:
    """ASTRA's projector type, volume and projection geometry, as ODL's ``astra_cpu`` makes them."""
    odl_geometry = reference.ray_transform.geometry
    return (default_astra_proj_type(odl_geometry), astra_volume_geometry(reference.space, "cpu"),
            astra_projection_geometry(odl_geometry, "cpu"))


def _matrix_rows(projector_type: str, volume_geometry: dict, projection_geometry: dict,
                 views: np.ndarray) -> scipy.sparse.csr_matrix:
    """The rows of ``views`` (increasing indices) of ASTRA's matrix, as float32 CSR."""
    projection = dict(projection_geometry)
    key = "Vectors" if "Vectors" in projection else "ProjectionAngles"
    projection[key] = np.ascontiguousarray(projection[key][views])
    projector_id = astra_projector(projector_type, volume_geometry, projection, 2)
    try:
        matrix_id = astra.projector.matrix(projector_id)
        try:
            rows = astra.matrix.get(matrix_id)
        finally:
            astra.matrix.delete(matrix_id)
    finally:
        astra.projector.delete(projector_id)
    return scipy.sparse.csr_matrix((rows.data.astype(np.float32), rows.indices, rows.indptr),
                                   shape=rows.shape)


_POOLS: dict[int, ThreadPoolExecutor] = {}
os.register_at_fork(after_in_child=_POOLS.clear)  # a forked child has none of the threads


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads for the sparse products."""
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="ctpnp-matrix")
    return _POOLS[workers]

