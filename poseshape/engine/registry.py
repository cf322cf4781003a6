"""Method registry: how a paper's method plugs into training, checkpoints and prediction.

A *method* is described by one :class:`MethodSpec`:

``config_cls``
    A dataclass whose defaults are the paper's values. Users override them with a YAML file
    and ``--set key=value`` (see :mod:`poseshape.core.config`).
``build(config) -> dict[str, nn.Module]``
    Creates every network of the method by name (e.g. ``{"encoder": ..., "decoder": ...}``).
    Checkpoints store the state dict of each of them under the same names.
``stages``
    The ordered training stages, a list of :class:`Stage` (or a function ``config -> list``,
    when the number or content of stages depends on the config). Each stage names the
    modules it trains (the others are frozen: ``requires_grad=False`` and ``eval()`` mode),
    its optimiser factory, its data, its step function, its length and its validation.
``predictor``
    The class that turns a trained method into predictions (used by ``poseshape
    reconstruct``; built from ``(config, models)`` by :mod:`poseshape.engine.predict`).
``evaluate`` (optional)
    The method's own evaluation for ``poseshape eval`` when its paper's table is not the
    posed-frame one of :mod:`poseshape.engine.evaluate` (e.g. ``refine6dof``'s Table 1).

:class:`poseshape.engine.train.Trainer` runs the stages in order and takes care of devices,
seeding, DDP, logging, validation and resumable checkpoints; a method only supplies the
pieces above. A minimal example (a linear regressor trained in two stages)::

    from dataclasses import dataclass
    import torch
    from torch import nn
    from poseshape.engine.registry import MethodSpec, Stage, register_method

    @dataclass
    class ToyConfig:
        lr: float = 1e-2          # paper value
        batch_size: int = 16
        iters: int = 200

    def build(cfg):
        return {"body": nn.Linear(4, 8), "head": nn.Linear(8, 1)}

    def data(cfg, ctx):               # ctx: StageContext (seed, rank, world_size, ...)
        g = torch.Generator().manual_seed(ctx.seed)
        x = torch.randn(256, 4, generator=g)
        y = x.sum(1, keepdim=True)
        ds = torch.utils.data.TensorDataset(x, y)
        return ds, ds                 # (train, val); val may be None

    def step(models, batch, ctx):     # batch already on ctx.device
        x, y = batch
        loss = nn.functional.mse_loss(models["head"](models["body"](x)), y)
        return {"loss": loss}         # 'loss' is back-propagated, the rest only logged

    def validate(models, batches, ctx):   # models in eval() mode, under torch.no_grad()
        errs = [nn.functional.mse_loss(models["head"](models["body"](x)), y) for x, y in batches]
        return {"val_mse": float(torch.stack(errs).mean())}

    def adam(modules, cfg):          # modules: {name: nn.Module} trained in this stage
        return torch.optim.Adam([p for m in modules.values() for p in m.parameters()], lr=cfg.lr)

    register_method(MethodSpec(
        name="toy", config_cls=ToyConfig, build=build,
        stages=lambda cfg: [
            Stage("pretrain_head", train=["head"], optimizer=adam, data=data, step=step,
                  iterations=cfg.iters // 2, batch_size=cfg.batch_size, validate=validate),
            Stage("joint", train=["body", "head"], optimizer=adam, data=data, step=step,
                  iterations=cfg.iters, batch_size=cfg.batch_size, validate=validate,
                  best_metric="val_mse", best_mode="min"),
        ],
        predictor=None,
    ))

    # then:  Trainer("toy", out_dir="runs/toy").fit()   or   poseshape train toy --set lr=1e-3

Built-in methods live in ``poseshape/methods/<name>/`` and register themselves when that
package is imported; :func:`get_method` and :func:`list_methods` import them on demand, so a
caller only needs the name.

Data. ``Stage.data(config, ctx)`` returns ``(train, val)``. A *map-style dataset*
(``__len__`` + ``__getitem__``) is preferred: the trainer batches it itself in an order that
depends only on ``(seed, stage index, epoch)``, shards it across DDP ranks, and resumes in
the middle of an epoch without replaying it. Any other *iterable of batches* (e.g. your own
``DataLoader`` or an on-the-fly renderer) also works: it is re-iterated every epoch, on
resume the already-used batches of the current epoch are skipped, and sharding across ranks
is up to it (``ctx.rank`` / ``ctx.world_size``). For exact resumption it must yield the same
batches for the same ``ctx``; randomness inside a dataset should be derived from the index
(or use the global torch RNG with ``num_workers=0``, whose state the trainer checkpoints).

Step functions call the models (their ``forward``); under DDP the trained ones are wrapped in
``DistributedDataParallel``, so use :func:`poseshape.engine.checkpoint.unwrap_module` to reach
other attributes.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from poseshape.core.config import load_config
from poseshape.core.errors import PoseshapeError

__all__ = [
    "BUILTIN_METHODS",
    "MethodSpec",
    "Stage",
    "StageContext",
    "get_method",
    "list_methods",
    "register_method",
    "unregister_method",
]

#: Methods shipped with poseshape: name -> module that registers it when imported.
BUILTIN_METHODS: dict[str, str] = {
    "reproject": "poseshape.methods.reproject",
    "selfconsistency": "poseshape.methods.selfconsistency",
    "posefree": "poseshape.methods.posefree",
    "refine6dof": "poseshape.methods.refine6dof",
    "retrieval": "poseshape.methods.retrieval",
}


@dataclass
class StageContext:
    """What the trainer tells a stage's ``data``, ``step`` and ``validate`` functions.

    Attributes:
        config: the method config (dataclass instance).
        stage: stage name; ``stage_index`` its position (0-based).
        step: number of optimiser steps already done in this stage (0-based index of the
            current step inside ``step``; the step count so far inside ``validate``).
        total_steps: the stage's number of optimiser steps.
        epoch: current epoch of the stage's training data.
        device: torch device the models and batches are on.
        seed: the run's seed (same on every rank).
        rank, world_size: DDP rank and number of processes (0 and 1 without DDP).
        out_dir: the run directory (checkpoints, logs), or None.
    """

    config: Any
    stage: str = ""
    stage_index: int = 0
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    out_dir: Path | None = None


OptimizerFactory = Callable[[dict[str, nn.Module], Any], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer, Any], Any]
DataFn = Callable[[Any, StageContext], "tuple[Any, Any] | Any"]
StepFn = Callable[[dict[str, nn.Module], Any, StageContext], Mapping[str, Any]]
ValidateFn = Callable[[dict[str, nn.Module], Iterable, StageContext], Mapping[str, float]]


@dataclass(frozen=True)
class Stage:
    """One training stage.

    Args:
        name: unique within the method (used in logs and checkpoints).
        train: names of the modules trained in this stage; every other module is frozen
            (``requires_grad_(False)`` and ``eval()``). ``None`` trains all modules.
        optimizer: ``(modules: {name: nn.Module} of this stage, config) -> Optimizer``.
        data: ``(config, ctx) -> (train, val)`` (or just ``train``); see the module docstring.
        step: ``(models, batch, ctx) -> {"loss": scalar tensor, other: tensor | float}``;
            ``loss`` is back-propagated, everything else is logged.
        iterations: number of optimiser steps; or give ``epochs`` instead (one of the two).
        epochs: number of passes over the training data (needs ``len()`` of it).
        batch_size: per-process batch size when ``train`` is a map-style dataset.
        val_batch_size: batch size for a map-style validation dataset (default ``batch_size``).
        drop_last: drop the last incomplete batch of each epoch (map-style datasets).
        collate_fn: how samples are merged into a batch (default ``default_collate``).
        num_workers: DataLoader worker processes for map-style datasets.
        scheduler: ``(optimizer, config) -> LR scheduler`` stepped after every optimiser step.
        validate: ``(models, val_batches, ctx) -> {metric: float}``; run every ``val_every``
            steps and at the end of the stage, on rank 0, in ``eval()`` mode under ``no_grad``.
        val_every: validation period in steps (``None``: only at the end of the stage).
        best_metric: a key of ``validate``'s result; when it improves, ``best_<stage>.pt`` is
            written. ``best_mode``: ``"min"`` or ``"max"``.
        restore_best: at the end of the stage, put the stage's trained modules back to their
            weights at the best validation (early stopping: the next stage, ``last.pt`` and
            ``stage_<i>_<name>.pt`` start from them). Needs ``best_metric``.
        grad_clip: clip the global gradient norm of the trained parameters to this value.
        find_unused_parameters: passed to ``DistributedDataParallel``.
    """

    name: str
    optimizer: OptimizerFactory
    data: DataFn
    step: StepFn
    train: Sequence[str] | None = None
    iterations: int | None = None
    epochs: int | None = None
    batch_size: int = 1
    val_batch_size: int | None = None
    drop_last: bool = False
    collate_fn: Callable | None = None
    num_workers: int = 0
    scheduler: SchedulerFactory | None = None
    validate: ValidateFn | None = None
    val_every: int | None = None
    best_metric: str | None = None
    best_mode: Literal["min", "max"] = "min"
    restore_best: bool = False
    grad_clip: float | None = None
    find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise PoseshapeError(f"Stage.name must be a non-empty string, got {self.name!r}")
        if (self.iterations is None) == (self.epochs is None):
            raise PoseshapeError(f"stage {self.name!r}: give exactly one of iterations= or epochs=")
        for attr in ("iterations", "epochs"):
            v = getattr(self, attr)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise PoseshapeError(f"stage {self.name!r}: {attr} must be an int >= 0, got {v!r}")
        if self.batch_size < 1:
            raise PoseshapeError(f"stage {self.name!r}: batch_size must be >= 1, got {self.batch_size}")
        if self.best_mode not in ("min", "max"):
            raise PoseshapeError(f"stage {self.name!r}: best_mode must be 'min' or 'max'")
        if self.restore_best and (self.best_metric is None or self.validate is None):
            raise PoseshapeError(f"stage {self.name!r}: restore_best needs best_metric and validate")
        if self.val_every is not None and self.val_every < 1:
            raise PoseshapeError(f"stage {self.name!r}: val_every must be >= 1 or None")
        if isinstance(self.train, str):
            object.__setattr__(self, "train", (self.train,))


@dataclass(frozen=True)
class MethodSpec:
    """Everything the trainer, the checkpoints and the predictor need to know about a method.

    See the module docstring for the meaning of each field and an example.
    """

    name: str
    config_cls: type
    build: Callable[[Any], dict[str, nn.Module]]
    stages: Sequence[Stage] | Callable[[Any], Sequence[Stage]]
    predictor: type | None = None
    description: str = ""
    #: ``(predictor, data, **options) -> {"rows": {label: {metric: value}}, "columns": [...], ...}``:
    #: the method's own paper table for ``poseshape eval`` (None: the posed-frame tables of
    #: :func:`poseshape.engine.evaluate.evaluate_predictor`).
    evaluate: Callable[..., dict[str, Any]] | None = None
    #: Named training presets, ``{name: ("key=value", ...)}``, chosen with ``--set preset=NAME``
    #: (expanded before the other overrides, which win). ``paper`` (the defaults) always exists;
    #: every method gives ``quick`` (a laptop run of minutes) and ``cpu`` (its shipped-model run).
    presets: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise PoseshapeError(f"MethodSpec.name must be a non-empty string, got {self.name!r}")
        if not (dataclasses.is_dataclass(self.config_cls) and isinstance(self.config_cls, type)):
            raise PoseshapeError(f"method {self.name!r}: config_cls must be a dataclass type, got {self.config_cls!r}")
        if not callable(self.build):
            raise PoseshapeError(f"method {self.name!r}: build must be callable")

    def default_config(self) -> Any:
        """The paper's configuration (the dataclass defaults)."""
        return self.config_cls()

    def make_config(self, yaml_path: str | Path | None = None, overrides: Iterable[str] = ()) -> Any:
        """Defaults, then a YAML file, then ``key=value`` overrides (see :mod:`poseshape.core.config`).

        An override ``preset=NAME`` is replaced by that preset's overrides (:attr:`presets`),
        placed before the others so that explicit ``key=value`` settings still win.

        Raises:
            PoseshapeError: an unknown preset (the known ones are named), or two presets.
        """
        overrides = [str(o) for o in overrides]
        keyed = [(o.split("=", 1)[0].strip(), o) for o in overrides]
        chosen = [o.split("=", 1)[1].strip() if "=" in o else "" for k, o in keyed if k == "preset"]
        if chosen:
            if len(chosen) > 1:
                raise PoseshapeError(f"preset: given {len(chosen)} times ({', '.join(chosen)}); choose one")
            known = self.preset_names()
            if chosen[0] not in known:
                raise PoseshapeError(f"preset={chosen[0]!r}: method {self.name!r} has the presets {', '.join(known)}")
            expanded = list(self.presets.get(chosen[0], ()))
            overrides = expanded + [o for k, o in keyed if k != "preset"]
        return load_config(self.config_cls, yaml_path, overrides)

    def preset_names(self) -> list[str]:
        """``["paper", ...]``: the presets ``--set preset=NAME`` accepts."""
        return ["paper", *sorted(n for n in self.presets if n != "paper")]

    def get_stages(self, config: Any) -> list[Stage]:
        """The stages for ``config``, checked (unique names, modules that exist)."""
        stages = list(self.stages(config) if callable(self.stages) else self.stages)
        if not stages:
            raise PoseshapeError(f"method {self.name!r} has no training stages")
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise PoseshapeError(f"method {self.name!r}: stage names must be unique, got {names}")
        for s in stages:
            if not isinstance(s, Stage):
                raise PoseshapeError(f"method {self.name!r}: stages must be Stage objects, got {s!r}")
        return stages

    def build_models(self, config: Any) -> dict[str, nn.Module]:
        """Call ``build(config)`` and check it returned ``{str: nn.Module}``."""
        models = self.build(config)
        if (
            not isinstance(models, Mapping)
            or not models
            or not all(isinstance(k, str) and isinstance(v, nn.Module) for k, v in models.items())
        ):
            raise PoseshapeError(
                f"method {self.name!r}: build(config) must return a non-empty "
                f"dict of {{name: nn.Module}}, got {type(models).__name__}"
            )
        return dict(models)


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec | str | None = None, /, *, replace: bool = False, **fields: Any) -> Any:
    """Register a method.

    Three spellings::

        register_method(MethodSpec(name="toy", config_cls=..., build=..., stages=...))
        register_method("toy", config_cls=..., build=..., stages=..., predictor=...)

        @register_method("toy", config_cls=ToyConfig, stages=make_stages)   # decorates build
        def build(cfg): ...

    Args:
        replace: allow replacing an already registered method of the same name.

    Returns:
        The :class:`MethodSpec` (or, as a decorator, the decorated ``build`` function).

    Raises:
        PoseshapeError: the name is taken (and ``replace`` is false) or the spec is invalid.
    """
    if isinstance(spec, MethodSpec):
        if fields:
            raise PoseshapeError("register_method: give a MethodSpec or keyword fields, not both")
        return _add(spec, replace)
    if not isinstance(spec, str):
        raise PoseshapeError(f"register_method: expected a MethodSpec or a name, got {spec!r}")
    name = spec
    if "build" in fields:
        return _add(MethodSpec(name=name, **fields), replace)

    def decorator(build: Callable[[Any], dict[str, nn.Module]]) -> Callable:
        _add(MethodSpec(name=name, build=build, **fields), replace)
        return build

    return decorator


def _add(spec: MethodSpec, replace: bool) -> MethodSpec:
    if spec.name in _REGISTRY and not replace and _REGISTRY[spec.name] is not spec:
        raise PoseshapeError(f"method {spec.name!r} is already registered (pass replace=True to override it)")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_method(name: str) -> None:
    """Remove a registered method (no error if it is not registered)."""
    _REGISTRY.pop(name, None)


def _import_builtin(name: str) -> None:
    module = BUILTIN_METHODS.get(name)
    if module is None:
        return
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        # The method's package does not exist (yet); any other missing import is a real bug.
        if e.name is None or not module.startswith(e.name):
            raise
        return
    # Imported earlier but unregistered since (unregister_method, a registry reset): the
    # import does not run the registration again, so register the module's SPEC here.
    spec = getattr(mod, "SPEC", None)
    if name not in _REGISTRY and isinstance(spec, MethodSpec) and spec.name == name:
        _REGISTRY[name] = spec


def get_method(name: str) -> MethodSpec:
    """The registered method ``name`` (built-ins are imported on demand).

    Raises:
        PoseshapeError: no such method; the message lists the registered names.
    """
    if name not in _REGISTRY:
        _import_builtin(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise PoseshapeError(
            f"unknown method {name!r}; registered methods: {', '.join(list_methods()) or '(none)'}"
        ) from None


def list_methods() -> list[str]:
    """Sorted names of all registered methods (importing the built-in ones first)."""
    for name in BUILTIN_METHODS:
        if name not in _REGISTRY:
            _import_builtin(name)
    return sorted(_REGISTRY)
