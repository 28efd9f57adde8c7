"""Reconstruct a whole volume slice by slice: batched, in worker processes, streaming, resumable.

Each finished slice is written atomically to ``out_dir`` as ``slice_NNNNN.npy``
(float32 ``(H, W)`` μ in 1/mm) followed by ``slice_NNNNN.json`` (``n_iter``,
``converged``, ``diverged``); a slice counts as finished once its JSON exists,
so a re-run after a crash or Ctrl-C skips it and recomputes nothing.

On the CPU, ``workers > 1`` runs batches in ``spawn``-ed worker processes (ASTRA's
CPU projector holds the GIL, so threads would not scale), each building its own
:class:`~ctpnp.Tomography` and prior once. The projector's system matrix (the
default CPU backend) is built or loaded once in the calling process before the
workers start, so they load it from the disk cache, memory-mapped: its pages are
shared, not copied per worker (with the cache off, each worker builds its own).
On CUDA use ``batch_size > 1`` in one process. At most ``workers`` batches of
sinograms are in flight at any time, so memory does not grow with the number of slices.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import queue
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ctpnp.apps.progress import Progress
from ctpnp.atomic import staged_file
from ctpnp.projector import Tomography
from ctpnp.projector.backend import resolve_device
from ctpnp.registry import DEFAULT_METHOD, DEFAULT_PRIOR, METHODS, PNP_METHODS, solver
from ctpnp.scanner.geometry import ScanGeometry

__all__ = ["VolumeResult", "reconstruct_volume"]

CONFIG_NAME = "volume.json"
VOLUME_NAME = "volume.npy"


@dataclass(frozen=True)
class VolumeResult:
    """A reconstructed volume and how each slice's iteration ended.

    Attributes:
        volume: ``(S, H, W)`` float32 μ (1/mm), read-only memory map of
            ``out_dir/volume.npy``. Slices that diverged are NaN.
        n_iter: ``(S,)`` int, iterations of each slice (0 for FBP).
        converged: ``(S,)`` bool, stopped by the relative-change rule.
        diverged: ``(S,)`` bool, stopped because the iteration blew up.
        computed: ``(S,)`` bool, reconstructed by this call (False: found finished).
    """

    volume: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    diverged: np.ndarray
    computed: np.ndarray


@dataclass(frozen=True)
class _Config:
    """Everything a worker needs to build its reconstructor (picklable)."""

    geometry: ScanGeometry
    method: str
    prior: str
    params: dict
    device: str

    def describe(self) -> dict:
        """JSON form saved in ``out_dir`` so a re-run cannot mix different settings."""
        return json.loads(json.dumps({"geometry": repr(self.geometry), "method": self.method,
                                      "prior": self.prior if self.method in PNP_METHODS else None,
                                      "params": self.params}, sort_keys=True, default=repr))


class _Reconstructor:
    """Forward model and prior built once; reconstructs batches and writes their slices."""

    def __init__(self, config: _Config, on_iteration: Callable[[], object] | None = None
                 ) -> None:
        self.config = config
        self.on_iteration = on_iteration
        self.op = Tomography(config.geometry, config.device)
        self.prior = None
        if config.method in PNP_METHODS:
            from ctpnp.priors import load  # only PnP methods need (possibly learned) priors
            self.prior = load(config.prior, device=self.op.device)

    def run(self, indices: list[int], sinograms: np.ndarray, out_dir: Path) -> list[int]:
        """Reconstruct ``(B, views, channels)`` sinograms and write slices ``indices``."""
        y = torch.from_numpy(sinograms).to(self.op.device, torch.float32)[:, None]
        method, params = self.config.method, dict(self.config.params)
        if self.on_iteration is not None and method != "fbp":
            params["callback"] = lambda *_: self.on_iteration()
        batch = len(indices)
        if method == "fbp":
            x = self.op.fbp(y, **params)
            n_iter = torch.zeros(batch, dtype=torch.int64)
            converged = diverged = torch.zeros(batch, dtype=torch.bool)
        else:
            prior = (self.prior,) if method in PNP_METHODS else ()
            result = solver(method)(y, self.op, *prior, **params)
            x, n_iter = result.x, result.n_iter
            converged, diverged = result.converged, result.diverged
        images = x[:, 0].detach().cpu().numpy().astype(np.float32)
        for item, index in enumerate(indices):
            _write_slice(out_dir, index, images[item],
                         {"n_iter": int(n_iter[item]), "converged": bool(converged[item]),
                          "diverged": bool(diverged[item])})
        return indices


def _prepare_projector(config: _Config) -> str:
    """Obtain the system matrix of ``config``'s projector here, before workers start.

    Built and written to the disk cache, or found there, so each worker maps the
    cached file instead of building the matrix again. Returns the backend
    (``"matrix"`` or ``"odl"``; on CUDA or over the memory budget nothing is built).
    """
    return Tomography(config.geometry, config.device).backend


_WORKER: _Reconstructor | None = None
_TOKENS: multiprocessing.Queue | None = None


def _init_worker(config: _Config, iterations: multiprocessing.Queue | None) -> None:
    """Worker-process initializer: one torch thread, one reconstructor.

    With ``iterations``, each finished solver iteration puts ``True`` in it and
    each finished batch ``False`` (so the caller knows when it has them all).
    """
    global _WORKER, _TOKENS
    torch.set_num_threads(1)
    _TOKENS = iterations
    _WORKER = _Reconstructor(config, None if iterations is None
                             else lambda: iterations.put_nowait(True))


def _run_in_worker(indices: list[int], sinograms: np.ndarray, out_dir: Path) -> list[int]:
    assert _WORKER is not None, "worker not initialized"
    finished = _WORKER.run(indices, sinograms, out_dir)
    if _TOKENS is not None:
        _TOKENS.put_nowait(False)
    return finished


class _InlineExecutor(cf.Executor):
    """Runs each task at once in this process (``workers=1``), with the pool's interface."""

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        future: cf.Future = cf.Future()
        future.set_result(fn(*args, **kwargs))
        return future


def _slice_path(out_dir: Path, index: int, suffix: str) -> Path:
    return out_dir / f"slice_{index:05d}{suffix}"


def _write_slice(out_dir: Path, index: int, image: np.ndarray, info: dict) -> None:
    """Image first, then its JSON: the JSON's presence marks the slice finished."""
    with staged_file(_slice_path(out_dir, index, ".npy")) as temporary:
        np.save(temporary, image)
    with staged_file(_slice_path(out_dir, index, ".json")) as temporary:
        temporary.write_text(json.dumps(info))


def _is_finished(out_dir: Path, index: int) -> bool:
    return (_slice_path(out_dir, index, ".json").exists()
            and _slice_path(out_dir, index, ".npy").exists())


def _check_input(sinograms: Sequence, geometry: ScanGeometry, method: str, batch_size: int,
                 workers: int, device: torch.device) -> None:
    """Raise ``ValueError`` for anything that would fail later, before any work starts."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is unknown: expected one of {list(METHODS)}")
    if batch_size < 1 or workers < 1:
        raise ValueError(f"batch_size={batch_size} and workers={workers} must be >= 1")
    if workers > 1 and device.type != "cpu":
        raise ValueError(f"workers={workers} is for the CPU; on {device} use batch_size > 1")
    if not hasattr(sinograms, "__len__") or not hasattr(sinograms, "__getitem__"):
        raise ValueError("sinograms: expected an (S, views, channels) array or a sequence "
                         f"of (views, channels) slices, got {type(sinograms).__name__}")
    if len(sinograms) == 0:
        raise ValueError("sinograms: no slices")
    shape = getattr(sinograms, "shape", None)
    shape = tuple(shape[1:]) if shape is not None else np.shape(sinograms[0])
    if shape != geometry.sinogram_shape:
        raise ValueError(f"sinograms: slices are {shape}, the geometry expects (views, "
                         f"channels) = {geometry.sinogram_shape}")


def _check_config(out_dir: Path, description: dict) -> None:
    """Record the settings; refuse to resume a folder written with different ones."""
    path = out_dir / CONFIG_NAME
    if path.exists():
        found = json.loads(path.read_text())
        if found != description:
            raise ValueError(f"{out_dir} holds slices of another reconstruction ({found}); "
                             "use a new out_dir")
        return
    with staged_file(path) as temporary:
        temporary.write_text(json.dumps(description, indent=2))


def _batches(sinograms: Sequence, pending: list[int], batch_size: int, shape: tuple[int, int]
             ) -> Iterator[tuple[list[int], np.ndarray]]:
    """Load pending slices lazily, ``batch_size`` at a time: ``(indices, (B, views, channels))``."""
    for start in range(0, len(pending), batch_size):
        indices = pending[start:start + batch_size]
        yield indices, np.stack([_load_slice(sinograms, i, shape) for i in indices])


def _load_slice(sinograms: Sequence, index: int, shape: tuple[int, int]) -> np.ndarray:
    """Slice ``index`` as float32 ``(views, channels)``, checked against ``shape``."""
    image = np.asarray(sinograms[index], dtype=np.float32)
    if image.shape != shape:
        raise ValueError(f"sinograms: slice {index} is {image.shape}, expected {shape}")
    return image


def _assemble(out_dir: Path, n_slices: int, image_shape: tuple[int, int]) -> np.ndarray:
    """Stack the slice files into ``out_dir/volume.npy`` one slice at a time; memory-map it."""
    final = out_dir / VOLUME_NAME
    with staged_file(final) as temporary:
        volume = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32,
                                           shape=(n_slices, *image_shape))
        for index in range(n_slices):
            volume[index] = np.load(_slice_path(out_dir, index, ".npy"))
        volume.flush()
        del volume
    return np.load(final, mmap_mode="r")


def reconstruct_volume(
    sinograms: Sequence,
    geometry: ScanGeometry,
    out_dir: Path | str,
    *,
    method: str = DEFAULT_METHOD,
    prior: str = DEFAULT_PRIOR,
    params: dict | None = None,
    batch_size: int = 1,
    workers: int = 1,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    on_iteration: Callable[[], object] | None = None,
) -> VolumeResult:
    """Reconstruct ``S`` slices into ``out_dir``, resuming from the slices already there.

    Args:
        sinograms: ``(S, views, channels)`` post-log line integrals (array), or any
            sequence of ``(views, channels)`` slices (``len`` and indexing); a lazy
            sequence that loads each slice on access streams the volume.
        geometry: the scan and image grid of every slice.
        out_dir: folder of the per-slice files (created; resumed when it exists).
        method: ``"pnp-admm"``, ``"pnp-drs"``, ``"pnp-pgd"``, ``"tv"`` or ``"fbp"``.
        prior: registry name or weights path (:func:`ctpnp.priors.load`), PnP only.
        params: keyword arguments of the solver (or of :meth:`Tomography.fbp`);
            defaults are the solver's.
        batch_size: slices per solver call (``B``); each item is independent.
        workers: CPU worker processes (``spawn``); 1 runs in this process.
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).
        progress: ``progress(slices_done, slices_total, note)`` after each finished
            batch (and once at the start); an exception raised from it stops the
            run, keeping every slice finished so far.
        on_iteration: called in the calling process after each solver iteration
            of any batch (not for FBP), e.g. for a progress bar over iterations.

    Raises:
        ValueError: unknown method, bad sizes, slices that do not match the
            geometry, or an ``out_dir`` written with other settings — before any work.
    """
    resolved = resolve_device(device)
    _check_input(sinograms, geometry, method, batch_size, workers, resolved)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = _Config(geometry, method, prior, dict(params or {}), str(resolved))
    _check_config(out_dir, config.describe())

    total = len(sinograms)
    pending = [i for i in range(total) if not _is_finished(out_dir, i)]
    done = total - len(pending)
    if progress is not None:
        progress(done, total, "")
    tokens = None
    if pending:
        context = multiprocessing.get_context("spawn")
        tokens = context.Queue() if on_iteration is not None and workers > 1 else None
        if workers == 1:
            executor: cf.Executor = _InlineExecutor()
            task = _Reconstructor(config, on_iteration).run
        else:
            _prepare_projector(config)
            executor = cf.ProcessPoolExecutor(workers, mp_context=context,
                                              initializer=_init_worker, initargs=(config, tokens))
            task = _run_in_worker

        def wait_for_one(futures: set[cf.Future]) -> set[cf.Future]:
            """Block until a batch finishes, relaying iteration tokens meanwhile."""
            nonlocal done, ended
            while True:
                finished, futures = cf.wait(futures, timeout=None if tokens is None else 0.2,
                                            return_when=cf.FIRST_COMPLETED)
                ended += _relay(tokens, on_iteration)
                if finished:
                    done += _collect(finished, total, done, progress)
                    return futures

        submitted = ended = 0
        try:
            in_flight: set[cf.Future] = set()
            for indices, stack in _batches(sinograms, pending, batch_size, geometry.sinogram_shape):
                in_flight.add(executor.submit(task, indices, stack, out_dir))
                submitted += 1
                while len(in_flight) >= workers:
                    in_flight = wait_for_one(in_flight)
            while in_flight:
                in_flight = wait_for_one(in_flight)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    infos = [json.loads(_slice_path(out_dir, i, ".json").read_text()) for i in range(total)]
    if pending and tokens is not None:  # the last tokens may trail their batch's result
        _relay(tokens, on_iteration, submitted - ended)
    computed = np.zeros(total, dtype=bool)
    computed[pending] = True
    return VolumeResult(
        volume=_assemble(out_dir, total, geometry.image_shape),
        n_iter=np.array([info["n_iter"] for info in infos], dtype=np.int64),
        converged=np.array([info["converged"] for info in infos], dtype=bool),
        diverged=np.array([info["diverged"] for info in infos], dtype=bool),
        computed=computed,
    )


def _relay(tokens: multiprocessing.Queue | None, on_iteration: Callable[[], object] | None,
           batches: int = 0) -> int:
    """Call ``on_iteration`` once per iteration token the workers queued.

    Returns the number of batch-end tokens seen; waits (up to 10 s each) until
    ``batches`` of them arrived, since tokens may trail their batch's result.
    """
    if tokens is None or on_iteration is None:
        return 0
    ended = 0
    while True:
        try:
            iteration = tokens.get(timeout=10.0) if ended < batches else tokens.get_nowait()
        except queue.Empty:
            return ended
        if iteration:
            on_iteration()
        else:
            ended += 1


def _collect(finished: set[cf.Future], total: int, done: int, progress: Progress | None) -> int:
    """Slices in ``finished`` (re-raising a worker's error); reports progress after each batch."""
    count = 0
    for future in finished:
        indices = future.result()
        count += len(indices)
        if progress is not None:
            progress(done + count, total, "slice " + ", ".join(str(i + 1) for i in indices))
    return count
