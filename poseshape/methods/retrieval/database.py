"""The retrieval database: CAD models with their stage-I shape embeddings, and the exact index.

:class:`ModelBank` (an ``nn.Module`` of buffers, ``weights_only``-safe) holds ``M`` models:
``verts (M, Vmax, 3)`` float32 object-frame vertices (unit cube, zero-padded), ``faces (M,
Fmax, 3)`` int64, ``num_verts (M,)``, ``num_faces (M,)``, ``voxels (M, 32, 32, 32)`` uint8
occupancy, ``names (M, L)`` uint8 UTF-8 ``"category/model_id"``, ``embeddings (M, E)`` the
mean shape embeddings of each model under ``index_rotations`` rotations (:func:`embed_models`) (``(M, 0)`` before the ``index`` stage), and
``fingerprint (64,)`` uint8, the hex SHA-256 of the embedding network that computed them.

A database *file* (``poseshape retrieval index --out DB``) is a ``torch.save`` dict of the
same buffers plus ``format``, ``fingerprint`` (str), ``count`` and ``skipped`` (list of
``[path, reason]``); it loads with ``weights_only=True``. A database whose fingerprint
differs from the predictor's embedding network is refused on query (its embeddings live in
another space).

:class:`ExactIndex` is a brute-force nearest-neighbour search in torch (squared L2 by a
matrix product, chunked over the database), exact by construction.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from poseshape.core.errors import FileFormatError, PoseshapeError, ShapeError
from poseshape.core.io import atomic_save
from poseshape.data.collections import MeshCollection
from poseshape.methods.retrieval.model import rotate_grids
from poseshape.shapes.meshes import Mesh
from poseshape.shapes.voxels import voxelize

__all__ = [
    "DB_FORMAT",
    "ExactIndex",
    "ModelBank",
    "collection_buffers",
    "embed_models",
    "load_database",
    "network_fingerprint",
    "open_collection",
    "save_database",
]

DB_FORMAT = "poseshape-retrieval-db/1"


def network_fingerprint(module: nn.Module) -> str:
    """Hex SHA-256 over the names, shapes and float32 bytes of ``module``'s state dict."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def embed_models(embed: nn.Module, voxels: torch.Tensor, rotations: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Database embeddings ``(M, E)``: the mean shape embedding of each model's grid
    ``voxels (M, Q, Q, Q)`` under ``rotations (R, 4)`` (re-binarised at 0.5), with ``embed``
    in eval mode. The mean over rotations makes the entry a pose-independent prototype (CE
    alone does not make single embeddings pose-invariant)."""
    was = embed.training
    embed.eval()
    dev = next(embed.parameters()).device
    rot = rotations.to(dev, torch.float32)
    out = []
    for i in range(len(voxels)):
        g = voxels[i].to(dev).float()[None, None].expand(len(rot), 1, *voxels.shape[1:])
        grids = (rotate_grids(g, rot) > 0.5).float()
        z = torch.cat([embed(grids[k : k + batch])["shape"] for k in range(0, len(rot), batch)])
        out.append(z.mean(0))
    embed.train(was)
    return torch.stack(out)


def _encode_names(names: list[str]) -> torch.Tensor:
    raw = [n.encode("utf-8") for n in names]
    L = max((len(b) for b in raw), default=0)
    out = torch.zeros(len(raw), L, dtype=torch.uint8)
    for i, b in enumerate(raw):
        out[i, : len(b)] = torch.tensor(list(b), dtype=torch.uint8)
    return out


def _decode_name(row: torch.Tensor) -> str:
    return bytes(int(x) for x in row.tolist() if x).decode("utf-8")


def open_collection(meshes: str, categories=None, per_category: int = 4, seed: int = 0) -> MeshCollection:
    """``"procedural"`` (``per_category`` shapes of each of ``categories``) or a mesh folder."""
    if meshes == "procedural":
        return MeshCollection.procedural(categories or None, per_category=per_category, seed=seed)
    if not Path(meshes).is_dir():
        raise FileFormatError(f"retrieval: mesh folder {meshes} does not exist")
    return MeshCollection(meshes, categories=categories or None)


def collection_buffers(coll: MeshCollection, voxel_res: int = 32) -> tuple[dict[str, torch.Tensor], list]:
    """Load, voxelise and pack every model of ``coll``; files that fail are skipped.

    Each broken file is named in a ``UserWarning`` and listed in the returned
    ``skipped`` ``[(path, reason), ...]``. Raises :class:`PoseshapeError` when no model is left.
    """
    meshes, names = [], []
    n0 = len(coll.skipped)
    empty: list = []
    for cat, mid, mesh in coll:  # a file that fails to parse is warned about by name and skipped
        if mesh.faces.shape[0] == 0:
            empty.append((f"{cat}/{mid}", "no faces"))
            warnings.warn(f"retrieval index: skipped {cat}/{mid}: the mesh has no faces", UserWarning, stacklevel=2)
            continue
        meshes.append(mesh)
        names.append(f"{cat}/{mid}")
    skipped = [(str(p), str(r)) for p, r in coll.skipped[n0:]] + empty
    if not meshes:
        where = coll.root if coll.root is not None else "the procedural collection"
        raise PoseshapeError(
            f"retrieval: no usable mesh in {where} ({len(skipped)} skipped); the database would be empty"
        )
    vox = torch.stack([voxelize(m, voxel_res) for m in meshes])
    return ModelBank.pack(meshes, vox, names), skipped


class ModelBank(nn.Module):
    """The database models as buffers (module docstring). Empty until :meth:`set`."""

    _BUFFERS = ("verts", "faces", "num_verts", "num_faces", "voxels", "names", "embeddings", "fingerprint")

    def __init__(self):
        super().__init__()
        self.register_buffer("verts", torch.zeros(0, 0, 3))
        self.register_buffer("faces", torch.zeros(0, 0, 3, dtype=torch.int64))
        self.register_buffer("num_verts", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("num_faces", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("voxels", torch.zeros(0, 0, 0, 0, dtype=torch.uint8))
        self.register_buffer("names", torch.zeros(0, 0, dtype=torch.uint8))
        self.register_buffer("embeddings", torch.zeros(0, 0))
        self.register_buffer("fingerprint", torch.zeros(0, dtype=torch.uint8))

    def __len__(self) -> int:
        return int(self.num_verts.shape[0])

    @property
    def empty(self) -> bool:
        return len(self) == 0

    @property
    def indexed(self) -> bool:
        """Whether the embeddings have been computed (the ``index`` stage ran)."""
        return len(self) > 0 and self.embeddings.shape[0] == len(self) and self.embeddings.shape[1] > 0

    @property
    def fingerprint_hex(self) -> str:
        return bytes(int(x) for x in self.fingerprint.tolist()).decode("ascii")

    @staticmethod
    def pack(meshes: list[Mesh], voxels: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        """Buffers for ``M`` meshes, their ``voxels (M, Q, Q, Q)`` and names (no embeddings yet)."""
        M = len(meshes)
        if not (M == len(names) == voxels.shape[0]):
            raise ShapeError(f"ModelBank.pack: {M} meshes, {len(names)} names and {voxels.shape[0]} grids must agree")
        V = max((m.verts.shape[0] for m in meshes), default=0)
        F = max((m.faces.shape[0] for m in meshes), default=0)
        verts = torch.zeros(M, V, 3)
        faces = torch.zeros(M, F, 3, dtype=torch.int64)
        for i, m in enumerate(meshes):
            verts[i, : m.verts.shape[0]] = m.verts.detach().float().cpu()
            faces[i, : m.faces.shape[0]] = m.faces.cpu()
        return {
            "verts": verts,
            "faces": faces,
            "num_verts": torch.tensor([m.verts.shape[0] for m in meshes], dtype=torch.int64),
            "num_faces": torch.tensor([m.faces.shape[0] for m in meshes], dtype=torch.int64),
            "voxels": (voxels > 0.5).to(torch.uint8).cpu(),
            "names": _encode_names(names),
            "embeddings": torch.zeros(M, 0),
            "fingerprint": torch.zeros(0, dtype=torch.uint8),
        }

    @torch.no_grad()
    def set(self, **buffers: torch.Tensor) -> None:
        """Replace every buffer (e.g. the output of :meth:`pack`)."""
        missing = [b for b in self._BUFFERS if b not in buffers]
        if missing:
            raise ShapeError(f"ModelBank.set: missing buffers {missing}")
        dev = self.verts.device
        for name in self._BUFFERS:
            setattr(self, name, torch.as_tensor(buffers[name]).to(dev).clone())

    @torch.no_grad()
    def set_embeddings(self, embeddings: torch.Tensor, fingerprint: str) -> None:
        """Store ``(M, E)`` shape embeddings computed by the network of ``fingerprint``."""
        if embeddings.dim() != 2 or embeddings.shape[0] != len(self):
            raise ShapeError(f"embeddings: expected ({len(self)}, E), got {tuple(embeddings.shape)}")
        self.embeddings = embeddings.detach().float().to(self.verts.device).clone()
        self.fingerprint = torch.tensor(list(fingerprint.encode("ascii")), dtype=torch.uint8, device=self.verts.device)

    def buffers_dict(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k).detach().cpu() for k in self._BUFFERS}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self._BUFFERS:  # data-dependent sizes: resize before the copy
            src = state_dict.get(prefix + name)
            if isinstance(src, torch.Tensor):
                cur = getattr(self, name)
                setattr(self, name, torch.empty(src.shape, dtype=cur.dtype, device=cur.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def name(self, i: int) -> str:
        """``"category/model_id"`` of model ``i``."""
        return _decode_name(self.names[i])

    def mesh(self, i: int) -> Mesh:
        """Model ``i``'s object-frame mesh (CPU float32)."""
        nv, nf = int(self.num_verts[i]), int(self.num_faces[i])
        return Mesh(self.verts[i, :nv].detach().cpu().clone(), self.faces[i, :nf].detach().cpu().clone())

    def voxel_grid(self, i: int) -> torch.Tensor:
        """Model ``i``'s ``(Q, Q, Q)`` float32 occupancy."""
        return self.voxels[i].float()


def save_database(path: str | os.PathLike, bank: ModelBank, skipped: list) -> Path:
    """Write ``bank`` (indexed) to ``path`` atomically (see the module docstring)."""
    if bank.empty or not bank.indexed:
        raise PoseshapeError("retrieval: refusing to write an empty or unindexed database")
    payload = bank.buffers_dict()
    payload.update(
        format=DB_FORMAT,
        fingerprint_str=bank.fingerprint_hex,
        count=len(bank),
        skipped=[[str(p), str(r)] for p, r in skipped],
    )
    return atomic_save(path, lambda f: torch.save(payload, f))


def load_database(path: str | os.PathLike) -> tuple[ModelBank, dict]:
    """Read a database file: ``(bank, info)`` with ``info`` = ``{"count", "skipped", "fingerprint"}``.

    Raises:
        FileFormatError: missing, not a database, or empty.
    """
    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"{p}: no such database file (build one with `poseshape retrieval index`)")
    try:
        d = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (any unpickling failure means "not a database")
        raise FileFormatError(f"{p}: not a retrieval database ({type(e).__name__}: {e})") from e
    if not isinstance(d, dict) or d.get("format") != DB_FORMAT:
        raise FileFormatError(
            f"{p}: not a retrieval database (format {d.get('format') if isinstance(d, dict) else None!r})"
        )
    bank = ModelBank()
    bank.set(**{k: d[k] for k in ModelBank._BUFFERS})
    if bank.empty:
        raise FileFormatError(f"{p}: the database is empty")
    return bank, {"count": int(d["count"]), "skipped": list(d["skipped"]), "fingerprint": str(d["fingerprint_str"])}


class ExactIndex:
    """Exact nearest neighbours of query embeddings among ``(M, E)`` database embeddings.

    ``search(queries (B, E), k)`` -> ``(distances (B, k), indices (B, k))``: Euclidean
    distances (ascending) and int64 row indices. Squared distances come from
    ``|q|^2 - 2 q.x + |x|^2`` in float32 over chunks of ``chunk`` database rows, clamped
    at 0 (the order among exactly equal distances is unspecified). Memory per query: ``chunk`` floats plus the top-k.
    """

    def __init__(self, embeddings: torch.Tensor, chunk: int = 65536):
        if embeddings.dim() != 2 or embeddings.shape[0] == 0 or embeddings.shape[1] == 0:
            raise PoseshapeError(
                f"retrieval: the database has no embeddings (shape {tuple(embeddings.shape)}); it is empty"
            )
        self.x = embeddings.float()
        self.sq = (self.x * self.x).sum(1)
        self.chunk = int(chunk)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def search(self, queries: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        if queries.dim() != 2 or queries.shape[1] != self.x.shape[1]:
            raise ShapeError(f"queries: expected (B, {self.x.shape[1]}), got {tuple(queries.shape)}")
        k = min(int(k), len(self))
        q = queries.to(self.x.device, torch.float32)
        qs = (q * q).sum(1, keepdim=True)
        best_d = best_i = None
        for s in range(0, len(self), self.chunk):
            x = self.x[s : s + self.chunk]
            d2 = (qs - 2.0 * q @ x.T + self.sq[s : s + self.chunk][None]).clamp_min(0)
            kk = min(k, d2.shape[1])
            d, i = d2.topk(kk, dim=1, largest=False, sorted=True)
            i = i + s
            if best_d is None:
                best_d, best_i = d, i
            else:
                cd, ci = torch.cat([best_d, d], 1), torch.cat([best_i, i], 1)
                o = cd.sort(dim=1, stable=True).indices[:, :k]
                best_d, best_i = cd.gather(1, o), ci.gather(1, o)
        return best_d.sqrt(), best_i
