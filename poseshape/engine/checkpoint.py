"""Checkpoints: atomic writes, safe reads, clear refusals.

A checkpoint is one ``torch.save`` file holding only tensors and plain containers, so it is
always read with ``torch.load(..., weights_only=True)`` -- never with the unsafe unpickler.
Its top-level dict has these keys:

=====================  =====================================================================
``format_version``     int, :data:`FORMAT_VERSION` (layout of this dict)
``method``             registered method name, e.g. ``"reproject"``
``poseshape_version``  ``poseshape.__version__`` of the writer
``conventions_version``  :data:`poseshape.geometry.conventions.CONVENTIONS_VERSION` of the writer
``config``             the method config as plain data (:func:`poseshape.core.config.config_to_dict`)
``models``             ``{module name: state_dict}``
``optimizers``         ``{name: optimizer.state_dict()}`` (may be empty)
``schedulers``         ``{name: scheduler.state_dict()}`` (may be empty)
``trainer_state``      the :class:`poseshape.engine.train.Trainer` position (stage, step, RNG states
                       as tensors, ...); empty for checkpoints written outside a trainer
``extra``              anything else the writer wants (plain data / tensors only)
=====================  =====================================================================

Writing goes to a temporary file in the same directory, which is flushed, fsync'ed and then
moved over the target with ``os.replace``: a reader sees either the old complete file or the
new complete file, never a half-written one (killing the writer leaves at most a stray
``.<name>.tmp.<pid>`` file, which readers ignore).

:func:`load_checkpoint` raises :class:`poseshape.core.errors.CheckpointError`, naming the file and
the problem, when the file is missing, truncated or corrupt, holds arbitrary Python objects
(refused by ``weights_only``), has an unknown ``format_version``, belongs to another method,
or was written under another ``conventions_version`` (its poses/voxels would mean something
else). A different ``poseshape_version`` only emits a :class:`CheckpointVersionWarning`: the
weights stay valid across code versions as long as the format and the conventions agree.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from poseshape.core.config import ConfigError, apply_overrides, config_from_dict, config_to_dict
from poseshape.core.errors import CheckpointError
from poseshape.core.version import __version__
from poseshape.engine.registry import get_method
from poseshape.geometry.conventions import CONVENTIONS_VERSION

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointVersionWarning",
    "export_checkpoint",
    "load_checkpoint",
    "restore_models",
    "save_checkpoint",
    "unwrap_module",
]

#: Layout version of the checkpoint dict; bump when keys change meaning.
FORMAT_VERSION = 1
_SUPPORTED_FORMATS = (1,)


class CheckpointVersionWarning(UserWarning):
    """The checkpoint was written by another poseshape version (loaded anyway)."""


def _package_version() -> str:
    return str(__version__)


@dataclass
class Checkpoint:
    """A loaded checkpoint (see the module docstring for the meaning of each field)."""

    path: Path
    method: str
    config: dict[str, Any]
    models: dict[str, dict[str, torch.Tensor]]
    optimizers: dict[str, Any] = field(default_factory=dict)
    schedulers: dict[str, Any] = field(default_factory=dict)
    trainer_state: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    poseshape_version: str = ""
    conventions_version: int = CONVENTIONS_VERSION


def unwrap_module(module: nn.Module) -> nn.Module:
    """The underlying module of a ``DistributedDataParallel`` / ``DataParallel`` /
    ``torch.compile`` wrapper (the module itself otherwise)."""
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


_SAFE_LEAVES = (bool, int, float, str, bytes, type(None), torch.Tensor, torch.Size, torch.dtype, torch.device)


def _check_safe(x: Any, where: str) -> None:
    """Raise CheckpointError if ``x`` would not load under ``weights_only=True``."""
    if isinstance(x, _SAFE_LEAVES):
        return
    if isinstance(x, (dict, OrderedDict)):
        for k, v in x.items():
            if not isinstance(k, (str, int, float, bool, type(None))):
                raise CheckpointError(
                    f"{where}: dict key {k!r} of type {type(k).__name__} "
                    "cannot be stored (weights_only-safe keys: str, int, float)"
                )
            _check_safe(v, f"{where}[{k!r}]")
        return
    if isinstance(x, (list, tuple)) and type(x) in (list, tuple):
        for i, v in enumerate(x):
            _check_safe(v, f"{where}[{i}]")
        return
    raise CheckpointError(
        f"{where}: value of type {type(x).__module__}.{type(x).__qualname__} cannot be stored in a "
        "checkpoint; only tensors, numbers, strings, None and lists/tuples/dicts of them load "
        "with torch.load(weights_only=True)"
    )


def _state_dict(obj: Any, where: str) -> Any:
    if isinstance(obj, nn.Module):
        return unwrap_module(obj).state_dict()
    if hasattr(obj, "state_dict") and callable(obj.state_dict) and not isinstance(obj, Mapping):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        return obj
    raise CheckpointError(f"{where}: expected a module/optimizer/scheduler or a state dict, got {type(obj).__name__}")


def _unpickling_detail(msg: str) -> str:
    """The informative line of torch's weights_only error (not its boilerplate advice)."""
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    for key in ("GLOBAL", "Unsupported"):
        for ln in lines:
            if key in ln:
                return ln
    return lines[-1] if lines else "unpickling failed"


def save_checkpoint(
    path: str | os.PathLike,
    *,
    method: str,
    config: Any,
    models: Mapping[str, nn.Module | Mapping[str, torch.Tensor]],
    optimizers: Mapping[str, Any] | None = None,
    schedulers: Mapping[str, Any] | None = None,
    trainer_state: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically and return its path.

    Args:
        path: target file (parent directories are created).
        method: registered method name.
        config: the method config, a dataclass or an already-plain dict.
        models: ``{name: nn.Module or state_dict}``; DDP / compile wrappers are unwrapped.
        optimizers, schedulers: ``{name: object with state_dict() or a state dict}``.
        trainer_state: trainer position (plain data / tensors).
        extra: anything else (plain data / tensors).

    Raises:
        CheckpointError: some value would not load with ``weights_only=True`` (nothing is
            written then); the message names the offending entry.
    """

    p = Path(path)
    if not isinstance(method, str) or not method:
        raise CheckpointError(f"{p}: method must be a non-empty string, got {method!r}")
    try:
        plain_config = config_to_dict(config) if not isinstance(config, Mapping) else config_to_dict(dict(config))
    except ConfigError as e:
        raise CheckpointError(f"{p}: config cannot be stored: {e}") from None
    payload = {
        "format_version": FORMAT_VERSION,
        "method": method,
        "poseshape_version": _package_version(),
        "conventions_version": int(CONVENTIONS_VERSION),
        "config": plain_config,
        "models": {k: _state_dict(v, f"models[{k!r}]") for k, v in models.items()},
        "optimizers": {k: _state_dict(v, f"optimizers[{k!r}]") for k, v in (optimizers or {}).items()},
        "schedulers": {k: _state_dict(v, f"schedulers[{k!r}]") for k, v in (schedulers or {}).items()},
        "trainer_state": dict(trainer_state or {}),
        "extra": dict(extra or {}),
    }
    for key in ("config", "models", "optimizers", "schedulers", "trainer_state", "extra"):
        try:
            _check_safe(payload[key], key)
        except CheckpointError as e:
            raise CheckpointError(f"{p}: {e}") from None

    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp.{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable (best effort; not possible on every platform)
        fd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return p


def load_checkpoint(
    path: str | os.PathLike,
    expected_method: str | None = None,
    map_location: str | torch.device | None = "cpu",
) -> Checkpoint:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and validate it.

    Args:
        path: checkpoint file.
        expected_method: if given, refuse a checkpoint of any other method.
        map_location: where tensors go (default CPU).

    Raises:
        CheckpointError: missing file, corrupt/truncated file, arbitrary Python objects
            inside (refused by ``weights_only``), not a poseshape checkpoint, unknown
            ``format_version``, other method, other ``conventions_version``.

    Warns:
        CheckpointVersionWarning: written by another ``poseshape.__version__``.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint file not found")
    if not p.is_file():
        raise CheckpointError(f"{p}: not a file")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _unpickling_detail(str(e))
        if "GLOBAL" in detail:
            raise CheckpointError(
                f"{p}: refused: the file holds Python objects other than tensors and plain "
                f"containers, which weights_only loading does not execute ({detail})"
            ) from None
        raise CheckpointError(f"{p}: corrupt or truncated checkpoint, or not a torch.save file ({detail})") from None
    except Exception as e:  # noqa: BLE001 - zip/EOF/unpickling errors of truncated or foreign files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{p}: corrupt or truncated checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(data, dict) or "format_version" not in data:
        raise CheckpointError(f"{p}: not a poseshape checkpoint (no 'format_version' entry)")
    fmt = data["format_version"]
    if fmt not in _SUPPORTED_FORMATS:
        raise CheckpointError(
            f"{p}: unknown checkpoint format_version {fmt!r}; this poseshape reads {list(_SUPPORTED_FORMATS)}"
        )
    missing = [k for k in ("method", "config", "models", "conventions_version") if k not in data]
    if missing:
        raise CheckpointError(f"{p}: checkpoint lacks the entries {missing}")
    method = data["method"]
    if expected_method is not None and method != expected_method:
        raise CheckpointError(f"{p}: checkpoint is for method {method!r}, expected {expected_method!r}")
    conv = data["conventions_version"]
    if conv != CONVENTIONS_VERSION:
        raise CheckpointError(
            f"{p}: written under conventions_version {conv!r} but this code uses "
            f"{CONVENTIONS_VERSION} (poses/voxels would be misread); convert or retrain it"
        )
    ver = data.get("poseshape_version", "")
    if ver != _package_version():
        warnings.warn(
            f"{p}: written by poseshape {ver or 'unknown'}, this is "
            f"{_package_version()}; loading anyway (same format and conventions)",
            CheckpointVersionWarning,
            stacklevel=2,
        )
    return Checkpoint(
        path=p,
        method=method,
        config=data["config"],
        models=data["models"],
        optimizers=data.get("optimizers", {}),
        schedulers=data.get("schedulers", {}),
        trainer_state=data.get("trainer_state", {}),
        extra=data.get("extra", {}),
        format_version=fmt,
        poseshape_version=ver,
        conventions_version=conv,
    )


def restore_models(models: Mapping[str, nn.Module], checkpoint: Checkpoint, strict: bool = True) -> None:
    """Load ``checkpoint.models`` into ``models`` (wrappers unwrapped), in place.

    Raises:
        CheckpointError: a module is missing from the checkpoint (or, with ``strict``, the
            checkpoint has modules the method does not build), or its keys/shapes disagree.
    """
    names, stored = set(models), set(checkpoint.models)
    if names - stored or (strict and stored - names):
        raise CheckpointError(
            f"{checkpoint.path}: modules differ: checkpoint has {sorted(stored)}, the method builds {sorted(names)}"
        )
    for name, module in models.items():
        try:
            unwrap_module(module).load_state_dict(checkpoint.models[name], strict=strict)
        except RuntimeError as e:
            raise CheckpointError(f"{checkpoint.path}: cannot load module {name!r}: {e}") from None


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, overrides: Sequence[str] = ()) -> Path:
    """Write the inference part of a checkpoint (method, config, weights; no optimiser or trainer
    state) to ``dst``, atomically. This is how a trained run becomes a shipped default model.

    ``overrides``: ``key=value`` changes of the stored config (checked against the method's
    config class), e.g. ``data.test=`` to drop a path that only exists on the training machine.

    Raises:
        CheckpointError: ``src`` is missing or invalid (see :func:`load_checkpoint`), or an
            override does not apply.
    """
    ck = load_checkpoint(src)
    config = ck.config
    if overrides:
        try:
            config = apply_overrides(config_from_dict(get_method(ck.method).config_cls, config), list(overrides))
        except ConfigError as e:
            raise CheckpointError(f"{src}: cannot apply {list(overrides)}: {e}") from None
    return save_checkpoint(
        dst, method=ck.method, config=config, models=ck.models, extra={"exported_from": str(Path(src).name), **ck.extra}
    )


def _main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(
        prog="python -m poseshape.engine.checkpoint", description="Inspect or export poseshape checkpoints."
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="keep only method, config and weights (for shipping)")
    e.add_argument("src")
    e.add_argument("dst")
    e.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a stored config value (repeatable), e.g. data.test=",
    )
    s = sub.add_parser("show", help="print a checkpoint's method, versions and modules")
    s.add_argument("path")
    args = p.parse_args(argv)
    try:
        if args.cmd == "export":
            out = export_checkpoint(args.src, args.dst, args.overrides)
            print(f"{out} ({out.stat().st_size / 2**20:.1f} MiB)")
        else:
            ck = load_checkpoint(args.path)
            n = sum(t.numel() for sd in ck.models.values() for t in sd.values() if hasattr(t, "numel"))
            print(
                f"{ck.path}: method={ck.method} poseshape={ck.poseshape_version} "
                f"conventions={ck.conventions_version} modules={sorted(ck.models)} params={n}"
            )
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
