"""``poseshape data`` subcommand: ``poseshape data render`` writes a sharded synthetic data set.

Example::

    poseshape data render --meshes procedural --out data/chairs --categories chair \\
        --views 24 --size 64 --voxels 32 --workers 2 --seed 0
    poseshape data render --meshes ../shared/data/pascal3d_cad --out data/p3d \\
        --pose pascal --domain natural --split train

The lead wires :func:`add_parser` / :func:`run` into :mod:`poseshape.cli.main`.
"""

from __future__ import annotations

import argparse
import sys

from poseshape.cli.args import int_at_least, output_path
from poseshape.core.checks import check_memory
from poseshape.core.errors import PoseshapeError
from poseshape.data.synth import PoseConfig, SynthConfig, render_dataset

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``data`` (with ``data render``) on an ``argparse`` subparsers object."""
    p = subparsers.add_parser("data", help="generate and inspect data sets")
    sub = p.add_subparsers(dest="data_command", required=True)
    r = sub.add_parser(
        "render",
        help="render meshes into sharded image/mask/pose/voxel sets",
        description="Render a mesh collection into numbered .npz shards + index.json "
        "(see poseshape.data.synth for the format). Reruns resume.",
    )
    r.add_argument(
        "--meshes",
        required=True,
        help="'procedural' or a folder (PASCAL3D+ CAD, ObjectNet3D, ShapeNet, or <category>/<model>.obj|off|ply)",
    )
    r.add_argument("--out", type=output_path, required=True, help="output folder")
    r.add_argument("--views", type=int_at_least(1), default=24, help="samples per model (default 24)")
    r.add_argument("--size", type=int_at_least(8), default=64, help="image side in pixels (default 64)")
    r.add_argument("--voxels", type=int, default=32, help="aligned voxel grid side, 0 = none (default 32)")
    r.add_argument("--posed-voxels", type=int, default=None, help="also store the pose-aware grid of this side")
    r.add_argument("--workers", type=int_at_least(0), default=1, help="worker processes (output independent of it)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--domain", choices=("render", "natural"), default="render")
    r.add_argument("--categories", nargs="+", default=None, help="keep only these categories")
    r.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default=None,
        help="render only the models of this split (model-level split, seed --split-seed)",
    )
    r.add_argument("--split-seed", type=int, default=0)
    r.add_argument(
        "--models-per-category", type=int_at_least(1), default=None, help="procedural models per category (10)"
    )
    r.add_argument("--pose", choices=("uniform", "pascal", "ring24"), default="uniform", help="pose distribution")
    r.add_argument(
        "--elevation",
        type=float,
        nargs=2,
        default=(-10.0, 50.0),
        metavar=("LO", "HI"),
        help="elevation range in degrees (uniform)",
    )
    r.add_argument("--distance", type=float, nargs=2, default=(2.0, 3.0), metavar=("LO", "HI"))
    r.add_argument("--framing", choices=("crop", "fixed", "6dof"), default="crop")
    r.add_argument(
        "--realism",
        choices=("none", "realistic"),
        default="none",
        help="photo-like effects: 'realistic' = random focal length (30-90 deg field of view) and "
        "object size, off-centre crops, 20%% truncated by the border, 30%% with occluders (masks stay "
        "whole; an 'occlusion' array marks the hidden pixels). Default none",
    )
    r.add_argument("--depth", action="store_true", help="also store depth maps")
    r.add_argument("--backgrounds", default=None, help="folder of background images")
    r.add_argument("--shard-size", type=int, default=64, help="samples per shard")
    r.add_argument("--no-compress", action="store_true", help="write uncompressed .npz")
    r.add_argument("--overwrite", action="store_true", help="replace a data set of another configuration")
    r.add_argument("--start-method", choices=("fork", "spawn", "forkserver"), default=None)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Execute ``poseshape data ...``; returns the exit status."""

    if getattr(args, "data_command", None) != "render":
        print(f"poseshape data: unknown command {getattr(args, 'data_command', None)!r}", file=sys.stderr)
        return 2
    # Estimated working set before anything is allocated: per worker, ~64 B/pixel of render
    # buffers plus a shard of finished images (RGB, depth, mask ~9 B/pixel each).
    check_memory(
        max(1, args.workers) * args.size**2 * (64 + 9 * max(1, args.shard_size)),
        f"data render --size {args.size}",
        "--size (or --workers / --shard-size)",
    )
    try:
        cfg = SynthConfig(
            image_size=args.size,
            views=args.views,
            voxel_res=args.voxels,
            posed_voxel_res=args.posed_voxels,
            framing=args.framing,
            domain=args.domain,
            depth=args.depth,
            samples_per_shard=args.shard_size,
            seed=args.seed,
            backgrounds=args.backgrounds,
            compress=not args.no_compress,
            realism=args.realism,
            pose=PoseConfig(distribution=args.pose, elevation_deg=tuple(args.elevation), distance=tuple(args.distance)),
        )
        summary = render_dataset(
            args.meshes,
            args.out,
            cfg,
            workers=args.workers,
            categories=args.categories,
            split=args.split,
            split_seed=args.split_seed,
            models_per_category=args.models_per_category,
            progress=not args.quiet,
            overwrite=args.overwrite,
            start_method=args.start_method,
        )
    except PoseshapeError as exc:
        print(f"poseshape data render: error: {exc}", file=sys.stderr)
        return 1
    print(summary)
    for s in summary.skipped_meshes:
        print(f"  skipped {s['path']}: {s['error']}")
    return 0
