"""Retrieval index scale test (paper 004 / issue 17): time and memory per query of the exact
torch index (:class:`poseshape.methods.retrieval.database.ExactIndex`) at 73 (PASCAL3D+ CAD),
704 (ObjectNet3D CAD) and a synthetic 100k entries.

The entries are random 512-d embeddings (the index cost depends only on the count and the
dimension, not on what the vectors are). Time: median over ``--repeats`` searches after a
warm-up, for one query and for a batch of 32, top-5. Memory: the database itself (M x E
float32) and the working set of one search (one chunk of distances per query), computed from
the shapes; the process' peak RSS growth is also printed. FAISS is not installed in this
environment, so it is not compared.

    flock /tmp/poseshape-cpu.lock env OMP_NUM_THREADS=2 python bench/retrieval_index.py
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from poseshape.methods.retrieval.database import ExactIndex


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench(m: int, dim: int, repeats: int, chunk: int) -> dict:
    g = torch.Generator().manual_seed(m)
    x = torch.randn(m, dim, generator=g)
    index = ExactIndex(x, chunk=chunk)
    out = {"entries": m, "db_mb": m * dim * 4 / 2**20}
    for b in (1, 32):
        q = torch.randn(b, dim, generator=g)
        index.search(q, 5)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            index.search(q, 5)
            ts.append(time.perf_counter() - t0)
        ts.sort()
        out[f"ms_per_query_b{b}"] = 1000 * ts[len(ts) // 2] / b
    out["work_kb_per_query"] = min(m, chunk) * 4 * 2 / 1024  # distances + topk scratch
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="73,704,100000")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=65536)
    args = ap.parse_args()
    t0 = time.perf_counter()
    rss0 = _rss_mb()
    print("| entries | database (MiB) | ms / query (1 query) | ms / query (batch 32) | search scratch / query (KiB) |")
    print("|---:|---:|---:|---:|---:|")
    for m in (int(s) for s in args.sizes.split(",")):
        r = bench(m, args.dim, args.repeats, args.chunk)
        print(
            f"| {r['entries']} | {r['db_mb']:.2f} | {r['ms_per_query_b1']:.3f} | {r['ms_per_query_b32']:.3f} "
            f"| {r['work_kb_per_query']:.0f} |"
        )
    print(
        f"\npeak RSS growth {_rss_mb() - rss0:.0f} MiB; torch threads {torch.get_num_threads()}; "
        f"wall {time.perf_counter() - t0:.1f} s"
    )


if __name__ == "__main__":
    main()
