"""Paper 004's tables, small, on CPU (``bench/results_frag/retrieval.md``).

Two parts (each optional):

``--stage1`` (Tables 2 and 3 on 3-D input): the stage-I embedding network trained on the
    voxelised CAD models of ``--meshes`` (default: the 73 PASCAL3D+ models of the shared
    data) for ``--steps`` Adam steps per variant on random rotations drawn online, then
    evaluated on ``--eval-rotations`` *held-out* random rotations of every model: MedErr and
    Acc@pi/6 of the decoded rotation, top-1 retrieval of the rotated grid in the database.
    Variants: the anchor grids 1^3, 4^3, 7^3, 9^3 of eq. 1 (``dedup="exact"``, the paper's
    count 259 at 7^3) and super-Fibonacci at the same counts (Table 3); and at 7^3 the
    shared (not disentangled) embedding (Table 2's "without disentangling").
``--images CHECKPOINT`` (Tables 1, 2 and 4 on images): ``poseshape eval``'s rows ``full``,
    ``head``, ``small``, ``large``, ``occluded``, ``truncated`` of a trained checkpoint on
    held-out renders of its own models (default: the shipped procedural model).

    flock /tmp/poseshape-cpu.lock env OMP_NUM_THREADS=2 python bench/retrieval_tables.py --stage1 \\
        --images poseshape/assets/retrieval.pt
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from poseshape.core.config import apply_overrides
from poseshape.core.paths import shared_data_dir
from poseshape.engine.predictor import load_predictor
from poseshape.geometry.rotations import quaternion_geodesic_distance
from poseshape.methods.retrieval.config import RetrievalConfig
from poseshape.methods.retrieval.data import random_rotations
from poseshape.methods.retrieval.database import (
    ExactIndex,
    ModelBank,
    collection_buffers,
    embed_models,
    open_collection,
)
from poseshape.methods.retrieval.evaluate import evaluate
from poseshape.methods.retrieval.model import EmbeddingHeads, VoxelEmbeddingNet, make_anchors
from poseshape.methods.retrieval.train import embedding_losses, index_rotations, rotated_grids


def stage1_variant(bank: ModelBank, cfg: RetrievalConfig, steps: int, n_eval: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    M = len(bank)
    anchors = make_anchors(cfg.anchor_grid, cfg.anchor_n, cfg.anchor_dedup)
    net = VoxelEmbeddingNet(cfg.embed_dim, cfg.voxnet_channels, 32, cfg.disentangle)
    heads = EmbeddingHeads(cfg.embed_dim, M, anchors)
    opt = torch.optim.Adam([*net.parameters(), *heads.parameters()], lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for s in range(steps):
        model = torch.randint(0, M, (cfg.batch_size,), generator=g)
        q = random_rotations(len(model), seed, "bench", s)
        emb = net(rotated_grids(bank, model, q))
        out = heads(emb["shape"], emb["pose"])
        parts = embedding_losses(emb, out, model, q, heads.anchors, cfg)
        loss = parts["shape"] + parts["anchor"] + parts["residual"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - t0
    net.eval()
    with torch.no_grad():
        db = ExactIndex(embed_models(net, bank.voxels, index_rotations(cfg)))
        model = torch.arange(M).repeat_interleave(n_eval)
        q = random_rotations(len(model), seed, "bench-heldout")
        errs, hits = [], []
        for lo in range(0, len(model), 64):
            mb, qb = model[lo : lo + 64], q[lo : lo + 64]
            emb = net(rotated_grids(bank, mb, qb))
            out = heads(emb["shape"], emb["pose"])
            errs.append(quaternion_geodesic_distance(heads.rotation(out), qb).rad2deg())
            hits.append(db.search(emb["shape"], 1)[1][:, 0] == mb)
    e, h = torch.cat(errs), torch.cat(hits)
    return {
        "anchors": int(anchors.shape[0]),
        "MedErr": float(e.median()),
        "Acc_pi6": float((e < 30).float().mean()),
        "top1": float(h.float().mean()),
        "train_s": train_s,
    }


def run_stage1(args) -> list[str]:
    t0 = time.perf_counter()
    meshes = args.meshes or str(shared_data_dir() / "pascal3d_cad")
    buffers, skipped = collection_buffers(open_collection(meshes))
    bank = ModelBank()
    bank.set(**buffers)
    base = apply_overrides(
        RetrievalConfig(),
        [f"embed_dim={args.embed_dim}", f"voxnet_channels={args.channels}", f"lr={args.lr}", "index_rotations=32"],
    )
    lines = [
        f"Stage I on {len(bank)} models of `{meshes}` ({len(skipped)} skipped), {args.steps} Adam steps "
        f"(lr {args.lr}, batch {base.batch_size}, {args.embed_dim}-d embeddings, VoxNet {args.channels} filters) "
        f"per variant; {args.eval_rotations} held-out random rotations per model.",
        "",
        "| variant | anchors | MedErr (deg) | Acc@pi/6 | top-1 retrieval | train (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    variants = [(f"eq. 1 grid {n}^3", replace(base, anchor_grid="paper", anchor_n=n)) for n in args.grid]
    variants += [
        (f"super-Fibonacci (= {n}^3 count)", replace(base, anchor_grid="superfib", anchor_n=n)) for n in args.grid
    ]
    variants += [("eq. 1 grid 7^3, shared embedding (no disentangling)", replace(base, anchor_n=7, disentangle=False))]
    results = {}
    for name, cfg in variants:
        r = stage1_variant(bank, cfg, args.steps, args.eval_rotations)
        results[name] = r
        line = f"| {name} | {r['anchors']} | {r['MedErr']:.1f} | {r['Acc_pi6']:.3f} | {r['top1']:.3f} | {r['train_s']:.0f} |"
        print(line, flush=True)
        lines.append(line)
    lines.append("")
    lines.append(f"Wall time {time.perf_counter() - t0:.0f} s.")
    print("\n".join(lines), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return lines


def run_images(args) -> list[str]:
    t0 = time.perf_counter()
    pred = load_predictor(args.images, method="retrieval", device="cpu")
    res = evaluate(
        pred, None, rows=("full", "head", "small", "large", "occluded", "truncated"), limit=args.limit, progress=False
    )
    lines = [
        f"`{args.images}` on {res['samples']} held-out renders of its {res['models']} models "
        f"(`{res['data']}`; occluded / truncated: extra renders with the data engine's occluders / border cuts).",
        "",
        "| row | top-1 | MedErr (deg) | Acc@pi/6 | t err (units) | n |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k, v in res["rows"].items():
        lines.append(
            f"| {k} | {v['top1']:.3f} | {v['MedErr']:.1f} | {v['Acc_pi6']:.3f} | {v['t_err']:.3f} | {v['n']} |"
        )
        for c, m in (v.get("per_category") or {}).items() if k == "full" else ():
            lines.append(
                f"| full [{c}] | {m['top1']:.3f} | {m['MedErr']:.1f} | {m['Acc_pi6']:.3f} | {m['t_err']:.3f} | {m['n']} |"
            )
    lines.append("")
    lines.append(f"Wall time {time.perf_counter() - t0:.0f} s.")
    print("\n".join(lines), flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage1", action="store_true")
    ap.add_argument("--meshes", default="")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--grid", type=int, nargs="+", default=[1, 4, 7, 9])
    ap.add_argument("--embed-dim", type=int, default=64)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval-rotations", type=int, default=8)
    ap.add_argument("--images", default="")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if not args.stage1 and not args.images:
        ap.error("give --stage1 and/or --images CHECKPOINT")
    if args.images:
        run_images(args)
    if args.stage1:
        run_stage1(args)


if __name__ == "__main__":
    main()
