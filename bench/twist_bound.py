"""Twist bound of reproject's pose regressor: ``w = pi tanh(g |v|) v / |v|`` for g = 1 vs 1/pi.

Paper 000 bounds the exponential twist to the ball of radius pi "with the tanh function" and
gives no scale. This overfits the pose regressor to the same small set of rendered images
(as ``tests/methods/reproject/test_reproject_model.py::test_pose_regressor_overfits_16_images``
does) with each gain and several seeds, and reports the rotation errors at the end: with
g = 1 the raw output of a pose that overshoots lands in the tanh's flat part, where its
gradient vanishes, and it can stay there.

    python bench/twist_bound.py --seeds 3 --steps 300        # ~5 min on a 2-core CPU
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import torch


def run(gain: float, seed: int, batch: dict, steps: int, image_size: int) -> torch.Tensor:
    from poseshape.methods.reproject.config import ReprojectConfig
    from poseshape.methods.reproject.frame import pose_to_rt
    from poseshape.methods.reproject.model import ImageRegressor
    from poseshape.methods.reproject.train import pose_loss, regress_pose
    from poseshape.metrics import rotation_error

    cfg = ReprojectConfig(image_size=image_size, width=0.5, twist_gain=gain)
    torch.manual_seed(seed)
    models = {"pose": ImageRegressor(5, image_size=image_size, width=0.5)}
    opt = torch.optim.Adam(models["pose"].parameters(), lr=cfg.lr)
    for _ in range(steps):
        loss = pose_loss(regress_pose(models, batch["image"], cfg), batch["pose"], cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    models["pose"].eval()
    with torch.no_grad():
        R = pose_to_rt(regress_pose(models, batch["image"], cfg))[0]
    return rotation_error(R, pose_to_rt(batch["pose"])[0])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=48)
    args = ap.parse_args(argv)
    from poseshape.methods.reproject.config import ReprojectConfig
    from poseshape.methods.reproject.data import RenderedSamples, render_reproject_data

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        paths = render_reproject_data(
            "procedural",
            tmp,
            categories=("car", "chair"),
            image_size=args.image_size,
            views=4,
            models_per_category=10,
            seed=0,
            progress=False,
        )
        ds = RenderedSamples(paths["train"], ReprojectConfig(image_size=args.image_size))
        batch = torch.utils.data.default_collate([ds[i] for i in range(args.images)])
    print("| gain g | seed | max err (deg) | median err (deg) | poses > 10 deg | poses > 90 deg | time (s) |")
    print("|---|---|---|---|---|---|---|")
    for gain, name in ((1.0, "1"), (1.0 / math.pi, "1/pi")):
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            err = run(gain, seed, batch, args.steps, args.image_size)
            print(
                f"| {name} | {seed} | {err.max():.1f} | {err.median():.1f} | {(err > 10).sum()}/{len(err)} | "
                f"{(err > 90).sum()}/{len(err)} | {time.perf_counter() - t0:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
