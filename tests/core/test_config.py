"""Tests of poseshape.core.config: overrides with type coercion, plain-dict and YAML round trips."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from poseshape.core.config import (
    ConfigError,
    apply_overrides,
    check_value,
    config_diff,
    config_from_dict,
    config_to_dict,
    dump_yaml,
    load_config,
    load_yaml,
    parse_override,
)
from poseshape.core.errors import FileFormatError, PoseshapeError


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@dataclass
class Optim:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    decay: Optional[float] = None  # noqa: UP045 - the typing spelling must work too


@dataclass
class Sub:
    depth: int = 2
    optim: Optim = field(default_factory=Optim)


@dataclass
class Cfg:
    batch_size: int = 32
    lr: float = 1e-3
    flag: bool = False
    name: str = "run"
    sizes: list[int] = field(default_factory=lambda: [1, 2, 3])
    widths: tuple[int, ...] = (4, 8)
    weights: dict[str, float] = field(default_factory=lambda: {"a": 1.0})
    kind: Literal["max", "absorb"] = "max"
    mode: Mode = Mode.FAST
    root: Path = Path("data")
    steps: int | None = None
    sub: Sub = field(default_factory=Sub)


def test_overrides_coerce_to_field_types():
    base = Cfg()
    cfg = apply_overrides(
        base,
        [
            "batch_size=8",
            "lr=1e-4",
            "flag=true",
            "name=123",
            "sizes=[4, 5]",
            "widths=[1,2,3]",
            "weights={a: 2, b: 0.5}",
            "kind=absorb",
            "mode=slow",
            "root=/tmp/x",
            "steps=10",
            "sub.depth=5",
            "sub.optim.lr=3e-2",
            "sub.optim.betas=[0.5, 0.6]",
            "sub.optim.decay=0.1",
        ],
    )
    assert cfg.batch_size == 8 and type(cfg.batch_size) is int
    assert cfg.lr == 1e-4 and type(cfg.lr) is float  # YAML 1.1 reads "1e-4" as a string
    assert cfg.flag is True
    assert cfg.name == "123"  # a str field keeps the text as typed
    assert cfg.sizes == [4, 5] and cfg.widths == (1, 2, 3)
    assert cfg.weights == {"a": 2.0, "b": 0.5} and type(cfg.weights["a"]) is float
    assert cfg.kind == "absorb" and cfg.mode is Mode.SLOW
    assert cfg.root == Path("/tmp/x") and cfg.steps == 10
    assert cfg.sub.depth == 5 and cfg.sub.optim.lr == 0.03 and cfg.sub.optim.betas == (0.5, 0.6)
    assert cfg.sub.optim.decay == 0.1
    # the input is not mutated
    assert base == Cfg()
    # later overrides win; none / null for optional fields; ints for float fields
    cfg = apply_overrides(cfg, ["steps=null", "lr=2", "flag=no", "sub.optim.decay=None", "lr=3"])
    assert cfg.steps is None and cfg.lr == 3.0 and type(cfg.lr) is float and cfg.flag is False
    assert cfg.sub.optim.decay is None
    # a whole nested config from a mapping, and mapping-style overrides
    cfg = apply_overrides(Cfg(), ["sub={depth: 7, optim: {lr: 0.5}}"])
    assert cfg.sub == Sub(depth=7, optim=Optim(lr=0.5))
    cfg = apply_overrides(Cfg(), {"sub.depth": "9", "flag": True})
    assert cfg.sub.depth == 9 and cfg.flag is True


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("batch=3", r"unknown config key 'batch' for Cfg; valid keys: batch_size, lr, flag, name"),
        (
            "sub.optim.lrr=1",
            (
                r"unknown config key 'sub.optim.lrr' .* valid keys: sub.optim.lr, "
                r"sub.optim.betas, sub.optim.decay"
            ),
        ),
        ("lr.x=1", r"config key 'lr' is a float, not a nested config"),
        ("batch_size=abc", r"batch_size: cannot use abc as int"),
        ("batch_size=1.5", r"batch_size: cannot use 1.5 as int"),
        ("batch_size=true", r"batch_size: cannot use true as int"),
        ("flag=maybe", r"flag: cannot use maybe as bool \(use true or false\)"),
        ("lr=fast", r"lr: cannot use fast as float"),
        ("sizes=3", r"sizes: cannot use 3 as list\[int\] \(expected a list"),
        ("sizes=[1, x]", r"sizes\[1\]: cannot use 'x' as int"),
        ("sub.optim.betas=[1, 2, 3]", r"sub.optim.betas: .* \(expected 2 items, got 3\)"),
        ("kind=min", r"kind: cannot use min as Literal\['max', 'absorb'\] \(allowed: 'max', 'absorb'\)"),
        ("mode=medium", r"mode: cannot use medium as Mode \(allowed: 'fast', 'slow'\)"),
        ("sub=3", r"sub: cannot use 3 as Sub \(expected a mapping"),
        ("sub={depth: 1, nope: 2}", r"unknown config key\(s\) 'sub.nope' for Sub"),
        ("noequals", r"expected KEY=VALUE"),
        ("=3", r"empty key"),
        ("a..b=3", r"empty key"),
    ],
)
def test_override_errors(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        apply_overrides(Cfg(), [override])


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, PoseshapeError) and issubclass(ConfigError, ValueError)
    with pytest.raises(ConfigError, match="list of 'key=value'"):
        apply_overrides(Cfg(), "lr=1")
    with pytest.raises(ConfigError, match="dataclass instance"):
        apply_overrides({"lr": 1}, ["lr=2"])
    assert parse_override(" sub.depth = 4 ") == ("sub.depth", "4")


def test_dict_roundtrip_and_refusals():
    cfg = apply_overrides(Cfg(), ["sub.optim.lr=0.5", "mode=slow"])
    d = config_to_dict(cfg)
    assert d["widths"] == [4, 8] and d["root"] == "data" and d["mode"] == "slow"
    assert d["sub"] == {"depth": 2, "optim": {"lr": 0.5, "betas": [0.9, 0.999], "decay": None}}
    _assert_plain(d)
    assert config_from_dict(Cfg, d) == cfg
    partial = config_from_dict(Cfg, {"sub": {"optim": {"lr": 7}}})
    assert partial == Cfg(sub=Sub(optim=Optim(lr=7.0)))
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) 'bogus' for Cfg; valid keys: "):
        config_from_dict(Cfg, {"bogus": 1})
    with pytest.raises(ConfigError, match=r"'sub.optim.x'"):
        config_from_dict(Cfg, {"sub": {"optim": {"x": 1}}})
    with pytest.raises(ConfigError, match="expected a mapping"):
        config_from_dict(Cfg, [1, 2])

    @dataclass
    class Required:
        need: int

    with pytest.raises(ConfigError, match="need"):
        config_from_dict(Required, {})
    with pytest.raises(ConfigError, match=r"config\['f'\]: value of type function"):
        config_to_dict({"f": lambda: 0})


def _assert_plain(x):
    if isinstance(x, dict):
        for k, v in x.items():
            assert isinstance(k, str)
            _assert_plain(v)
    elif isinstance(x, list):
        for v in x:
            _assert_plain(v)
    else:
        assert x is None or type(x) in (str, int, float, bool), type(x)


def test_config_diff():
    a = Cfg()
    b = apply_overrides(a, ["lr=0.5", "sub.optim.betas=[0.1, 0.2]"])
    assert config_diff(a, b) == ["lr", "sub.optim.betas"]
    assert config_diff(a, config_to_dict(a)) == []
    assert config_diff({"x": 1}, {"x": 1.0}) == ["x"]  # types matter
    assert config_diff({"x": 1}, {"y": 1}) == ["x", "y"]


def test_yaml_roundtrip_and_load_config(tmp_path):
    cfg = apply_overrides(Cfg(), ["sub.depth=4", "weights={w: 0.25}"])
    path = dump_yaml(cfg, tmp_path / "deep" / "cfg.yaml")
    assert load_yaml(path) == config_to_dict(cfg)
    assert config_from_dict(Cfg, load_yaml(path)) == cfg
    (tmp_path / "part.yaml").write_text("lr: 1.0e-2\nsub:\n  optim:\n    lr: 0.2\n")
    got = load_config(Cfg, tmp_path / "part.yaml", ["sub.optim.lr=0.3", "flag=1"])
    assert got.lr == 0.01 and got.sub.optim.lr == 0.3 and got.flag is True
    assert load_config(Cfg) == Cfg()
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml(tmp_path / "empty.yaml") == {}


def test_yaml_errors(tmp_path):
    with pytest.raises(FileFormatError, match=r"missing\.yaml: config file not found"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(FileFormatError, match=r"bad\.yaml: not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(FileFormatError, match="expected a YAML mapping"):
        load_yaml(tmp_path / "list.yaml")
    # safe_load only: a python object tag is an error and nothing runs
    marker = tmp_path / "pwned"
    (tmp_path / "evil.yaml").write_text(f"a: !!python/object/apply:os.makedirs ['{marker}']\n")
    with pytest.raises(FileFormatError, match=r"evil\.yaml: not valid YAML"):
        load_yaml(tmp_path / "evil.yaml")
    assert not marker.exists()
    (tmp_path / "unknown.yaml").write_text("lr: 1\nlearning_rate: 2\n")
    with pytest.raises(ConfigError, match="'learning_rate'"):
        load_config(Cfg, tmp_path / "unknown.yaml")


@dataclass
class _CheckInner:
    finetune_lr: float = 1e-4
    workers: int = 0


@dataclass
class _CheckCfg:
    lr: float = 1e-3
    batch_size: int = 8
    width: float = 1.0
    iterations: int = 10
    grad_clip: float | None = None
    betas: tuple[float, float] = (0.5, 0.9)
    inner: _CheckInner = field(default_factory=_CheckInner)


def test_shared_value_checks_name_the_key():
    """NaN anywhere, lr <= 0, batch sizes < 1, widths <= 0, negative step counts and workers are
    refused where they are parsed (``--set`` and YAML / checkpoint dicts), naming the key."""
    for item, msg in [
        ("lr=nan", "lr: NaN"),
        ("lr=-1", "lr: got -1.0"),
        ("lr=0", "lr: got 0.0"),
        ("lr=inf", "finite"),
        ("batch_size=0", "batch_size: got 0"),
        ("width=0", "width: got 0"),
        ("iterations=-5", "iterations: got -5"),
        ("inner.finetune_lr=-1e-3", "inner.finetune_lr"),
        ("inner.workers=-1", "inner.workers"),
        ("betas=[0.5, .nan]", "betas: NaN"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(msg)):
            apply_overrides(_CheckCfg(), [item])
    ok = apply_overrides(_CheckCfg(), ["lr=2e-4", "iterations=0", "grad_clip=inf", "width=0.25"])
    assert (ok.lr, ok.iterations, ok.width) == (2e-4, 0, 0.25) and ok.grad_clip == float("inf")
    with pytest.raises(ConfigError, match="batch_size"):
        config_from_dict(_CheckCfg, {"batch_size": 0})
    assert check_value("name", "text") == "text" and check_value("flag", True) is True
