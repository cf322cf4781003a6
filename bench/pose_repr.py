"""reproject's pose regressor alone: the paper's twist output vs the continuous 6-D output (issue 19).

Trains only the pose regressor (:class:`poseshape.methods.reproject.model.ImageRegressor`, the
stage-2 network of paper 000) on a rendered reproject set, for each ``pose_repr`` with the same
seed, batches and steps, and reports the rotation error on training images and on the held-out
test split (other models). The shape networks are not involved, so this isolates the pose output.

    python bench/pose_repr.py --data runs/w36/data --steps 2000

``--data`` is a folder made by ``render_reproject_data`` (its ``train`` and ``test`` sets).
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def category_subset(ds, names: list[str]):
    """The samples of ``ds`` (a RenderedSamples) whose category is in ``names`` (all if empty)."""
    if not names:
        return ds
    from poseshape.data.dataset import ShardDataset

    cats = ShardDataset(ds.ds.root, keys=("category",))
    unknown = set(names) - set(cats.categories)
    if unknown:
        raise SystemExit(f"--categories: {sorted(unknown)} not in {ds.ds.root}")
    keep = {cats.categories.index(n) for n in names}
    idx = [i for i in range(len(ds)) if int(cats[i]["category"]) in keep]
    return torch.utils.data.Subset(ds, idx)


class Masked(torch.utils.data.Dataset):
    """Each image composited on mid-grey with its own full-resolution mask (background removed)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        from poseshape.methods.reproject.config import ReprojectConfig
        from poseshape.methods.reproject.data import _resize_image
        from poseshape.methods.reproject.train import model_images

        it = dict(self.ds[i])
        base = self.ds.dataset if isinstance(self.ds, torch.utils.data.Subset) else self.ds
        j = self.ds.indices[i] if isinstance(self.ds, torch.utils.data.Subset) else i
        m = _resize_image(base.ds[j]["mask"].float(), it["image"].shape[-1])
        it["image"] = model_images(it["image"][None], m[None], ReprojectConfig(image_input="masked"))[0]
        return it


def evaluate(models, cfg, ds, n: int, batch: int = 64) -> dict[str, float]:
    from poseshape.methods.reproject.frame import pose_to_rt
    from poseshape.methods.reproject.train import regress_rt
    from poseshape.metrics import rotation_error

    errs = []
    idx = torch.linspace(0, len(ds) - 1, min(n, len(ds))).round().long().tolist()  # spread over all models
    models["pose"].eval()
    with torch.no_grad():
        for s in range(0, len(idx), batch):
            items = [ds[i] for i in idx[s : s + batch]]
            b = torch.utils.data.default_collate(items)
            R, _ = regress_rt(models, b["image"], cfg)
            errs.append(rotation_error(R, pose_to_rt(b["pose"])[0]))
    models["pose"].train()
    e = torch.cat(errs)
    return {"mederr": float(e.median()), "acc_pi6": float((e < 30).float().mean()), "n": int(e.numel())}


def run(
    data: str,
    repr_: str,
    loss: str,
    steps: int,
    batch: int,
    seed: int,
    width: float,
    n_eval: int,
    cats=(),
    masked=False,
) -> dict:
    from poseshape.methods.reproject.config import ReprojectConfig
    from poseshape.methods.reproject.data import RenderedSamples
    from poseshape.methods.reproject.model import ImageRegressor
    from poseshape.methods.reproject.train import pose_outputs, pose_regression_loss

    cfg = ReprojectConfig(image_size=64, width=width, pose_repr=repr_, pose_loss=loss)
    train = category_subset(RenderedSamples(f"{data}/train", cfg), list(cats))
    test = category_subset(RenderedSamples(f"{data}/test", cfg, what="val"), list(cats))
    if masked:
        train, test = Masked(train), Masked(test)
    torch.manual_seed(seed)
    models = {"pose": ImageRegressor(pose_outputs(cfg), image_size=64, width=width)}
    opt = torch.optim.Adam(models["pose"].parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train, batch_size=batch, shuffle=True, drop_last=True, generator=gen)
    it, t0, losses = iter(loader), time.perf_counter(), []
    for step in range(steps):
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        lv = pose_regression_loss(models, b["image"], b["pose"], cfg)
        opt.zero_grad()
        lv.backward()
        torch.nn.utils.clip_grad_norm_(models["pose"].parameters(), cfg.grad_clip)
        opt.step()
        losses.append(float(lv.detach()))
    secs = time.perf_counter() - t0
    return {
        "pose_repr": repr_,
        "pose_loss": loss,
        "steps": steps,
        "categories": list(cats) or "all",
        "masked": masked,
        "train_size": len(train),
        "train_s": round(secs, 1),
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "train_images": evaluate(models, cfg, train, n_eval),
        "held_out": evaluate(models, cfg, test, n_eval),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--eval", type=int, default=768, help="images evaluated per split")
    ap.add_argument("--variants", nargs="+", default=["twist:l2", "6d:l2"], help="pose_repr:pose_loss")
    ap.add_argument("--categories", nargs="*", default=[], help="train and test on these only")
    ap.add_argument("--masked", action="store_true", help="composite every image on grey with its mask")
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for v in a.variants:
        repr_, loss = v.split(":")
        r = run(a.data, repr_, loss, a.steps, a.batch, a.seed, a.width, a.eval, a.categories, a.masked)
        print(json.dumps(r), flush=True)
        rows.append(r)
    print("\n| pose_repr | loss | steps | train s | train MedErr / Acc pi/6 | held-out MedErr / Acc pi/6 |")
    print("|---|---|---:|---:|---|---|")
    for r in rows:
        tr, ho = r["train_images"], r["held_out"]
        print(
            f"| {r['pose_repr']} | {r['pose_loss']} | {r['steps']} | {r['train_s']:.0f} | "
            f"{tr['mederr']:.1f} / {tr['acc_pi6']:.2f} | {ho['mederr']:.1f} / {ho['acc_pi6']:.2f} |"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
