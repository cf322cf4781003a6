"""The method-agnostic trainer: stages, resumable checkpoints, logging, progress, DDP.

:class:`Trainer` runs the stages a method registered (see :mod:`poseshape.engine.registry`)
one after the other::

    trainer = Trainer("reproject", config, out_dir="runs/reproject", seed=0)
    models = trainer.fit()          # {name: nn.Module}, trained

Run directory (``out_dir``)::

    config.yaml                       the config the run uses (for people; the checkpoint has it too)
    last.pt                           latest checkpoint (atomic; see poseshape.engine.checkpoint)
    best_<stage>.pt                   best validation checkpoint of a stage with ``best_metric``
    stage_<i>_<stage>.pt              the weights at the end of stage i (same format as last.pt)
    logs/train_<i>_<stage>.csv        per logged step: stage, step, global_step, time, lr, losses...
    logs/val_<i>_<stage>.csv          per validation: stage, step, global_step, time, metrics...
    tb/                               TensorBoard events (only if ``tensorboard`` is installed)

``step`` counts optimiser steps done inside the stage (1 after the first step); ``time`` is
the training wall time in seconds, cumulative over interruptions.

Resuming. Rerunning the same command with the same ``out_dir`` continues from ``last.pt``:
the stage index, the step within the stage, the weights, the optimiser and scheduler states,
the position in the training data and the RNG states (torch, CUDA, numpy, python; one set per
rank, stored as tensors so the file loads with ``weights_only=True``) are restored, and the
CSV rows written after that checkpoint are dropped. With a map-style dataset the data order
depends only on ``(seed, stage index, epoch)``, so a run killed at any point and rerun ends
with exactly the weights of an uninterrupted run on CPU (on GPU up to the nondeterminism of
some CUDA kernels; pass ``deterministic=True`` to ask torch for deterministic algorithms).
A checkpoint whose method, config, seed or stage list differs from the current run is refused
(:class:`poseshape.core.errors.CheckpointError`): use another ``out_dir`` or ``resume=False``.

Multi-process training. Launched by ``torchrun`` (``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` in
the environment) the trainer initialises the process group (``nccl`` on CUDA, ``gloo`` on
CPU), puts each rank on ``cuda:LOCAL_RANK``, wraps the modules trained in a stage in
``DistributedDataParallel`` (gradients are averaged, so the weights stay identical on all
ranks), gives every rank a disjoint strided shard of each epoch's permutation
(``perm[rank::world_size]``, so ``batch_size`` is per process and the global batch is
``world_size * batch_size``), and lets only rank 0 validate and write logs and checkpoints
(the ranks' RNG states are gathered into it). While rank 0 validates, the other ranks wait
at their next gradient all-reduce, so a validation must finish within the process-group
timeout (30 min by default). All ranks meet at a barrier at the end::

    torchrun --nproc_per_node=4 -m poseshape train reproject --out runs/r

Stage semantics. In each stage only the modules named in ``Stage.train`` are trained; the
others are frozen (``requires_grad=False``, ``eval()`` mode, so their weights and buffers do
not change). A fresh optimiser (and scheduler) is made at the start of each stage from the
stage's factories.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from poseshape.core.config import config_diff, config_from_dict, config_to_dict, dump_yaml
from poseshape.core.errors import CheckpointError, PoseshapeError, TrainingInterrupted
from poseshape.engine.checkpoint import (
    Checkpoint,
    load_checkpoint,
    restore_models,
    save_checkpoint,
)
from poseshape.engine.registry import MethodSpec, Stage, StageContext, get_method

__all__ = [
    "Trainer",
    "derive_seed",
    "get_rng_state",
    "load_trained",
    "move_to_device",
    "seed_everything",
    "set_rng_state",
]

log = logging.getLogger("poseshape.engine.train")

_FIXED_TRAIN_COLUMNS = ["stage", "step", "global_step", "time", "lr"]
_FIXED_VAL_COLUMNS = ["stage", "step", "global_step", "time"]


# --------------------------------------------------------------------------- seeding / RNG
def derive_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed that depends only on ``seed`` and ``parts`` (stable across runs/platforms)."""
    h = hashlib.blake2b(repr((int(seed),) + tuple(parts)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)  # also seeds all CUDA devices


def get_rng_state() -> dict[str, Any]:
    """The global RNG states (torch, CUDA if initialised, numpy, python) as tensors and numbers.

    Everything in the result loads with ``torch.load(weights_only=True)``.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore states captured by :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = list(state["cuda"])
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


# --------------------------------------------------------------------------- batches
def move_to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor inside ``batch`` (nested dicts / lists / tuples / namedtuples) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        moved = {k: move_to_device(v, device, non_blocking) for k, v in batch.items()}
        if type(batch) is dict:
            return moved
        try:
            return type(batch)(moved)
        except (TypeError, ValueError):
            return moved
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device, non_blocking) for v in batch)
    return batch


def _is_map_dataset(x: Any) -> bool:
    return isinstance(x, Dataset) and not isinstance(x, IterableDataset)


class _BatchStream:
    """Training batches of one stage, resumable at any ``(epoch, index_in_epoch)``.

    Map-style datasets: epoch ``e`` uses the permutation seeded by ``(seed, stage, e)``;
    rank ``r`` takes ``perm[r::world_size]`` (padded by wrapping so every rank gets the same
    number of samples) and cuts it into batches. Other iterables are re-iterated per epoch
    and fast-forwarded on resume.
    """

    def __init__(
        self, data: Any, stage: Stage, stage_index: int, seed: int, rank: int, world_size: int, pin_memory: bool
    ) -> None:
        self.data, self.stage, self.si = data, stage, stage_index
        self.seed, self.rank, self.world_size, self.pin = seed, rank, world_size, pin_memory
        self.map_style = _is_map_dataset(data)
        if self.map_style:
            n = len(data)
            if n == 0:
                raise PoseshapeError(f"stage {stage.name!r}: the training dataset is empty")
            self.n = n
            self.per_rank = math.ceil(n / world_size)
            bs = stage.batch_size
            self.steps_per_epoch = self.per_rank // bs if stage.drop_last else math.ceil(self.per_rank / bs)
            if self.steps_per_epoch == 0:
                raise PoseshapeError(
                    f"stage {stage.name!r}: {self.per_rank} samples per process < batch_size "
                    f"{bs} with drop_last=True: no batch to train on"
                )
        else:
            if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
                raise PoseshapeError(
                    f"stage {stage.name!r}: data() must return a map-style "
                    f"Dataset or an iterable of batches, got {type(data).__name__}"
                )
            try:
                self.steps_per_epoch = len(data)
            except TypeError:
                self.steps_per_epoch = None
        self.epoch = 0
        self.index = 0  # index of the next batch inside the epoch
        self.batch_epoch = 0  # epoch of the batch returned last
        self._it: Iterator | None = None

    def seek(self, epoch: int, index: int) -> None:
        self.epoch, self.index, self._it = int(epoch), int(index), None

    def position(self) -> tuple[int, int]:
        return self.epoch, self.index

    def _epoch_iter(self) -> Iterator:
        if self.map_style:
            g = torch.Generator().manual_seed(derive_seed(self.seed, "perm", self.si, self.epoch))
            perm = torch.randperm(self.n, generator=g)
            if self.world_size > 1:
                total = self.per_rank * self.world_size
                if total > self.n:
                    perm = torch.cat([perm, perm[: total - self.n]])
                perm = perm[self.rank :: self.world_size]
            bs = self.stage.batch_size
            batches = [perm[i * bs : (i + 1) * bs].tolist() for i in range(self.index, self.steps_per_epoch)]
            wg = torch.Generator().manual_seed(derive_seed(self.seed, "workers", self.si, self.epoch, self.rank))
            loader = DataLoader(
                self.data,
                batch_sampler=batches,
                num_workers=self.stage.num_workers,
                collate_fn=self.stage.collate_fn,
                pin_memory=self.pin,
                generator=wg,
            )
            return iter(loader)
        it = iter(self.data)
        for k in range(self.index):  # fast-forward to the resume point
            try:
                next(it)
            except StopIteration:
                raise PoseshapeError(
                    f"stage {self.stage.name!r}: cannot resume at batch {self.index} of epoch "
                    f"{self.epoch}: the training data now yields only {k} batches"
                ) from None
        return it

    def next(self) -> Any:
        for _ in range(2):
            if self._it is None:
                self._it = self._epoch_iter()
            try:
                batch = next(self._it)
            except StopIteration:
                self._it = None
                if self.index == 0:
                    break
                self.epoch, self.index = self.epoch + 1, 0
                continue
            self.batch_epoch = self.epoch
            self.index += 1
            if self.steps_per_epoch is not None and self.index >= self.steps_per_epoch:
                # next call starts a new epoch without waiting for StopIteration
                self.epoch, self.index, self._it = self.epoch + 1, 0, None
            return batch
        raise PoseshapeError(f"stage {self.stage.name!r}: the training data yielded no batches")


# --------------------------------------------------------------------------- logs
class _CsvLog:
    """Append-only CSV with a header fixed at the first row; resumable (rows after a step dropped)."""

    def __init__(self, path: Path, fixed: list[str], keep_upto_step: int | None) -> None:
        self.path, self.fixed = path, fixed
        self.columns: list[str] | None = None
        self._warned = False
        path.parent.mkdir(parents=True, exist_ok=True)
        if keep_upto_step and path.exists():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                cols = reader.fieldnames
                rows = [r for r in reader if _int(r.get("step")) <= keep_upto_step]
            if cols:
                buf = io.StringIO()
                w = csv.DictWriter(buf, fieldnames=cols)
                w.writeheader()
                w.writerows(rows)
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text(buf.getvalue())
                os.replace(tmp, path)
                self.columns = list(cols)
        elif path.exists():
            path.unlink()
        self._f = open(path, "a", newline="")  # noqa: SIM115 - closed by close()
        self._w = csv.DictWriter(self._f, fieldnames=self.columns) if self.columns else None

    def write(self, row: dict[str, Any]) -> None:
        if self._w is None:
            self.columns = self.fixed + [k for k in row if k not in self.fixed]
            self._w = csv.DictWriter(self._f, fieldnames=self.columns)
            self._w.writeheader()
        extra = [k for k in row if k not in self.columns]
        if extra and not self._warned:
            self._warned = True
            log.warning("%s: values %s appeared after the first row; not logged", self.path, extra)
        self._w.writerow({k: _fmt(row.get(k, "")) for k in self.columns})
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _int(x: Any) -> int:
    try:
        return int(x)
    except (TypeError, ValueError):
        return 1 << 62


def _fmt(v: Any) -> Any:
    return f"{v:.9g}" if isinstance(v, float) else v


def _scalar(v: Any, name: str) -> float:
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise PoseshapeError(f"step output {name!r} must be a scalar, got shape {tuple(v.shape)}")
        return float(v.detach().item())
    if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
        return float(v)
    raise PoseshapeError(f"step/validate output {name!r} must be a number or scalar tensor, got {type(v).__name__}")


_TB_NOTICE_SHOWN = False


def _make_tb_writer(path: Path, purge_step: int | None) -> Any:
    global _TB_NOTICE_SHOWN
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _TB_NOTICE_SHOWN:
            _TB_NOTICE_SHOWN = True
            log.warning(
                "tensorboard is not installed: TensorBoard logging is off "
                "(pip install tensorboard); CSV logs are written as usual"
            )
        return None
    return SummaryWriter(str(path), purge_step=purge_step)


# --------------------------------------------------------------------------- trainer
class Trainer:
    """Run a registered method's training stages (see the module docstring).

    Args:
        method: registered name or a :class:`MethodSpec`.
        config: the method config (dataclass); default: the paper's values.
        out_dir: run directory for checkpoints and logs (``None``: nothing is written, no
            resumption).
        seed: seeds model construction, data order and every RNG (same on all ranks;
            each rank's RNG streams are then derived from it).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA if available else CPU
            (under torchrun, ``cuda:LOCAL_RANK``).
        progress: tqdm bars; ``None`` shows them only when stderr is a TTY.
        log_every: write the CSV/TensorBoard training row every this many steps.
        checkpoint_every: write ``last.pt`` every this many steps (and at every stage end).
        resume: continue from ``out_dir/last.pt`` when it exists (else start over).
        tensorboard: also log to TensorBoard when the package is installed.
        deterministic: ``torch.use_deterministic_algorithms(True)`` and no cuDNN autotuning.

    After :meth:`fit`, ``trainer.models`` holds the trained (unwrapped) modules and
    ``trainer.val_metrics`` the last validation result of every stage.
    """

    def __init__(
        self,
        method: str | MethodSpec,
        config: Any = None,
        *,
        out_dir: str | os.PathLike | None = None,
        seed: int = 0,
        device: str | torch.device | None = None,
        progress: bool | None = None,
        log_every: int = 1,
        checkpoint_every: int = 1000,
        resume: bool = True,
        tensorboard: bool = True,
        deterministic: bool = False,
    ) -> None:
        self.spec = method if isinstance(method, MethodSpec) else get_method(method)
        self.config = self.spec.default_config() if config is None else config
        if not isinstance(self.config, self.spec.config_cls):
            raise PoseshapeError(
                f"config for method {self.spec.name!r} must be a "
                f"{self.spec.config_cls.__name__}, got {type(self.config).__name__}"
            )
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.seed = int(seed)
        self.requested_device = device
        self.progress = progress
        self.log_every = max(1, int(log_every))
        self.checkpoint_every = max(1, int(checkpoint_every))
        self.resume = resume
        self.tensorboard = tensorboard
        self.deterministic = deterministic
        self.models: dict[str, nn.Module] = {}
        self.val_metrics: dict[str, dict[str, float]] = {}
        self.rank, self.world_size, self.local_rank = 0, 1, 0
        self._owns_pg = False
        self._best: dict[str, float] = {}
        self._best_state: dict[str, dict[str, dict[str, torch.Tensor]]] = {}  # restore_best stages
        self._elapsed0 = 0.0
        self._t0 = 0.0
        self._global_step = 0
        self._tb = None

    # ------------------------------------------------------------------ setup
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def _setup_distributed(self) -> None:
        ws = int(os.environ.get("WORLD_SIZE", "1"))
        if dist.is_available() and dist.is_initialized():
            self.world_size, self.rank = dist.get_world_size(), dist.get_rank()
            self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        elif ws > 1:
            self.rank = int(os.environ.get("RANK", "0"))
            self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            self.world_size = ws
        self.device = self._pick_device()
        if self.world_size > 1 and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend=backend, rank=self.rank, world_size=self.world_size)
            self._owns_pg = True

    def _pick_device(self) -> torch.device:
        d = self.requested_device
        if d is None:
            d = "cuda" if torch.cuda.is_available() else "cpu"
        d = torch.device(d)
        if d.type == "cuda":
            if not torch.cuda.is_available():
                raise PoseshapeError(f"device {str(d)!r} requested but CUDA is not available")
            if d.index is None:
                d = torch.device("cuda", self.local_rank if self.world_size > 1 else torch.cuda.current_device())
        return d

    def _elapsed(self) -> float:
        return self._elapsed0 + (time.perf_counter() - self._t0)

    # ------------------------------------------------------------------ fit
    def fit(self) -> dict[str, nn.Module]:
        """Train every remaining stage (resuming from ``out_dir/last.pt`` if present).

        Returns:
            ``{name: nn.Module}``: the trained modules (not DDP-wrapped), on ``self.device``.
        """
        self._setup_distributed()
        lock = self._lock_run_folder()
        previous = self._catch_stop_signals()
        try:
            return self._fit()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if lock is not None:
                lock.close()  # closing the descriptor releases the flock
            if self._tb is not None:
                self._tb.close()
                self._tb = None
            if self._owns_pg and dist.is_initialized():
                dist.destroy_process_group()
                self._owns_pg = False

    def _catch_stop_signals(self) -> dict[int, Any]:
        """SIGINT / SIGTERM during :meth:`fit` finish the current step, write a resumable
        ``last.pt`` and raise :class:`TrainingInterrupted` (a second signal stops at once).
        Only in the main thread of a single-process run with a run folder; returns the handlers
        to restore."""
        self._stop_signal = None
        if self.out_dir is None or self.distributed or threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}

        def handler(signum, frame):
            if self._stop_signal is not None:  # the second one: no more waiting
                raise KeyboardInterrupt
            self._stop_signal = signum

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handler)
        return previous

    def _lock_run_folder(self) -> Any:
        """Hold an exclusive ``fcntl.flock`` on ``out_dir/.lock`` for the whole run, so that a
        second trainer on the same folder fails at once instead of interleaving checkpoints.

        Returns the open lock file (closing it releases the lock), or None when there is no
        run folder, this is not the main process, or the platform has no ``fcntl``.
        """
        if not self.is_main or self.out_dir is None:
            return None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.out_dir / ".lock", "a+")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise PoseshapeError(
                f"{self.out_dir}: another training run is using this folder (locked: {self.out_dir / '.lock'}); "
                "wait for it to finish or choose another --out"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        return fh

    def _fit(self) -> dict[str, nn.Module]:
        if self.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        self._t0 = time.perf_counter()
        seed_everything(self.seed)
        self.models = self.spec.build_models(self.config)
        for m in self.models.values():
            m.to(self.device)
        self._orig_requires_grad = {n: [p.requires_grad for p in m.parameters()] for n, m in self.models.items()}
        stages = self.spec.get_stages(self.config)
        for s in stages:
            unknown = [n for n in (s.train or []) if n not in self.models]
            if unknown:
                raise PoseshapeError(
                    f"stage {s.name!r} trains {unknown}, which build() does not create; modules: {sorted(self.models)}"
                )
        self._stage_names = [s.name for s in stages]

        ckpt = self._load_resume_checkpoint()
        start_stage, start_step, rng = 0, 0, None
        if ckpt is not None:
            ts = ckpt.trainer_state
            restore_models(self.models, ckpt)
            start_stage, start_step = int(ts["stage_index"]), int(ts["step"])
            self._global_step = int(ts["global_step"])
            self._elapsed0 = float(ts.get("elapsed", 0.0))
            self._best = dict(ts.get("best", {}))
            rngs = ts.get("rng") or []
            if len(rngs) == self.world_size:
                rng = rngs[self.rank]
            else:
                warnings.warn(
                    f"{ckpt.path}: saved with {len(rngs)} process(es), now "
                    f"{self.world_size}: RNG streams and data shards are re-derived, "
                    "so the run will not match an uninterrupted one exactly",
                    stacklevel=2,
                )
                seed_everything(derive_seed(self.seed, "rank", self.rank, self._global_step))
        elif self.rank > 0:
            seed_everything(derive_seed(self.seed, "rank", self.rank))
        if self.is_main and self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.out_dir.glob(".*.pt.tmp.*"):  # left by a writer killed mid-write
                stale.unlink(missing_ok=True)
            dump_yaml(self.config, self.out_dir / "config.yaml")
            if self.tensorboard:
                self._tb = _make_tb_writer(self.out_dir / "tb", self._global_step if ckpt is not None else None)

        if ckpt is not None and start_stage < len(stages) and start_step == 0 and rng is not None:
            set_rng_state(rng)  # saved at a stage boundary: before that stage's set-up
            rng = None
        for si in range(start_stage, len(stages)):
            resuming = ckpt is not None and si == start_stage and start_step > 0
            self._run_stage(
                si, stages[si], start_step if resuming else 0, ckpt if resuming else None, rng if resuming else None
            )
        if ckpt is not None and start_stage >= len(stages) and self.is_main:
            log.info("%s: training already finished; nothing to do", ckpt.path)
        for n, m in self.models.items():
            for p, rg in zip(m.parameters(), self._orig_requires_grad[n]):
                p.requires_grad_(rg)
            m.eval()
        if self.distributed:
            dist.barrier()
        return self.models

    def _load_resume_checkpoint(self) -> Checkpoint | None:
        if self.out_dir is None or not self.resume:
            return None
        path = self.out_dir / "last.pt"
        if not path.exists():
            return None
        ckpt = load_checkpoint(path, expected_method=self.spec.name, map_location="cpu")
        ts = ckpt.trainer_state
        if not ts or "stage_index" not in ts:
            raise CheckpointError(f"{path}: has no trainer state, so it cannot be resumed")
        diff = config_diff(config_to_dict(self.config), ckpt.config)
        if diff:
            raise CheckpointError(
                f"{path}: the run in {self.out_dir} used another config (differs in: "
                f"{', '.join(diff)}); use another out_dir, or resume=False to start over"
            )
        if int(ts.get("seed", self.seed)) != self.seed:
            raise CheckpointError(
                f"{path}: the run used seed {ts.get('seed')}, not {self.seed}; use another out_dir or the same seed"
            )
        if list(ts.get("stage_names", self._stage_names)) != self._stage_names:
            raise CheckpointError(
                f"{path}: stages {ts.get('stage_names')} differ from the method's {self._stage_names}"
            )
        return ckpt

    # ------------------------------------------------------------------ one stage
    def _run_stage(
        self, si: int, stage: Stage, start_step: int, ckpt: Checkpoint | None, rng: Mapping[str, Any] | None
    ) -> None:
        cfg = self.config
        ctx = StageContext(
            config=cfg,
            stage=stage.name,
            stage_index=si,
            step=start_step,
            device=self.device,
            seed=self.seed,
            rank=self.rank,
            world_size=self.world_size,
            out_dir=self.out_dir,
        )
        out = stage.data(cfg, ctx)
        train_data, val_data = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
        stream = _BatchStream(
            train_data, stage, si, self.seed, self.rank, self.world_size, pin_memory=self.device.type == "cuda"
        )
        if stage.iterations is not None:
            total = stage.iterations
        else:
            if stream.steps_per_epoch is None:
                raise PoseshapeError(
                    f"stage {stage.name!r}: epochs= needs training data with len(); give iterations= instead"
                )
            total = stage.epochs * stream.steps_per_epoch
        ctx.total_steps = total

        train_names = list(stage.train) if stage.train is not None else list(self.models)
        step_models: dict[str, nn.Module] = {}
        for n, m in self.models.items():
            trained = n in train_names
            for p, rg in zip(m.parameters(), self._orig_requires_grad[n]):
                p.requires_grad_(rg and trained)
            m.train(trained)
            step_models[n] = m
            if trained and self.distributed and any(p.requires_grad for p in m.parameters()):
                step_models[n] = nn.parallel.DistributedDataParallel(
                    m,
                    device_ids=[self.device.index] if self.device.type == "cuda" else None,
                    find_unused_parameters=stage.find_unused_parameters,
                )
        optimizer = stage.optimizer({n: self.models[n] for n in train_names}, cfg)
        scheduler = stage.scheduler(optimizer, cfg) if stage.scheduler is not None else None
        params = [p for g in optimizer.param_groups for p in g["params"]]

        if ckpt is not None:
            ts = ckpt.trainer_state
            try:
                optimizer.load_state_dict(ckpt.optimizers["optimizer"])
                if scheduler is not None:
                    scheduler.load_state_dict(ckpt.schedulers["scheduler"])
            except (KeyError, ValueError) as e:
                raise CheckpointError(
                    f"{ckpt.path}: cannot restore the optimiser/scheduler of stage {stage.name!r}: {e}"
                ) from None
            stream.seek(int(ts.get("epoch", 0)), int(ts.get("batch_in_epoch", 0)))
        if rng is not None:
            stream._it = stream._epoch_iter()  # fast-forward iterables before the RNG restore
            set_rng_state(rng)

        train_log = val_log = None
        if self.is_main and self.out_dir is not None:
            stem = f"{si}_{stage.name}"
            train_log = _CsvLog(self.out_dir / "logs" / f"train_{stem}.csv", _FIXED_TRAIN_COLUMNS, start_step)
            if stage.validate is not None:
                val_log = _CsvLog(self.out_dir / "logs" / f"val_{stem}.csv", _FIXED_VAL_COLUMNS, start_step)
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        bar = _progress_bar(
            total, start_step, f"[{si + 1}/{len(self._stage_names)}] {stage.name}", disable=not (show and self.is_main)
        )
        last_val_step = -1
        try:
            for step in range(start_step, total):
                ctx.step = step
                batch = move_to_device(stream.next(), self.device, non_blocking=self.device.type == "cuda")
                ctx.epoch = stream.batch_epoch
                optimizer.zero_grad(set_to_none=True)
                outputs = stage.step(step_models, batch, ctx)
                if not isinstance(outputs, Mapping) or "loss" not in outputs:
                    raise PoseshapeError(
                        f"stage {stage.name!r}: step() must return a dict with "
                        f"a 'loss' entry, got {type(outputs).__name__}"
                    )
                loss = outputs["loss"]
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
                    raise PoseshapeError(
                        f"stage {stage.name!r}: 'loss' must be a scalar tensor "
                        "that requires grad (does it depend on a trained module?)"
                    )
                loss.backward()
                if stage.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, stage.grad_clip)
                lr = float(optimizer.param_groups[0]["lr"]) if optimizer.param_groups else math.nan
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                done = step + 1
                self._global_step += 1
                if done % self.log_every == 0 or done == total:
                    row = {k: _scalar(v, k) for k, v in outputs.items()}
                    if not math.isfinite(row["loss"]):
                        raise PoseshapeError(f"stage {stage.name!r} step {done}: loss is {row['loss']} (diverged)")
                    self._log_train(train_log, stage, done, lr, row)
                    bar.set_postfix(loss=f"{row['loss']:.4g}", refresh=False)
                bar.update(1)
                if stage.val_every is not None and done % stage.val_every == 0:
                    self._validate(stage, si, val_data, ctx, done, val_log)
                    last_val_step = done
                if getattr(self, "_stop_signal", None) is not None and done < total:
                    self._save("last.pt", si, done, stream, optimizer, scheduler)
                    name = signal.Signals(self._stop_signal).name
                    raise TrainingInterrupted(
                        f"{name}: training stopped at stage {stage.name!r} step {done}/{total}; "
                        f"{self.out_dir / 'last.pt'} holds it: rerun the same command to resume",
                        self._stop_signal,
                    )
                if done % self.checkpoint_every == 0 and done < total:
                    self._save("last.pt", si, done, stream, optimizer, scheduler)
            if stage.validate is not None and last_val_step != total and total > 0:
                self._validate(stage, si, val_data, ctx, total, val_log)
        finally:
            bar.close()
            for lg in (train_log, val_log):
                if lg is not None:
                    lg.close()
        if stage.restore_best:
            self._restore_best(stage)
        self._sync_buffers()
        # Stage boundary: the next run starts the following stage from scratch. The weights at
        # the end of each stage are also kept as ``stage_<i>_<name>.pt`` (e.g. to evaluate a
        # model before and after a fine-tuning stage).
        self._save("last.pt", si + 1, 0, None, None, None)
        self._save(f"stage_{si}_{stage.name}.pt", si + 1, 0, None, None, None)

    def _restore_best(self, stage: Stage) -> None:
        """Put ``stage``'s trained modules back to their best-validation weights (rank 0 knows
        them: from memory, or from ``best_<stage>.pt`` after a resume) and give them to every rank."""
        names = list(stage.train) if stage.train is not None else list(self.models)
        if self.is_main:
            state = self._best_state.pop(stage.name, None)
            path = self.out_dir / f"best_{stage.name}.pt" if self.out_dir is not None else None
            if state is None and path is not None and path.exists():
                best = load_checkpoint(path, expected_method=self.spec.name, map_location="cpu")
                state = {n: best.models[n] for n in names if n in best.models}
            if state is None:
                log.warning("stage %r: no best validation weights to restore; keeping the last ones", stage.name)
            else:
                for n, sd in state.items():
                    self.models[n].load_state_dict(sd)
                log.info(
                    "stage %r: restored the weights of the best validation (%s = %.4g)",
                    stage.name,
                    stage.best_metric,
                    self._best.get(stage.name, float("nan")),
                )
        if self.distributed:
            with torch.no_grad():
                for n in names:
                    for t in list(self.models[n].parameters()) + list(self.models[n].buffers()):
                        dist.broadcast(t.data, src=0)

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's buffers (e.g. batch-norm running statistics).

        DDP broadcasts a wrapped module's buffers from rank 0 at the start of each forward, but
        the last step of a stage still updates them with each rank's own batch, and a module
        frozen in later stages is no longer wrapped: without this, the ranks would carry
        different batch-norm statistics through the rest of the run (rank 0's are saved).
        """
        if not self.distributed:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for m in self.models.values():
                for b in m.buffers():
                    if b.is_floating_point() or b.dtype in (torch.int64, torch.int32):
                        dist.broadcast(b, src=0)

    def _log_train(self, train_log: _CsvLog | None, stage: Stage, done: int, lr: float, row: dict[str, float]) -> None:
        if not self.is_main:
            return
        if train_log is not None:
            train_log.write(
                {
                    "stage": stage.name,
                    "step": done,
                    "global_step": self._global_step,
                    "time": round(self._elapsed(), 6),
                    "lr": lr,
                    **row,
                }
            )
        if self._tb is not None:
            for k, v in row.items():
                self._tb.add_scalar(f"{stage.name}/{k}", v, self._global_step)
            self._tb.add_scalar(f"{stage.name}/lr", lr, self._global_step)

    def _validate(
        self, stage: Stage, si: int, val_data: Any, ctx: StageContext, done: int, val_log: _CsvLog | None
    ) -> None:
        if stage.validate is None or val_data is None or not self.is_main:
            return
        if _is_map_dataset(val_data):
            batches: Iterable = DataLoader(
                val_data,
                batch_size=stage.val_batch_size or stage.batch_size,
                shuffle=False,
                collate_fn=stage.collate_fn,
                num_workers=stage.num_workers,
            )
        else:
            batches = val_data
        device_batches = (move_to_device(b, self.device) for b in batches)
        modes = {n: m.training for n, m in self.models.items()}
        for m in self.models.values():
            m.eval()
        ctx.step = done
        try:
            with torch.no_grad():
                result = stage.validate(self.models, device_batches, ctx)
        finally:
            for n, m in self.models.items():
                m.train(modes[n])
        metrics = {k: _scalar(v, k) for k, v in dict(result or {}).items()}
        self.val_metrics[stage.name] = metrics
        if val_log is not None:
            val_log.write(
                {
                    "stage": stage.name,
                    "step": done,
                    "global_step": self._global_step,
                    "time": round(self._elapsed(), 6),
                    **metrics,
                }
            )
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(f"{stage.name}/val/{k}", v, self._global_step)
        if stage.best_metric is not None:
            if stage.best_metric not in metrics:
                raise PoseshapeError(
                    f"stage {stage.name!r}: best_metric {stage.best_metric!r} "
                    f"is not among the validation metrics {sorted(metrics)}"
                )
            v = metrics[stage.best_metric]
            old = self._best.get(stage.name)
            better = old is None or (v < old if stage.best_mode == "min" else v > old)
            if better and math.isfinite(v):
                self._best[stage.name] = v
                if stage.restore_best:
                    names = list(stage.train) if stage.train is not None else list(self.models)
                    self._best_state[stage.name] = {
                        n: {k: t.detach().clone() for k, t in self.models[n].state_dict().items()} for n in names
                    }
                if self.out_dir is not None:
                    save_checkpoint(
                        self.out_dir / f"best_{stage.name}.pt",
                        method=self.spec.name,
                        config=self.config,
                        models=self.models,
                        trainer_state=self._trainer_state(si, done, None, rng=[]),
                        extra={"best_metric": stage.best_metric, "best_value": v},
                    )

    def _trainer_state(self, si: int, step: int, stream: _BatchStream | None, rng: list) -> dict[str, Any]:
        epoch, index = stream.position() if stream is not None else (0, 0)
        return {
            "stage_index": si,
            "stage_name": self._stage_names[si] if si < len(self._stage_names) else "",
            "step": step,
            "global_step": self._global_step,
            "stage_names": list(self._stage_names),
            "done": si >= len(self._stage_names),
            "seed": self.seed,
            "world_size": self.world_size,
            "epoch": epoch,
            "batch_in_epoch": index,
            "elapsed": self._elapsed(),
            "best": dict(self._best),
            "rng": rng,
        }

    def _save(
        self,
        name: str,
        si: int,
        step: int,
        stream: _BatchStream | None,
        optimizer: torch.optim.Optimizer | None,
        scheduler: Any,
    ) -> None:
        if self.out_dir is None:
            return
        state = get_rng_state()
        if self.distributed:  # every rank's RNG goes into rank 0's checkpoint
            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, state)
            rngs = gathered
        else:
            rngs = [state]
        if not self.is_main:
            return
        save_checkpoint(
            self.out_dir / name,
            method=self.spec.name,
            config=self.config,
            models=self.models,
            optimizers={"optimizer": optimizer} if optimizer is not None else {},
            schedulers={"scheduler": scheduler} if scheduler is not None else {},
            trainer_state=self._trainer_state(si, step, stream, rngs),
        )


def _progress_bar(total: int, initial: int, desc: str, disable: bool) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return contextlib.nullcontext()
    return tqdm(total=total, initial=initial, desc=desc, disable=disable, dynamic_ncols=True, leave=True)


# --------------------------------------------------------------------------- inference
def load_trained(
    path: str | os.PathLike, method: str | None = None, device: str | torch.device = "cpu"
) -> tuple[MethodSpec, Any, dict[str, nn.Module]]:
    """Rebuild a method's modules from a checkpoint, in ``eval()`` mode on ``device``.

    Returns:
        ``(spec, config, models)``.

    Raises:
        CheckpointError: see :func:`poseshape.engine.checkpoint.load_checkpoint` (and unknown method).
    """
    ckpt = load_checkpoint(path, expected_method=method, map_location="cpu")
    try:
        spec = get_method(ckpt.method)
    except PoseshapeError as e:
        raise CheckpointError(f"{ckpt.path}: {e}") from None
    try:
        config = config_from_dict(spec.config_cls, ckpt.config)
    except PoseshapeError as e:
        raise CheckpointError(f"{ckpt.path}: stored config does not fit {spec.name!r}: {e}") from None
    models = spec.build_models(config)
    restore_models(models, ckpt)
    for m in models.values():
        m.to(device).eval()
    return spec, config, models
