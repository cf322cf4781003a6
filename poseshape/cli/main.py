"""The ``poseshape`` command.

Each sub-command lives in the module that owns the capability and contributes an
``add_parser(subparsers)`` function plus a ``run(args)`` entry; this file only wires them
together, importing lazily so that ``poseshape --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from poseshape.core.errors import PoseshapeError, TrainingInterrupted
from poseshape.core.version import __version__

#: sub-command name -> module providing ``add_parser(subparsers)`` and ``run(args)``.
COMMANDS: dict[str, str] = {
    "info": "poseshape.cli.info",
    "data": "poseshape.cli.data",
    "train": "poseshape.cli.train",
    "eval": "poseshape.cli.eval",
    "reconstruct": "poseshape.cli.reconstruct",
    "refine": "poseshape.cli.refine",
    "scene": "poseshape.cli.scene",
    "demo": "poseshape.cli.demo",
    "retrieval": "poseshape.cli.retrieval",
    "serve": "poseshape.cli.serve",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poseshape",
        description="Pose-aware 3-D shape and 6-DoF pose from a single image.",
    )
    parser.add_argument("--version", action="version", version=f"poseshape {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:  # a capability not built yet
            if exc.name != modname:
                raise
            continue
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        rc = args._run(args)
    except TrainingInterrupted as exc:
        print(f"poseshape {args.command}: {exc}", file=sys.stderr)
        return 128 + exc.signal
    except PoseshapeError as exc:
        print(f"poseshape {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # permissions, a full disk, a file where a folder must be, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"poseshape {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
