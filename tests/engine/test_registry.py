"""Tests of poseshape.engine.registry (and that its docstring example really trains)."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from poseshape.core.errors import PoseshapeError
from poseshape.engine import registry
from poseshape.engine.registry import (
    MethodSpec,
    Stage,
    get_method,
    list_methods,
    register_method,
    unregister_method,
)


@dataclass
class Cfg:
    lr: float = 0.1
    hidden: int = 3


def build(cfg):
    return {"a": nn.Linear(2, cfg.hidden), "b": nn.Linear(cfg.hidden, 1)}


def data(cfg, ctx):
    return torch.utils.data.TensorDataset(torch.randn(8, 2), torch.randn(8, 1)), None


def step(models, batch, ctx):
    x, y = batch
    return {"loss": nn.functional.mse_loss(models["b"](models["a"](x)), y)}


def sgd(modules, cfg):
    return torch.optim.SGD([p for m in modules.values() for p in m.parameters()], lr=cfg.lr)


def stage(name="s", **kw):
    kw.setdefault("iterations", 2)
    return Stage(name, data=data, step=step, optimizer=sgd, **kw)


def test_register_get_list(clean_registry):
    spec = register_method(MethodSpec(name="t_reg", config_cls=Cfg, build=build, stages=[stage()]))
    assert get_method("t_reg") is spec
    assert "t_reg" in list_methods() and list_methods() == sorted(list_methods())
    # keyword spelling and decorator spelling
    spec2 = register_method("t_kw", config_cls=Cfg, build=build, stages=[stage()])
    assert get_method("t_kw") is spec2

    @register_method("t_deco", config_cls=Cfg, stages=lambda cfg: [stage("x"), stage("y")])
    def build2(cfg):
        return build(cfg)

    assert build2 is not None and get_method("t_deco").build is build2
    assert [s.name for s in get_method("t_deco").get_stages(Cfg())] == ["x", "y"]
    unregister_method("t_kw")
    assert "t_kw" not in list_methods()


def test_duplicate_and_unknown_names(clean_registry):
    register_method("t_dup", config_cls=Cfg, build=build, stages=[stage()])
    with pytest.raises(PoseshapeError, match="'t_dup' is already registered"):
        register_method("t_dup", config_cls=Cfg, build=build, stages=[stage()])
    new = register_method("t_dup", config_cls=Cfg, build=build, stages=[stage("z")], replace=True)
    assert get_method("t_dup") is new
    with pytest.raises(PoseshapeError, match=r"unknown method 'nope'; registered methods: .*t_dup"):
        get_method("nope")


def test_builtin_methods_import_lazily(clean_registry, monkeypatch, tmp_path):
    # a built-in whose package does not exist yet is simply not listed
    monkeypatch.setitem(registry.BUILTIN_METHODS, "t_future", "poseshape.methods.t_future_missing")
    assert "t_future" not in list_methods()
    with pytest.raises(PoseshapeError, match="unknown method 't_future'"):
        get_method("t_future")
    # a method package is imported on first use and registers itself
    (tmp_path / "t_ok_pkg").mkdir()
    (tmp_path / "t_ok_pkg" / "__init__.py").write_text("from tests_registry_helper import register\nregister()\n")
    (tmp_path / "tests_registry_helper.py").write_text(
        "def register():\n"
        "    from poseshape.engine.registry import MethodSpec, register_method\n"
        f"    from {__name__} import Cfg, build, stage\n"
        "    register_method(MethodSpec(name='t_ok', config_cls=Cfg, build=build,"
        " stages=[stage()]))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.BUILTIN_METHODS, "t_ok", "t_ok_pkg")
    assert get_method("t_ok").name == "t_ok"
    # but a real import error inside an existing method package is not hidden
    (tmp_path / "t_broken_pkg").mkdir()
    (tmp_path / "t_broken_pkg" / "__init__.py").write_text("import not_a_module_xyz_123\n")
    monkeypatch.setitem(registry.BUILTIN_METHODS, "t_broken", "t_broken_pkg")
    with pytest.raises(ModuleNotFoundError, match="not_a_module_xyz_123"):
        get_method("t_broken")


def test_stage_validation():
    with pytest.raises(PoseshapeError, match="exactly one of iterations= or epochs="):
        Stage("s", data=data, step=step, optimizer=sgd)
    with pytest.raises(PoseshapeError, match="exactly one of iterations= or epochs="):
        Stage("s", data=data, step=step, optimizer=sgd, iterations=1, epochs=1)
    with pytest.raises(PoseshapeError, match="iterations must be an int >= 0"):
        stage(iterations=-1)
    with pytest.raises(PoseshapeError, match="batch_size must be >= 1"):
        stage(batch_size=0)
    with pytest.raises(PoseshapeError, match="best_mode"):
        stage(best_mode="low")
    with pytest.raises(PoseshapeError, match="non-empty string"):
        stage(name="")
    assert stage(train="a").train == ("a",)


def test_spec_validation_and_helpers(tmp_path):
    with pytest.raises(PoseshapeError, match="config_cls must be a dataclass"):
        MethodSpec(name="x", config_cls=dict, build=build, stages=[stage()])
    spec = MethodSpec(name="x", config_cls=Cfg, build=build, stages=[stage("a"), stage("a")])
    with pytest.raises(PoseshapeError, match="stage names must be unique"):
        spec.get_stages(Cfg())
    with pytest.raises(PoseshapeError, match="no training stages"):
        MethodSpec(name="x", config_cls=Cfg, build=build, stages=[]).get_stages(Cfg())
    bad = MethodSpec(name="x", config_cls=Cfg, build=lambda c: nn.Linear(1, 1), stages=[stage()])
    with pytest.raises(PoseshapeError, match="must return a non-empty dict"):
        bad.build_models(Cfg())
    spec = MethodSpec(name="x", config_cls=Cfg, build=build, stages=[stage()])
    assert spec.default_config() == Cfg()
    (tmp_path / "c.yaml").write_text("hidden: 5\n")
    cfg = spec.make_config(tmp_path / "c.yaml", ["lr=0.5"])
    assert cfg == Cfg(lr=0.5, hidden=5)
    assert spec.build_models(cfg)["a"].out_features == 5


def test_docstring_example_registers_and_trains(clean_registry, tmp_path):
    """The example in the module docstring is real code: run it and train the toy method."""
    doc = registry.__doc__
    block = doc[doc.index("A minimal example") :].split("::\n\n", 1)[1]
    code = re.split(r"\n(?=\S)", block, maxsplit=1)[0]  # until the first unindented line
    code = textwrap.dedent(code).split("# then:")[0]
    unregister_method("toy")
    exec(compile(code, "registry-docstring", "exec", dont_inherit=True), {"__name__": "__main__"})  # noqa: S102
    spec = get_method("toy")
    from poseshape.engine.train import Trainer

    cfg = spec.make_config(overrides=["iters=200", "lr=0.05"])
    trainer = Trainer("toy", cfg, out_dir=tmp_path, progress=False)
    trainer.fit()
    assert trainer.val_metrics["joint"]["val_mse"] < 0.05
    assert (tmp_path / "best_joint.pt").exists()


def test_builtin_method_comes_back_after_unregistering(clean_registry):
    """A built-in imported earlier and unregistered since is registered again on demand
    (importing it a second time would not run its registration)."""
    spec = get_method("refine6dof")
    unregister_method("refine6dof")
    assert "refine6dof" not in registry._REGISTRY
    assert get_method("refine6dof") is spec
    registry._REGISTRY.clear()  # e.g. a test fixture restoring an older snapshot
    assert "refine6dof" in list_methods() and "reproject" in list_methods()


def test_presets_expand_before_overrides():
    @dataclass
    class Cfg:
        lr: float = 1.0
        steps: int = 100

    spec = MethodSpec(
        name="preset_demo",
        config_cls=Cfg,
        build=lambda c: {"m": nn.Linear(1, 1)},
        stages=[],
        presets={"quick": ("steps=5", "lr=0.5")},
    )
    assert spec.preset_names() == ["paper", "quick"]
    assert spec.make_config(None, ["preset=quick"]) == Cfg(lr=0.5, steps=5)
    assert spec.make_config(None, ["lr=0.1", "preset=quick"]) == Cfg(lr=0.1, steps=5)  # explicit keys win
    assert spec.make_config(None, ["preset=paper"]) == Cfg()
    with pytest.raises(PoseshapeError, match="has the presets paper, quick"):
        spec.make_config(None, ["preset=fast"])
    with pytest.raises(PoseshapeError, match="choose one"):
        spec.make_config(None, ["preset=quick", "preset=paper"])


@pytest.mark.parametrize("method", ["reproject", "refine6dof", "retrieval", "selfconsistency", "posefree"])
def test_every_method_has_quick_and_cpu_presets(method):
    from poseshape.engine.registry import get_method

    try:
        spec = get_method(method)
    except PoseshapeError as e:  # a method still being built is not registered yet
        pytest.skip(str(e))
    assert {"paper", "cpu", "quick"} <= set(spec.preset_names())
    for name in spec.preset_names():
        spec.make_config(None, [f"preset={name}"])  # every preset is a valid configuration
