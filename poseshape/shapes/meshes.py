"""Triangle meshes: a single ``Mesh`` and a batch of meshes of different sizes.

Also: ``Meshes`` (list / packed / padded batches), :func:`icosphere`, uniform Laplacian and
SoftRas's Laplacian smoothing loss, face areas / normals, vertex normals, edges,
area-weighted surface sampling, OBJ/OFF/PLY IO via trimesh with validation
(:class:`poseshape.core.errors.FileFormatError` naming the file), and normalisation of native
CAD frames into the object frame (+Y up, front +Z, unit cube) with the transform kept so
keypoints can follow (:func:`normalize_mesh`, :func:`apply_transform`).
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from poseshape.core.checks import check_finite, check_shape
from poseshape.core.errors import FileFormatError, PoseshapeWarning, ShapeError
from poseshape.core.io import atomic_write
from poseshape.geometry.conventions import source_rotation


@dataclass
class Mesh:
    """One triangle mesh.

    Attributes:
        verts: ``(V, 3)`` float vertex positions (object frame unless stated otherwise).
        faces: ``(F, 3)`` int64 vertex indices, counter-clockwise seen from outside.
    """

    verts: torch.Tensor
    faces: torch.Tensor

    def __post_init__(self) -> None:
        self.verts = torch.as_tensor(self.verts)
        if not self.verts.is_floating_point():
            self.verts = self.verts.to(torch.get_default_dtype())
        self.faces = torch.as_tensor(self.faces).to(torch.int64)
        check_shape(self.verts, "Mesh.verts", (None, 3), batch=False)
        check_shape(self.faces, "Mesh.faces", (None, 3), batch=False)
        check_finite(self.verts, "Mesh.verts")
        if self.faces.numel() and (self.faces.min() < 0 or self.faces.max() >= self.verts.shape[0]):
            raise ShapeError(
                f"Mesh.faces: indices must lie in [0, {self.verts.shape[0]}), got range "
                f"[{int(self.faces.min())}, {int(self.faces.max())}]"
            )

    @property
    def num_verts(self) -> int:
        return int(self.verts.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def to(self, *args, **kwargs) -> Mesh:
        """Move/cast the vertices (faces stay int64) like ``Tensor.to``."""
        return Mesh(self.verts.to(*args, **kwargs), self.faces.to(self.verts.to(*args, **kwargs).device))

    def clone(self) -> Mesh:
        return Mesh(self.verts.clone(), self.faces.clone())


# =========================================================================== batches


class Meshes:
    """A batch of meshes of different sizes, in list, packed and padded forms.

    * list form: :meth:`to_list`, :meth:`verts_list`, :meth:`faces_list`.
    * packed form: ``verts_packed (sumV, 3)``, ``faces_packed (sumF, 3)`` (indices into
      the packed vertices, i.e. offset by :attr:`verts_offsets`), ``verts_to_mesh
      (sumV,)`` and ``faces_to_mesh (sumF,)`` mesh indices, ``verts_offsets (B,)`` and
      ``faces_offsets (B,)`` (first row of each mesh).
    * padded form: ``verts_padded (B, Vmax, 3)`` (padding = ``pad_value``) and
      ``faces_padded (B, Fmax, 3)`` (per-mesh indices, padding = -1), plus
      ``verts_mask (B, Vmax)`` / ``faces_mask (B, Fmax)`` booleans.

    The packed tensors are built once and shared: gradients flow from every form back to
    the vertex tensors given to :meth:`from_list`.
    """

    def __init__(self, meshes: list[Mesh]) -> None:
        if len(meshes) == 0:
            raise ShapeError("Meshes: expected at least one mesh")
        for i, m in enumerate(meshes):
            if not isinstance(m, Mesh):
                raise ShapeError(f"Meshes: item {i} is a {type(m).__name__}, expected Mesh")
        device = meshes[0].verts.device
        self._meshes = list(meshes)
        self.num_verts_per_mesh = torch.tensor([m.num_verts for m in meshes], device=device)
        self.num_faces_per_mesh = torch.tensor([m.num_faces for m in meshes], device=device)
        self.verts_offsets = torch.cumsum(self.num_verts_per_mesh, 0) - self.num_verts_per_mesh
        self.faces_offsets = torch.cumsum(self.num_faces_per_mesh, 0) - self.num_faces_per_mesh
        dtype = (
            torch.promote_types(meshes[0].verts.dtype, torch.float32)
            if len({m.verts.dtype for m in meshes}) > 1
            else meshes[0].verts.dtype
        )
        self.verts_packed = torch.cat([m.verts.to(device=device, dtype=dtype) for m in meshes], 0)
        self.faces_packed = torch.cat(
            [m.faces.to(device) + int(o) for m, o in zip(meshes, self.verts_offsets.tolist())], 0
        )
        idx = torch.arange(len(meshes), device=device)
        self.verts_to_mesh = torch.repeat_interleave(idx, self.num_verts_per_mesh)
        self.faces_to_mesh = torch.repeat_interleave(idx, self.num_faces_per_mesh)

    @classmethod
    def from_list(cls, meshes: list[Mesh]) -> Meshes:
        return cls(meshes)

    @classmethod
    def from_padded(cls, verts: torch.Tensor, faces: torch.Tensor) -> Meshes:
        """Batch of meshes sharing one topology: ``verts (B, V, 3)``, ``faces (F, 3)``."""
        check_shape(verts, "verts", (None, None, 3), batch=False)
        return cls([Mesh(v, faces) for v in verts])

    def __len__(self) -> int:
        return len(self._meshes)

    def __getitem__(self, i: int) -> Mesh:
        return self._meshes[i]

    def to_list(self) -> list[Mesh]:
        return list(self._meshes)

    def verts_list(self) -> list[torch.Tensor]:
        return [m.verts for m in self._meshes]

    def faces_list(self) -> list[torch.Tensor]:
        return [m.faces for m in self._meshes]

    def verts_padded(self, pad_value: float = 0.0) -> torch.Tensor:
        """``(B, Vmax, 3)`` vertices, rows past each mesh's count filled with ``pad_value``."""
        return torch.nn.utils.rnn.pad_sequence(self.verts_list(), batch_first=True, padding_value=pad_value)

    def faces_padded(self) -> torch.Tensor:
        """``(B, Fmax, 3)`` int64 per-mesh face indices, padding rows are -1."""
        return torch.nn.utils.rnn.pad_sequence(self.faces_list(), batch_first=True, padding_value=-1)

    def verts_mask(self) -> torch.Tensor:
        n = int(self.num_verts_per_mesh.max())
        return torch.arange(n, device=self.verts_packed.device)[None] < self.num_verts_per_mesh[:, None]

    def faces_mask(self) -> torch.Tensor:
        n = int(self.num_faces_per_mesh.max())
        return torch.arange(n, device=self.verts_packed.device)[None] < self.num_faces_per_mesh[:, None]

    def update_packed(self, verts_packed: torch.Tensor) -> Meshes:
        """New batch with the same faces and vertices taken from ``verts_packed (sumV, 3)``."""
        check_shape(verts_packed, "verts_packed", tuple(self.verts_packed.shape), batch=False)
        parts = torch.split(verts_packed, self.num_verts_per_mesh.tolist(), 0)
        return Meshes([Mesh(v, m.faces) for v, m in zip(parts, self._meshes)])

    def to(self, *args, **kwargs) -> Meshes:
        return Meshes([m.to(*args, **kwargs) for m in self._meshes])


# =========================================================================== construction


def icosphere(level: int = 3, radius: float = 0.5, dtype: torch.dtype | None = None, device=None) -> Mesh:
    """Geodesic sphere from a subdivided icosahedron (via ``trimesh.creation.icosphere``).

    Args:
        level: subdivisions; level ``k`` has ``10 * 4**k + 2`` vertices and ``20 * 4**k``
            faces (0 -> 12 / 20, 3 -> 642 / 1280).
        radius: sphere radius in object units (0.5 fits the unit cube).

    Returns:
        A watertight :class:`Mesh` centred at the origin, faces counter-clockwise seen from
        outside (outward normals).
    """
    import trimesh

    if int(level) != level or level < 0:
        raise ShapeError(f"icosphere: level must be a non-negative integer, got {level!r}")
    m = trimesh.creation.icosphere(subdivisions=int(level), radius=float(radius))
    dtype = dtype or torch.get_default_dtype()
    return Mesh(torch.as_tensor(m.vertices, dtype=dtype, device=device), torch.as_tensor(m.faces, device=device))


# =========================================================================== geometry


def _check_vf(verts: torch.Tensor, faces: torch.Tensor) -> None:
    check_shape(verts, "verts", (None, 3))
    check_shape(faces, "faces", (None, 3), batch=False)
    check_finite(verts, "verts")
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= verts.shape[-2]):
        raise ShapeError(f"faces: indices must lie in [0, {verts.shape[-2]})")


def _face_verts(verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    f = faces.to(verts.device)
    return verts[..., f[:, 0], :], verts[..., f[:, 1], :], verts[..., f[:, 2], :]


def face_areas(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Triangle areas: ``verts (..., V, 3)``, ``faces (F, 3)`` -> ``(..., F)``."""
    _check_vf(verts, faces)
    a, b, c = _face_verts(verts, faces)
    return 0.5 * torch.linalg.cross(b - a, c - a).norm(dim=-1)


def face_normals(verts: torch.Tensor, faces: torch.Tensor, unit: bool = True, eps: float = 1e-12) -> torch.Tensor:
    """Face normals ``(..., F, 3)`` from counter-clockwise faces (right-hand rule).

    With ``unit=False`` the normals have length twice the face area.
    """
    _check_vf(verts, faces)
    a, b, c = _face_verts(verts, faces)
    n = torch.linalg.cross(b - a, c - a)
    return n / n.norm(dim=-1, keepdim=True).clamp(min=eps) if unit else n


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit vertex normals ``(..., V, 3)``: area-weighted mean of the incident face normals."""
    n = face_normals(verts, faces, unit=False)
    out = torch.zeros_like(verts)
    f = faces.to(verts.device)
    for k in range(3):
        out = out.index_add(-2, f[:, k], n)
    return out / out.norm(dim=-1, keepdim=True).clamp(min=eps)


def edges(faces: torch.Tensor) -> torch.Tensor:
    """Unique undirected edges ``(E, 2)`` int64 (``i < j``, sorted) of faces ``(F, 3)``."""
    check_shape(faces, "faces", (None, 3), batch=False)
    faces = faces.to(torch.int64)
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    e = torch.sort(e, dim=1).values
    return torch.unique(e, dim=0)


def uniform_laplacian(faces: torch.Tensor, num_verts: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Sparse uniform Laplacian ``L = I - D^-1 A`` as a ``(V, V)`` COO tensor.

    ``A`` is the vertex adjacency of the mesh edges and ``D`` the degree; ``(L @ x)_i =
    x_i - mean_{j in N(i)} x_j``. Isolated vertices get a zero row.
    """
    e = edges(faces)
    dtype = dtype or torch.get_default_dtype()
    i = torch.cat([e[:, 0], e[:, 1]])
    j = torch.cat([e[:, 1], e[:, 0]])
    deg = torch.zeros(num_verts, dtype=dtype, device=faces.device).index_add(0, i, torch.ones_like(i, dtype=dtype))
    w = -1.0 / deg[i]
    has = deg > 0
    diag = torch.arange(num_verts, device=faces.device)[has]
    idx = torch.stack([torch.cat([i, diag]), torch.cat([j, diag])])
    val = torch.cat([w, torch.ones(len(diag), dtype=dtype, device=faces.device)])
    return torch.sparse_coo_tensor(idx, val, (num_verts, num_verts), check_invariants=False).coalesce()


def laplacian(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Uniform Laplacian coordinates ``x_i - mean_{j in N(i)} x_j``: ``(..., V, 3)`` -> ``(..., V, 3)``.

    Edge based (no sparse matrix), batched over leading dims, differentiable in ``verts``.
    """
    _check_vf(verts, faces)
    e = edges(faces).to(verts.device)
    i = torch.cat([e[:, 0], e[:, 1]])
    j = torch.cat([e[:, 1], e[:, 0]])
    V = verts.shape[-2]
    deg = torch.zeros(V, dtype=verts.dtype, device=verts.device).index_add(0, i, torch.ones_like(i, dtype=verts.dtype))
    nsum = torch.zeros_like(verts).index_add(-2, i, verts[..., j, :])
    mean = nsum / deg.clamp(min=1).unsqueeze(-1)
    return torch.where((deg > 0).unsqueeze(-1), verts - mean, torch.zeros_like(verts))


def laplacian_smoothing_loss(verts: torch.Tensor, faces: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Laplacian regulariser of SoftRas (Liu et al. 2019), used as paper 002's ``L_Geo``.

    ``loss_b = sum_i || x_i - mean_{j in N(i)} x_j ||^2`` (summed over vertices and xyz,
    SoftRas's ``LaplacianLoss``), then ``reduction`` over the batch: ``"mean"`` (SoftRas's
    ``average=True``: sum / B), ``"sum"`` or ``"none"`` (returns ``(B,)``).

    Args:
        verts: ``(B, V, 3)`` or ``(V, 3)`` vertices (any leading dims are the batch).
        faces: ``(F, 3)`` shared topology.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ShapeError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
    per = laplacian(verts, faces).pow(2).sum((-1, -2))
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" else per.mean()


def sample_points(
    mesh: Mesh,
    n: int,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    return_normals: bool = False,
):
    """Area-weighted uniform samples on the surface of ``mesh``.

    Faces are chosen with probability proportional to their area and a point is drawn
    uniformly in each (``sqrt`` barycentric trick), so samples are differentiable in
    ``mesh.verts`` (the face choice is not).

    Args:
        mesh: the mesh (``V, 3`` / ``F, 3``); it must have positive total area.
        n: number of samples.
        generator / seed: randomness (``seed`` builds a CPU generator).

    Returns:
        ``points (n, 3)``, and ``normals (n, 3)`` (unit face normals) when
        ``return_normals``.
    """
    if seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    verts, faces = mesh.verts, mesh.faces
    areas = face_areas(verts, faces).detach()
    total = areas.sum()
    if faces.shape[0] == 0 or not total > 0:
        raise ShapeError("sample_points: the mesh has no faces with positive area")
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    fidx = torch.multinomial(areas.to(gen_dev, torch.float64), int(n), replacement=True, generator=generator)
    u = torch.rand(int(n), 2, generator=generator, device=gen_dev, dtype=torch.float64)
    fidx, u = fidx.to(verts.device), u.to(device=verts.device, dtype=verts.dtype)
    su = u[:, :1].sqrt()
    w0, w1, w2 = 1 - su, su * (1 - u[:, 1:]), su * u[:, 1:]
    f = faces[fidx]
    pts = w0 * verts[f[:, 0]] + w1 * verts[f[:, 1]] + w2 * verts[f[:, 2]]
    if return_normals:
        return pts, face_normals(verts, faces)[fidx]
    return pts


# =========================================================================== normalisation


@dataclass
class MeshTransform:
    """Similarity taking native coordinates to the normalised object frame.

    ``p_obj = scale * (rotation @ p_native - center)``; see :func:`apply_transform`.

    Attributes:
        rotation: ``(3, 3)`` native -> object frame rotation.
        center: ``(3,)`` bounding-box centre after rotation (object units before scaling).
        scale: 1 / largest bounding-box side.
    """

    rotation: torch.Tensor
    center: torch.Tensor
    scale: float


def apply_transform(points: torch.Tensor, transform: MeshTransform, inverse: bool = False) -> torch.Tensor:
    """Apply a :class:`MeshTransform` (or its inverse) to ``points (..., 3)``."""
    check_shape(points, "points", (3,))
    R = transform.rotation.to(points)
    c = transform.center.to(points)
    if inverse:
        return (points / transform.scale + c) @ R
    return transform.scale * (points @ R.T - c)


def normalize_mesh(mesh: Mesh, source: str = "identity", return_transform: bool = False):
    """Rotate ``mesh`` from ``source``'s native frame into the object frame, centre its
    bounding box at the origin and scale its largest side to 1.

    Args:
        mesh: native-frame mesh.
        source: ``"identity"``, ``"pascal3d"``, ``"objectnet3d"``, ``"shapenet"`` or
            ``"yup_xfront"`` (see
            :data:`poseshape.geometry.conventions.SOURCE_TO_OBJECT`).
        return_transform: also return the :class:`MeshTransform` (apply it to keypoints
            with :func:`apply_transform`).

    Returns:
        The normalised :class:`Mesh` (fits ``[-0.5, 0.5]^3``), and the transform if asked.
    """
    try:
        R = torch.as_tensor(source_rotation(source), dtype=mesh.verts.dtype, device=mesh.verts.device)
    except ValueError as exc:
        raise ShapeError(f"normalize_mesh: {exc}") from None
    if mesh.num_verts == 0:
        raise ShapeError("normalize_mesh: the mesh has no vertices")
    v = mesh.verts @ R.T
    if mesh.num_faces:
        mask = torch.zeros(mesh.num_verts, dtype=torch.bool, device=v.device)
        mask[mesh.faces.reshape(-1)] = True
        used = v[mask]
    else:
        used = v
    lo, hi = used.min(0).values, used.max(0).values
    center = (lo + hi) / 2
    side = float((hi - lo).max())
    if not side > 0:
        raise ShapeError("normalize_mesh: the mesh has a zero-size bounding box")
    tr = MeshTransform(R, center.detach().clone(), 1.0 / side)
    out = Mesh((v - center) / side, mesh.faces)
    return (out, tr) if return_transform else out


# =========================================================================== IO

_MESH_EXTS = {".obj": "obj", ".off": "off", ".ply": "ply"}


def _read_off_triangles(path):
    """Fast numpy reader for all-triangle OFF files.

    Returns ``(verts (V, 3) float64, faces (F, 3) int64)``, or ``None`` when the file uses
    features this reader leaves to trimesh (polygons, colours). Raises ``FileFormatError``
    for a bad header or a truncated body.
    """
    with open(path, "rb") as fh:
        data = fh.read()
    if b"#" in data:
        data = b"\n".join(line.split(b"#", 1)[0] for line in data.splitlines())
    tok = data.split()
    if not tok or not tok[0].upper().startswith(b"OFF"):
        raise FileFormatError(f"{path}: missing OFF header")
    head = tok[0][3:]
    tok = ([head] if head else []) + tok[1:]
    try:
        nv, nf = int(tok[0]), int(tok[1])
    except (IndexError, ValueError):
        raise FileFormatError(f"{path}: bad OFF header counts") from None
    if nv < 0 or nf < 0:
        raise FileFormatError(f"{path}: bad OFF header counts {nv} {nf}")
    body = tok[3:]
    need = 3 * nv + 4 * nf
    if len(body) < need:
        raise FileFormatError(
            f"{path}: truncated OFF file (header announces {nv} vertices / {nf} faces, "
            f"found {len(body)} of {need} numbers)"
        )
    if len(body) != need:
        return None
    try:
        verts = np.array(body[: 3 * nv], dtype=np.float64).reshape(nv, 3)
        f = np.array(body[3 * nv :], dtype=np.int64).reshape(nf, 4)
    except ValueError as exc:
        raise FileFormatError(f"{path}: corrupt OFF data ({exc})") from None
    if nf and not (f[:, 0] == 3).all():
        return None
    return verts, f[:, 1:]


_OBJ_REF = re.compile(r"^-?\d+(/-?\d*)?(/-?\d+)?$")
_OBJ_MIN_FIELDS = {"v": 3, "vn": 3, "vt": 1, "f": 3}


def _decode_obj(data: bytes) -> str:
    """OBJ bytes as text: UTF-8, else Latin-1 (any byte decodes; OBJ data itself is ASCII, only
    comments and names carry other characters)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _obj_cut_line(text: str) -> str | None:
    """The last data line of an OBJ text when it is incomplete (a ``v`` / ``vn`` / ``vt`` with too few
    numbers, an ``f`` with fewer than 3 references or a cut one, e.g. ``4/5/``), else None. A file
    cut exactly at a line end cannot be told from a complete one (OBJ declares no counts)."""
    for line in reversed(text.splitlines()):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        key, rest = fields[0], fields[1:]
        need = _OBJ_MIN_FIELDS.get(key)
        if need is None:
            return None
        if len(rest) < need:
            return line.strip()
        if key == "f":
            return None if all(_OBJ_REF.match(r) for r in rest) else line.strip()
        try:
            [float(x) for x in rest]
        except ValueError:
            return line.strip()
        return None
    return None


def _ply_declared_faces(data: bytes) -> int | None:
    """The face count an ASCII PLY header declares (None for binary PLY, which trimesh already
    checks, or without a face element)."""
    head = data[:4096].split(b"end_header", 1)[0].decode("latin-1")
    if "format ascii" not in head:
        return None
    m = re.search(r"^element\s+face\s+(\d+)", head, re.MULTILINE)
    return int(m.group(1)) if m else None


def load_mesh(path, source: str | None = None, normalize: bool = False, return_transform: bool = False, dtype=None):
    """Read an OBJ, OFF or PLY triangle mesh with trimesh.

    Multi-part OBJ files (scenes) are concatenated into one mesh (``force='mesh'``);
    trimesh's vertex merging is off, so vertex order follows the file.

    Args:
        path: the file.
        source: when given, the mesh is rotated from that source's native frame into the
            object frame (``"pascal3d"``, ``"objectnet3d"``, ``"shapenet"``, ``"identity"``).
        normalize: also centre and scale to the unit cube (:func:`normalize_mesh`).
        return_transform: with ``normalize``, also return the :class:`MeshTransform`.
        dtype: vertex dtype (default: torch's default dtype).

    Raises:
        FileFormatError: missing file, unknown extension, corrupt or truncated data, out of
            range face indices, non-finite vertices, or a mesh without faces; the message
            names the file.

    Warns:
        PoseshapeWarning: a file that looks truncated but still holds faces (an OBJ whose last
            line is cut, an ASCII PLY with fewer faces than its header declares).

    OBJ text is read as UTF-8, or Latin-1 when it is not valid UTF-8 (comments and names in
    other encodings are fine).
    """
    import trimesh

    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"{p}: no such mesh file")
    ext = p.suffix.lower()
    if ext not in _MESH_EXTS:
        raise FileFormatError(f"{p}: unsupported mesh format {ext!r} (expected .obj, .off or .ply)")
    fast = _read_off_triangles(p) if ext == ".off" else None
    if fast is not None:
        verts, faces = fast
    else:
        cut = declared = None
        try:
            if ext == ".obj":  # decoded here: trimesh needs charset_normalizer for non-UTF-8 comments
                text = _decode_obj(p.read_bytes())
                cut = _obj_cut_line(text)
                src = io.BytesIO(text.encode("utf-8"))
                resolver = trimesh.resolvers.FilePathResolver(str(p))
                tm = trimesh.load(src, file_type="obj", force="mesh", process=False, resolver=resolver)
            else:
                if ext == ".ply":
                    with open(p, "rb") as fh:
                        declared = _ply_declared_faces(fh.read(4096))
                tm = trimesh.load(str(p), file_type=_MESH_EXTS[ext], force="mesh", process=False)
        except Exception as exc:  # trimesh raises many types on bad input
            raise FileFormatError(f"{p}: cannot parse {ext[1:].upper()} mesh ({type(exc).__name__}: {exc})") from exc
        if isinstance(tm, trimesh.Scene):  # empty scenes stay scenes
            geoms = [g for g in tm.geometry.values() if isinstance(g, trimesh.Trimesh)]
            tm = trimesh.util.concatenate(geoms) if geoms else trimesh.Trimesh()
        verts = np.asarray(getattr(tm, "vertices", np.zeros((0, 3))), dtype=np.float64)
        faces = np.asarray(getattr(tm, "faces", np.zeros((0, 3))), dtype=np.int64)
        if faces.size and cut is not None:
            warnings.warn(
                f"{p}: the OBJ file looks truncated (its last line {cut[:60]!r} is incomplete); it was read as "
                f"far as it goes ({len(faces)} faces): check or re-export the file",
                PoseshapeWarning,
                stacklevel=2,
            )
        if faces.size and declared is not None and len(faces) < declared:
            warnings.warn(
                f"{p}: the PLY file looks truncated (its header declares {declared} faces, {len(faces)} were "
                "read): check or re-export the file",
                PoseshapeWarning,
                stacklevel=2,
            )
    if faces.size == 0:
        raise FileFormatError(f"{p}: the mesh has no faces (empty, corrupt or truncated file)")
    if not np.isfinite(verts).all():
        raise FileFormatError(f"{p}: vertices contain NaN or inf")
    if faces.min() < 0 or faces.max() >= len(verts):
        raise FileFormatError(f"{p}: face indices out of range [0, {len(verts)})")
    mesh = Mesh(torch.as_tensor(verts, dtype=dtype or torch.get_default_dtype()), torch.as_tensor(faces))
    if normalize:
        return normalize_mesh(mesh, source or "identity", return_transform=return_transform)
    if source is not None:
        mesh = normalize_rotation_only(mesh, source)
    return (mesh, None) if return_transform else mesh


def normalize_rotation_only(mesh: Mesh, source: str) -> Mesh:
    """Rotate ``mesh`` from ``source``'s native frame into the object frame (no centring / scaling)."""
    try:
        R = torch.as_tensor(source_rotation(source), dtype=mesh.verts.dtype, device=mesh.verts.device)
    except ValueError as exc:
        raise ShapeError(f"source: {exc}") from None
    return Mesh(mesh.verts @ R.T, mesh.faces)


def save_mesh(mesh: Mesh, path) -> None:
    """Write ``mesh`` as OBJ, OFF or PLY (binary) chosen by the extension of ``path``.

    The file is written atomically (:func:`poseshape.core.io.atomic_write`): a half-written
    file is never left at ``path``, and an existing file stays as it was if the write fails.

    Raises:
        FileFormatError: an unsupported extension.
        FileWriteError: the file cannot be written (folder missing or not writable, disk full).
    """
    import trimesh

    p = Path(path)
    ext = p.suffix.lower()
    if ext not in _MESH_EXTS:
        raise FileFormatError(f"{p}: unsupported mesh format {ext!r} (expected .obj, .off or .ply)")
    tm = trimesh.Trimesh(mesh.verts.detach().cpu().double().numpy(), mesh.faces.detach().cpu().numpy(), process=False)
    data = tm.export(file_type=_MESH_EXTS[ext])
    if isinstance(data, str):
        data = data.encode()
    atomic_write(p, data)
