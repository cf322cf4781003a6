"""``poseshape train METHOD``: run a registered method's training stages (resumable).

Examples::

    poseshape train reproject --out runs/rp --set data.train=data/rp/train \\
        --set data.natural=data/rp/natural --set image_size=64 --set batch_size=32
    torchrun --nproc_per_node=2 -m poseshape train reproject --out runs/rp ...

Rerunning the same command with the same ``--out`` resumes from ``--out/last.pt``.
"""

from __future__ import annotations

import argparse

from poseshape.cli.args import output_path
from poseshape.core.config import config_to_dict
from poseshape.core.errors import PoseshapeError
from poseshape.engine.predictor import resolve_device
from poseshape.engine.registry import get_method, list_methods
from poseshape.engine.train import Trainer

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="train a method (stages, resumable checkpoints, logs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", help="registered method name (see `poseshape train --list`)", nargs="?")
    p.add_argument("--list", action="store_true", help="list the registered methods and exit")
    p.add_argument("--out", type=output_path, help="run directory (checkpoints, logs, config.yaml)")
    p.add_argument("--config", default=None, help="YAML file of config overrides")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value (repeatable), e.g. --set lr=1e-4",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="write last.pt every N steps")
    p.add_argument("--no-resume", action="store_true", help="start over even if --out/last.pt exists")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def run(args) -> int:
    import sys

    if args.list:
        for name in list_methods():
            spec = get_method(name)
            print(f"{name:16s} {spec.description}")
        return 0
    if not args.method:
        raise PoseshapeError("train: give a METHOD (one of: " + ", ".join(list_methods()) + ")")
    spec = get_method(args.method)
    if args.device is not None:
        resolve_device(args.device)  # an unknown device: one error line listing the devices there are
    config = spec.make_config(args.config, args.overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
        return 0
    if not args.out:
        raise PoseshapeError("train: --out DIR is required (checkpoints and logs go there)")

    trainer = Trainer(
        spec,
        config,
        out_dir=args.out,
        seed=args.seed,
        device=args.device,
        progress=False if args.no_progress else None,
        checkpoint_every=args.checkpoint_every,
        resume=not args.no_resume,
    )
    trainer.fit()
    if trainer.is_main:
        for stage, metrics in trainer.val_metrics.items():
            shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            print(f"{stage}: {shown}", file=sys.stderr)
        print(f"{args.out}/last.pt")
    return 0
