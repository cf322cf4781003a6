"""Config dataclass helpers: YAML load/dump, ``--set key=value`` overrides, plain-dict round trips.

Every method describes its hyper-parameters with a (possibly nested) dataclass whose
defaults are the paper's values (see :mod:`poseshape.engine.registry`). This module turns
such a dataclass into plain data and back, and applies command-line overrides::

    @dataclass
    class Optim:
        lr: float = 1e-4
        betas: tuple[float, float] = (0.9, 0.999)

    @dataclass
    class MyConfig:
        batch_size: int = 32
        use_kl: bool = True
        optim: Optim = field(default_factory=Optim)

    cfg = apply_overrides(MyConfig(), ["batch_size=8", "optim.lr=1e-3", "use_kl=false"])
    cfg.optim.lr            # 0.001 (a float, coerced from the field's annotation)
    config_to_dict(cfg)     # {'batch_size': 8, 'use_kl': False, 'optim': {'lr': 0.001, ...}}
    config_from_dict(MyConfig, {"optim": {"lr": 0.1}})   # other fields keep their defaults

Values are parsed with ``yaml.safe_load`` (so ``true``, ``[1, 2]``, ``{a: 1}`` work) and then
coerced to the field's annotated type: ``int``, ``float`` (``1e-4`` is accepted although YAML
1.1 reads it as a string), ``bool``, ``str``, ``pathlib.Path``, ``Literal[...]``,
``Optional[...]`` / ``X | None``, ``list[T]``, ``tuple[T, ...]``, ``tuple[A, B]``,
``dict[K, V]``, ``Enum`` subclasses and nested dataclasses (addressed with dotted keys,
``a.b.c=3``). Unknown keys and values that cannot be coerced raise :class:`ConfigError`,
which names the key, lists the valid keys or says what type was expected.

:func:`config_to_dict` produces only ``dict``/``list``/``str``/``int``/``float``/``bool``/
``None``, which is what checkpoints store (safe for ``torch.load(weights_only=True)``) and
what :func:`dump_yaml` writes. Overrides never mutate their input; they return a new config.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from poseshape.core.errors import FileFormatError, PoseshapeError
from poseshape.core.io import atomic_write

__all__ = [
    "ConfigError",
    "apply_overrides",
    "check_value",
    "config_diff",
    "config_from_dict",
    "config_to_dict",
    "dump_yaml",
    "load_config",
    "load_yaml",
    "parse_override",
]


class ConfigError(PoseshapeError):
    """A config key is unknown or a value cannot be coerced to the field's type."""


_MISSING = object()


# --------------------------------------------------------------------------- to plain data
def config_to_dict(config: Any) -> Any:
    """Convert a config dataclass (recursively) into plain Python data.

    Dataclasses become dicts (field order kept), tuples become lists, ``Path`` becomes
    ``str``, ``Enum`` members become their ``value``. The result only contains ``dict``
    (str keys), ``list``, ``str``, ``int``, ``float``, ``bool`` and ``None``.

    Raises:
        ConfigError: a value of another type (e.g. a tensor or a function) is found.
    """
    return _to_plain(config, "config")


def _to_plain(x: Any, where: str) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _to_plain(getattr(x, f.name), f"{where}.{f.name}") for f in dataclasses.fields(x)}
    if isinstance(x, enum.Enum):
        return _to_plain(x.value, where)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, Mapping):
        out = {}
        for k, v in x.items():
            if not isinstance(k, (str, int, float, bool)):
                raise ConfigError(f"{where}: dict key {k!r} is not a str/int/float/bool")
            out[k] = _to_plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(x, (list, tuple)):
        return [_to_plain(v, f"{where}[{i}]") for i, v in enumerate(x)]
    raise ConfigError(
        f"{where}: value of type {type(x).__name__} cannot be stored in a config "
        "(use str, int, float, bool, None, list, tuple, dict, Path, Enum or a dataclass)"
    )


# --------------------------------------------------------------------------- from plain data
def config_from_dict(cls: type, data: Mapping[str, Any] | None) -> Any:
    """Build the dataclass ``cls`` from a (possibly partial) plain dict.

    Missing keys keep the dataclass defaults; nested dataclass fields take nested dicts;
    every value is coerced to its field's annotated type.

    Raises:
        ConfigError: ``data`` has a key that is not a field of ``cls`` (the message lists the
            valid keys), a required field without a default is missing, or a value cannot be
            coerced.
    """
    return _from_dict(cls, data, prefix="")


def _from_dict(cls: type, data: Mapping[str, Any] | None, prefix: str) -> Any:
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise ConfigError(f"{prefix or 'config'}: {cls!r} is not a dataclass type")
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{prefix or 'config'}: expected a mapping for {cls.__name__}, got {type(data).__name__} {data!r}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(repr(prefix + str(k)) for k in unknown)} for "
            f"{cls.__name__}; valid keys: {', '.join(prefix + k for k in fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = check_value(prefix + name, _coerce(value, hints.get(name, Any), prefix + name, raw=None))
    try:
        return cls(**kwargs)
    except TypeError as e:  # missing required fields
        raise ConfigError(f"{prefix or 'config'}: cannot build {cls.__name__}: {e}") from None


def check_value(key: str, value: Any) -> Any:
    """The checks every method's config shares, by the leaf name of ``key`` (returns ``value``).

    * any float (or float in a list / tuple): finite or +-inf, never NaN;
    * ``lr`` / ``*_lr``: a finite number > 0;
    * ``batch_size`` / ``*_batch_size``: an integer >= 1;
    * ``width`` / ``*_width``: > 0;
    * ``*iters`` / ``iterations`` / ``*epochs`` / ``*steps``: >= 0 (0 skips, where a method allows it);
    * ``workers`` / ``num_workers``: >= 0.

    Raises:
        ConfigError: naming the key and the rule.
    """
    leaf = key.rsplit(".", 1)[-1]
    items = value if isinstance(value, (list, tuple)) else [value]
    for v in items:
        if isinstance(v, float) and math.isnan(v):
            raise ConfigError(f"{key}: NaN is not a valid value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value

    def need(ok: bool, rule: str) -> None:
        if not ok:
            raise ConfigError(f"{key}: got {value!r}; it must be {rule}")

    if leaf == "lr" or leaf.endswith("_lr"):
        need(math.isfinite(value) and value > 0, "a finite number > 0")
    elif leaf == "batch_size" or leaf.endswith("_batch_size"):
        need(value >= 1, "an integer >= 1")
    elif leaf == "width" or leaf.endswith("_width"):
        need(value > 0, "> 0")
    elif leaf.endswith(("iters", "iterations", "epochs", "steps")):
        need(value >= 0, ">= 0")
    elif leaf in ("workers", "num_workers"):
        need(value >= 0, ">= 0")
    return value


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception as e:  # noqa: BLE001 - NameError/TypeError of unresolved annotations
        raise ConfigError(f"cannot resolve the type annotations of {cls.__name__}: {e}") from None


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, raw: str | None) -> Any:
    """Coerce ``value`` (parsed from YAML; ``raw`` is the original text when known) to ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad(extra: str = "") -> ConfigError:
        shown = raw if raw is not None else repr(value)
        return ConfigError(f"{key}: cannot use {shown} as {_type_name(tp)}{extra}")

    if tp is Any or tp is object:
        return value
    if origin is Union or origin is types.UnionType:
        if type(None) in args and (value is None or raw in ("None", "none", "null", "~")):
            return None
        errors = []
        # Try the most specific members first: bool before int before float before str.
        order = sorted((a for a in args if a is not type(None)), key=_union_rank)
        for a in order:
            try:
                return _coerce(value, a, key, raw)
            except ConfigError as e:
                errors.append(str(e))
        raise bad()
    if origin is Literal:
        for a in args:
            if value == a and type(value) is type(a):
                return a
            if raw is not None and str(a) == raw:
                return a
        raise bad(f" (allowed: {', '.join(repr(a) for a in args)})")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return _from_dict(tp, value, prefix=key + ".")
        raise bad(" (expected a mapping such as {key: value})")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        for m in tp:
            if value == m.value or value == m.name or (raw is not None and raw in (m.name, str(m.value))):
                return m
        raise bad(f" (allowed: {', '.join(repr(m.value) for m in tp)})")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise bad(" (use true or false)")
    if tp is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                try:
                    f = float(value)
                except ValueError:
                    raise bad() from None
                if f.is_integer():
                    return int(f)
        raise bad()
    if tp is float:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad() from None
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        if raw is not None:  # e.g. `name=123` for a str field keeps the text as typed
            return raw
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad()
    if isinstance(tp, type) and issubclass(tp, os.PathLike):
        if isinstance(value, (str, os.PathLike)):
            return tp(value)
        raise bad()
    if tp is type(None):
        if value is None:
            return None
        raise bad()
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) or isinstance(value, Mapping):
            raise bad(" (expected a list such as [1, 2])")
        items = list(value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                raise bad(f" (expected {len(args)} items, got {len(items)})")
            return tuple(_coerce(v, a, f"{key}[{i}]", None) for i, (v, a) in enumerate(zip(items, args)))
        elem = args[0] if args else Any
        out = [_coerce(v, elem, f"{key}[{i}]", None) for i, v in enumerate(items)]
        kind = origin or tp
        return kind(out) if kind is not list else out
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise bad(" (expected a mapping such as {a: 1})")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, f"{key}[{k!r}]", None): _coerce(v, vt, f"{key}[{k!r}]", None) for k, v in value.items()}
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise bad()
    return value  # an annotation we do not understand: leave the value alone


def _union_rank(tp: Any) -> int:
    return {bool: 0, int: 1, float: 2}.get(tp, 4 if tp is str else 3)


# --------------------------------------------------------------------------- overrides
def parse_override(item: str) -> tuple[str, str]:
    """Split ``"a.b=value"`` into ``("a.b", "value")`` (whitespace around the key stripped).

    Raises:
        ConfigError: ``item`` has no ``=`` or an empty key.
    """
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. lr=1e-4 or optim.lr=1e-4")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: empty key")
    return key, value.strip()


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_overrides(config: Any, overrides: Iterable[str] | Mapping[str, Any]) -> Any:
    """Return a copy of the dataclass ``config`` with ``overrides`` applied.

    ``overrides`` is a list of ``"key=value"`` strings (the ``--set`` syntax; dotted keys reach
    nested dataclasses, values are YAML) or a mapping ``{dotted_key: value}``. Each value is
    coerced to the annotated type of the field it replaces; later overrides win.

    Raises:
        ConfigError: unknown key (the message lists the valid keys at that level), a key that
            goes through a non-dataclass field, or a value that cannot be coerced.
    """
    if not (dataclasses.is_dataclass(config) and not isinstance(config, type)):
        raise ConfigError(f"apply_overrides: expected a dataclass instance, got {type(config).__name__}")
    if isinstance(overrides, Mapping):
        items = [(str(k), v, None) for k, v in overrides.items()]
    elif isinstance(overrides, str):
        raise ConfigError("apply_overrides: pass a list of 'key=value' strings, not a single string")
    else:
        items = []
        for item in overrides:
            k, text = parse_override(item)
            items.append((k, _parse_value(text), text))
    for key, value, raw in items:
        config = _set_path(config, key.split("."), value, raw, done="")
    return config


def _set_path(obj: Any, parts: list[str], value: Any, raw: str | None, done: str) -> Any:
    name = parts[0]
    fields = {f.name: f for f in dataclasses.fields(obj) if f.init}
    full = done + name
    if name not in fields:
        valid = ", ".join(done + k for k in fields)
        raise ConfigError(f"unknown config key {full!r} for {type(obj).__name__}; valid keys: {valid}")
    hints = _type_hints(type(obj))
    if len(parts) == 1:
        new = check_value(full, _coerce(value, hints.get(name, Any), full, raw))
    else:
        child = getattr(obj, name)
        if not (dataclasses.is_dataclass(child) and not isinstance(child, type)):
            raise ConfigError(
                f"config key {full!r} is a {_type_name(hints.get(name, type(child)))}, not a nested "
                f"config, so {full + '.' + '.'.join(parts[1:])!r} is not valid"
            )
        new = _set_path(child, parts[1:], value, raw, done=full + ".")
    return dataclasses.replace(obj, **{name: new})


def config_diff(a: Any, b: Any) -> list[str]:
    """Dotted keys whose values differ between two configs (dataclasses or plain dicts)."""
    pa = a if isinstance(a, Mapping) else config_to_dict(a)
    pb = b if isinstance(b, Mapping) else config_to_dict(b)
    out: list[str] = []

    def walk(x: Any, y: Any, prefix: str) -> None:
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            for k in list(x) + [k for k in y if k not in x]:
                walk(x.get(k, _MISSING), y.get(k, _MISSING), f"{prefix}{k}.")
        elif not _same(x, y):
            out.append(prefix[:-1])

    walk(pa, pb, "")
    return out


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return type(x) is type(y) and x == y


# --------------------------------------------------------------------------- YAML
def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load`` (never the unsafe loader).

    An empty file gives ``{}``.

    Raises:
        poseshape.core.errors.FileFormatError: the file is missing, is not valid YAML, or its top
            level is not a mapping.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileFormatError(f"{p}: config file not found") from None
    except OSError as e:
        raise FileFormatError(f"{p}: cannot read config file: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise FileFormatError(f"{p}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FileFormatError(f"{p}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data


def dump_yaml(config: Any, path: str | os.PathLike) -> Path:
    """Write a config dataclass (or plain dict) as YAML, atomically
    (:func:`poseshape.core.io.atomic_write`; parent folders are created).

    Raises:
        FileWriteError: the file cannot be written.
    """
    data = config if isinstance(config, Mapping) else config_to_dict(config)
    text = yaml.safe_dump(_to_plain(data, "config"), sort_keys=False, default_flow_style=False)
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # atomic_write names the problem (a parent that is a file, no permission, ...)
    return atomic_write(p, text)


def load_config(cls: type, path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> Any:
    """Defaults of ``cls``, then the YAML file ``path`` (if given), then ``--set`` overrides."""
    config = config_from_dict(cls, load_yaml(path) if path is not None else {})
    return apply_overrides(config, list(overrides))
