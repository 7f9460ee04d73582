"""Bring your own partial annotations: QuPath GeoJSON or label-mask TIFFs → PU bags.

``annotate_bags`` writes one PU bag per tile bag in exactly the contract of ``weakseg weaken
--mode pu`` (same writer, datasets and attributes, see :mod:`weakseg.weaken`), with the
labels a pathologist drew instead of simulated ones:

``pu_labels``
    uint8 ``(N, T, T)``: ``1`` annotated positive, ``0`` unlabeled tissue, ``255`` background;
    ``2`` (:data:`~weakseg.weaken.PU_NEGATIVE`) annotated negative, only when negatives were
    given. :func:`weakseg.weaken.read_pu_labels` reads ``2`` as unlabeled unless asked
    (the PU learners take no negatives).

Background is where the bag's ground-truth mask says glass (common label 0: the rule
``weaken`` uses), or, for a bag tiled without a mask, where the tiler's tissue detector finds
none (the rule :mod:`weakseg.refine` uses). Annotated pixels on background stay ``255``;
where a positive and a negative annotation overlap the positive wins.

Annotation sources (``--positives`` / ``--negatives``: a file or a folder of them):

GeoJSON (``.geojson``, ``.json``; QuPath "Export objects as GeoJSON")
    a ``FeatureCollection``, a list of ``Feature``\\ s or one ``Feature``; ``Polygon`` and
    ``MultiPolygon`` geometries (holes included; ``GeometryCollection`` members too) in slide
    level-0 pixels, x right, y down, pixel ``(c, r)`` covering ``[c, c+1) x [r, r+1)``
    (QuPath's convention, and :mod:`weakseg.maps.geojson`'s). A feature's role comes from
    ``properties.classification.name`` (matched case-insensitively against the positive and
    negative class names); an unclassified feature takes the role of the option it came from.
    Point and line annotations are skipped (listed in the report's notes).
label-mask TIFF (``.tif``, ``.tiff``)
    label ``> 0`` is annotated (first channel of a multi-channel page). Its pages must lie on
    the slide's level-0 pixel grid or on one of its pyramid levels; the finest page no finer
    than a bag's tiles is read, a stored segment at a time (never a whole level).

Rasterisation is at each bag's tile resolution: tile pixel ``(i, j)`` of tile ``k`` is
annotated when its centre, level-0 ``(coords[k, 0] + (j + 0.5) * downsample, coords[k, 1] +
(i + 0.5) * downsample)``, lies inside a polygon (even-odd rule within a polygon, so holes are
holes; union over polygons), or in a labelled label-mask pixel. ``erode`` then erodes annotated
regions tile by tile exactly like ``weaken --erode``.

Files are matched to bags by slide id: ``<slide_id>.geojson`` (the whole name before the last
suffix), else the name before its first dot (QuPath's ``<slide_id>.svs.geojson``), and for
TIFFs also ``<slide_id><sep>*.tif[f]`` with a non-alphanumeric ``sep`` (PANDA's
``<slide_id>_mask.tiff``; the longest matching slide id wins).

Every annotation input is checked before any bag is written (:class:`AnnotationError`, naming
the file and the feature): unreadable or malformed GeoJSON, unknown class names, polygons
entirely outside their slide, label masks off the slide's grid, files for slides not in the
bags. Bags that then fail while being written (an unreadable mask, a TIFF segment that does
not decode) are listed in :attr:`AnnotateReport.failed`; the others are written.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from .bags import Bag, derived_bag_writer, label_dataset, list_bags
from .errors import AnnotationError, BagError, MaskMismatchError, SlideError, WeaksegError
from .weaken import PU_EXCLUDED, PU_NEGATIVE, PU_POSITIVE, PU_UNLABELED, _iter_common_masks

GEOJSON_SUFFIXES = (".geojson", ".json")
TIFF_SUFFIXES = (".tif", ".tiff")
POSITIVE, NEGATIVE = "positive", "negative"
#: bytes of decoded label-mask segments kept per open TIFF level
_SEGMENT_CACHE_BYTES = 64 << 20
_NON_AREA = ("Point", "MultiPoint", "LineString", "MultiLineString")


@dataclass
class AnnotateReport:
    """What :func:`annotate_bags` did.

    ``written``: PU bags written, in bag order. ``files``: slide id → annotation files used.
    ``unannotated``: slide ids written without any annotation (all tissue unlabeled).
    ``failed``: slide id → why its bag could not be written. ``pixels``: slide id → counts of
    ``positive``, ``negative`` and ``unlabeled`` tile pixels. ``notes``: skipped features.
    """

    written: list[Path] = field(default_factory=list)
    files: dict[str, list[Path]] = field(default_factory=dict)
    unannotated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    pixels: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> list[str]:
        """Annotated slides whose annotations labelled no tissue pixel of any tile."""
        return [s for s in self.files if s in self.pixels and not (self.pixels[s]["positive"] or self.pixels[s]["negative"])]


# -- public entry point ----------------------------------------------------------------------------


def annotate_bags(
    bags: str | os.PathLike,
    out: str | os.PathLike,
    positives: str | os.PathLike,
    negatives: str | os.PathLike | None = None,
    *,
    positive_classes: Sequence[str] = ("Tumor",),
    negative_classes: Sequence[str] = (),
    erode: int = 0,
    require_all: bool = False,
    on_bag: Callable[[Path], None] | None = None,
) -> AnnotateReport:
    """Write a PU bag into ``out`` for every tile bag under ``bags``, labelled from annotation files.

    Args:
        bags: a tile bag or a folder of them (masks are optional).
        out: output folder (must differ from the bags' folder).
        positives: a GeoJSON / label-mask TIFF file, or a folder of them, with positive regions.
        negatives: the same for negative regions (may be the ``positives`` folder); only then are
            negatives (``2``) recorded.
        positive_classes: QuPath class names read as positive (case-insensitive).
        negative_classes: class names read as negative from ``negatives``; in ``positives``
            files they are recognised and skipped.
        erode: pixels eroded from annotated regions' boundaries, per tile (as ``weaken --erode``).
        require_all: refuse (before writing anything) when some bag has no annotation file.
        on_bag: called with each bag's target path once it is done, written or failed (progress).

    Raises:
        AnnotationError, BagError, MaskMismatchError: bad input, before any bag is written.
    """
    if erode < 0:
        raise ValueError(f"erode must be >= 0, got {erode}")
    pos_cls, neg_cls = _class_table(positive_classes, "positive"), _class_table(negative_classes, "negative")
    clash = sorted(set(pos_cls) & set(neg_cls))
    if clash:
        raise AnnotationError(f"class {pos_cls[clash[0]]!r} is both a positive and a negative class")
    sources = list_bags(bags)
    if not sources:
        raise BagError(f"{bags}: no bags found")
    out = Path(out)
    headers = _bag_headers(sources, out)
    by_id = {h.slide_id: h for h in headers}

    roles: dict[Path, set[str]] = defaultdict(set)
    for path in _list_files(positives, "--positives"):
        roles[path].add(POSITIVE)
    for path in _list_files(negatives, "--negatives") if negatives is not None else []:
        roles[path].add(NEGATIVE)
    report = AnnotateReport()
    per_slide: dict[str, list[tuple[Path, set[str]]]] = defaultdict(list)
    for path, file_roles in roles.items():
        kind = _kind(path)
        if kind == "tiff" and len(file_roles) == 2:
            raise AnnotationError(f"{path}: a label-mask TIFF is either positive or negative, not both (--positives and --negatives)")
        slide_id = _slide_for(path, kind, by_id)
        if slide_id is None:
            shown = ", ".join(sorted(by_id)[:8]) + (f", … ({len(by_id)} bags)" if len(by_id) > 8 else "")
            raise AnnotationError(
                f"{path}: no bag for slide {path.name.split('.', 1)[0]!r} in {bags} (a file's slide id is its name "
                f"before the first dot, or <slide_id>_*.tif for label masks; slide ids: {shown})"
            )
        per_slide[slide_id].append((path, file_roles))

    missing = [h.slide_id for h in headers if h.slide_id not in per_slide]
    if require_all and missing:
        shown = ", ".join(missing[:8]) + (f", … ({len(missing)} slides)" if len(missing) > 8 else "")
        raise AnnotationError(f"--require-all: {len(missing)} bag(s) have no annotation file: {shown}")

    plans: dict[str, _Plan] = {}
    for slide_id, files in per_slide.items():
        plans[slide_id] = _plan(by_id[slide_id], files, pos_cls, neg_cls, report.notes)
        report.files[slide_id] = sorted(p for p, _ in files)

    out.mkdir(parents=True, exist_ok=True)
    record_negatives = negatives is not None
    for header in headers:
        plan = plans.get(header.slide_id) or _Plan(header, [], [], [])
        if header.slide_id not in plans:
            report.unannotated.append(header.slide_id)
        target = out / header.path.name
        try:
            report.pixels[header.slide_id] = _write_bag(plan, target, erode=erode, record_negatives=record_negatives)
        except (WeaksegError, OSError) as err:  # the bag, its mask or a label-mask segment is unreadable
            report.failed[header.slide_id] = str(err)
        else:
            report.written.append(target)
        if on_bag is not None:
            on_bag(target)
    return report


# -- inputs ----------------------------------------------------------------------------------------


@dataclass
class _Header:
    path: Path
    slide_id: str
    coords: np.ndarray
    patch_size: int
    slide_path: str


@dataclass
class _Geometry:
    """Level-0 size and pyramid of a bag's slide (or of its tiles' extent when the slide is unavailable)."""

    width: int
    height: int
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    from_slide: bool
    source: str


@dataclass
class _Part:
    """One polygon (outer ring and holes) of one feature: edges ``(E, 4)`` = ``x0, y0, x1, y1`` level-0 px."""

    edges: np.ndarray
    bbox: tuple[float, float, float, float]
    role: str
    where: str


@dataclass
class _Plan:
    header: _Header
    parts: list[_Part]
    masks: list[tuple[Path, str]]
    files: list[Path]
    geometry: _Geometry | None = None


def _class_table(names: Iterable[str] | str, what: str) -> dict[str, str]:
    names = [names] if isinstance(names, str) else names
    table = {}
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise AnnotationError(f"{what} class names must be non-empty strings, got {name!r}")
        table[name.strip().casefold()] = name.strip()
    return table


def _bag_headers(sources: list[Path], out: Path) -> list[_Header]:
    headers, seen = [], {}
    for path in sources:
        if (out / path.name).resolve() == path.resolve():
            raise BagError(f"{path}: output folder {out} is the source folder; choose another")
        with Bag(path) as bag:
            header = _Header(path, bag.slide_id, bag.coords, bag.patch_size, str(bag.meta.slide_path or ""))
        if header.slide_id in seen:
            raise BagError(f"{path}: slide id {header.slide_id!r} also belongs to {seen[header.slide_id]}")
        seen[header.slide_id] = path
        headers.append(header)
    return headers


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "geojson" if suffix in GEOJSON_SUFFIXES else "tiff" if suffix in TIFF_SUFFIXES else None


def _list_files(source: str | os.PathLike, option: str) -> list[Path]:
    source = Path(source)
    allowed = ", ".join(GEOJSON_SUFFIXES + TIFF_SUFFIXES)
    if source.is_file():
        if _kind(source) is None:
            raise AnnotationError(f"{source}: not an annotation file ({option} takes {allowed} files or a folder of them)")
        return [source.resolve()]
    if source.is_dir():
        files = sorted(
            p.resolve() for p in source.iterdir() if p.is_file() and not p.name.startswith(".") and _kind(p) is not None
        )
        if not files:
            raise AnnotationError(f"{source}: no annotation files ({allowed}) in this folder ({option})")
        return files
    raise AnnotationError(f"{source}: no such file or folder ({option})")


def _slide_for(path: Path, kind: str | None, ids: dict[str, Any]) -> str | None:
    name = path.name
    whole = name[: -len(path.suffix)] if path.suffix else name
    if whole in ids:
        return whole
    first = name.split(".", 1)[0]
    if first in ids:
        return first
    if kind == "tiff":
        hits = [s for s in ids if name.startswith(s) and len(name) > len(s) and not name[len(s)].isalnum()]
        if hits:
            return max(hits, key=len)
    return None


def _plan(header: _Header, files: list[tuple[Path, set[str]]], pos_cls: dict[str, str], neg_cls: dict[str, str],
          notes: list[str]) -> _Plan:
    """Parse and check every annotation of one slide (raises :class:`AnnotationError`)."""
    geometry = _slide_geometry(header)
    parts: list[_Part] = []
    masks: list[tuple[Path, str]] = []
    for path, roles in sorted(files, key=lambda item: item[0]):
        if _kind(path) == "geojson":
            parts += _read_geojson(path, roles, pos_cls, neg_cls, notes)
        else:
            (role,) = roles
            with _LabelMask(path, geometry):  # checks the grid now, reads later
                pass
            masks.append((path, role))
    for part in parts:
        x0, y0, x1, y1 = part.bbox
        if x1 <= 0 or y1 <= 0 or x0 >= geometry.width or y0 >= geometry.height:
            raise AnnotationError(
                f"{part.where} lies entirely outside slide {header.slide_id!r}: x {x0:g}..{x1:g}, y {y0:g}..{y1:g} "
                f"against 0..{geometry.width} x 0..{geometry.height} level-0 px ({geometry.source}); "
                "coordinates must be level-0 pixels of this slide"
            )
    return _Plan(header, parts, masks, [p for p, _ in files], geometry)


def _slide_geometry(header: _Header) -> _Geometry:
    if header.slide_path and Path(header.slide_path).is_file():
        from .slide import open_slide

        with contextlib.suppress(SlideError):
            with open_slide(header.slide_path) as slide:
                w, h = slide.dimensions
                return _Geometry(w, h, list(slide.level_dimensions), list(slide.level_downsamples), True,
                                 f"slide file {header.slide_path}")
    if len(header.coords):
        w, h = (int(v) for v in header.coords.max(axis=0) + header.patch_size)
    else:
        w = h = 0
    why = f"slide file {header.slide_path} unavailable" if header.slide_path else "bag records no slide file"
    return _Geometry(w, h, [(w, h)], [1.0], False, f"the extent of its tiles; {why}")


# -- GeoJSON -------------------------------------------------------------------------------------


def _read_geojson(path: Path, roles: set[str], pos_cls: dict[str, str], neg_cls: dict[str, str],
                  notes: list[str]) -> list[_Part]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AnnotationError(f"{path}: not valid JSON ({err})") from err
    except OSError as err:
        raise AnnotationError(f"{path}: cannot read ({err})") from err
    if isinstance(data, list):
        features = data
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise AnnotationError(f"{path}: FeatureCollection without a 'features' list")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    else:
        got = f"type {data.get('type')!r}" if isinstance(data, dict) else type(data).__name__
        raise AnnotationError(f"{path}: expected a GeoJSON FeatureCollection, a list of Features or a Feature, got {got}")
    known = ", ".join([*(f"{n} (positive)" for n in pos_cls.values()), *(f"{n} (negative)" for n in neg_cls.values())])
    parts: list[_Part] = []
    skipped: dict[str, int] = defaultdict(int)
    for i, feature in enumerate(features):
        where = f"{path}: feature {i}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            got = f"type {feature.get('type')!r}" if isinstance(feature, dict) else type(feature).__name__
            raise AnnotationError(f"{where}: expected a GeoJSON Feature, got {got}")
        name = _class_name(feature, where)
        if name is None:
            if len(roles) == 2:
                raise AnnotationError(
                    f"{where}: no classification; a file read for both --positives and --negatives needs a class on "
                    f"every feature (known: {known})"
                )
            (role,) = roles
        else:
            key = name.strip().casefold()
            role = POSITIVE if key in pos_cls else NEGATIVE if key in neg_cls else ""
            if not role:
                raise AnnotationError(
                    f"{where}: unknown class {name!r}; known classes: {known or 'none'} "
                    "(add it with --positive-class or --negative-class)"
                )
            if role not in roles:
                skipped[f"class {name!r} ({role}) in a --{'positives' if POSITIVE in roles else 'negatives'} file"] += 1
                continue
        polygons = _polygons(feature.get("geometry"), where, "geometry")
        if polygons is None:
            skipped[f"{feature['geometry']['type']} (not an area)"] += 1
            continue
        for rings, at in polygons:
            edges = np.concatenate([np.concatenate([r[:-1], r[1:]], axis=1) for r in rings])
            x, y = edges[:, 0], edges[:, 1]
            parts.append(_Part(edges, (float(x.min()), float(y.min()), float(x.max()), float(y.max())), role, f"{where}{at}"))
    for what, n in skipped.items():
        notes.append(f"{path}: skipped {n} feature(s): {what}")
    return parts


def _class_name(feature: dict, where: str) -> str | None:
    props = feature.get("properties")
    if props is None:
        return None
    if not isinstance(props, dict):
        raise AnnotationError(f"{where}: 'properties' must be an object, got {type(props).__name__}")
    cls = props.get("classification")
    if cls is None:
        return None
    if isinstance(cls, str):
        return cls
    if isinstance(cls, dict):
        name = cls.get("name")
        if name is None and isinstance(cls.get("names"), list):  # QuPath derived classes
            name = ": ".join(str(n) for n in cls["names"])
        if isinstance(name, str):
            return name
    raise AnnotationError(f"{where}: properties.classification must be a string or an object with a 'name', got {cls!r}")


def _polygons(geometry: Any, where: str, key: str) -> list[tuple[list[np.ndarray], str]] | None:
    """``[(rings, label)]`` of a Polygon / MultiPolygon / GeometryCollection; ``None`` for points and lines."""
    if not isinstance(geometry, dict) or not isinstance(geometry.get("type"), str):
        raise AnnotationError(f"{where}: '{key}' must be a GeoJSON geometry object with a 'type', got {geometry!r:.80}")
    kind = geometry["type"]
    if kind == "Polygon":
        return [(_rings(geometry.get("coordinates"), where, f"{key}.coordinates"), "")]
    if kind == "MultiPolygon":
        coords = geometry.get("coordinates")
        if not isinstance(coords, list) or not coords:
            raise AnnotationError(f"{where}: {key}.coordinates of a MultiPolygon must be a non-empty list of polygons")
        return [(_rings(c, where, f"{key}.coordinates[{k}]"), f" (polygon {k})") for k, c in enumerate(coords)]
    if kind == "GeometryCollection":
        members = geometry.get("geometries")
        if not isinstance(members, list):
            raise AnnotationError(f"{where}: {key}.geometries of a GeometryCollection must be a list")
        out = []
        for k, member in enumerate(members):
            got = _polygons(member, where, f"{key}.geometries[{k}]")
            out += [(rings, f" (member {k}{at})") for rings, at in got or []]
        return out or None
    if kind in _NON_AREA:
        return None
    raise AnnotationError(f"{where}: unknown geometry type {kind!r} (expected Polygon or MultiPolygon)")


def _rings(coords: Any, where: str, key: str) -> list[np.ndarray]:
    if not isinstance(coords, list) or not coords:
        raise AnnotationError(f"{where}: {key} of a Polygon must be a non-empty list of rings")
    rings = []
    for r, ring in enumerate(coords):
        try:
            arr = np.asarray(ring)
        except ValueError:
            arr = np.empty(0)
        if arr.ndim != 2 or arr.shape[1] not in (2, 3) or arr.dtype.kind not in "iuf" or not np.isfinite(arr).all():
            raise AnnotationError(f"{where}: {key}[{r}] must be a list of [x, y] number pairs")
        arr = arr[:, :2].astype(np.float64)
        if not np.array_equal(arr[0], arr[-1]):
            arr = np.vstack([arr, arr[:1]])
        if len(np.unique(arr, axis=0)) < 3:
            raise AnnotationError(f"{where}: {key}[{r}] has fewer than 3 distinct positions")
        rings.append(arr)
    return rings


def fill_polygon(edges: np.ndarray, size: int) -> np.ndarray:
    """Boolean ``(size, size)`` map of the pixel centres ``(j + 0.5, i + 0.5)`` inside closed rings.

    ``edges`` ``(E, 4)`` are ``u0, v0, u1, v1`` in pixel units (u right, v down) of all rings of
    one polygon; the even-odd rule makes inner rings holes. Scanline crossing count, exact up to
    floating point (a centre exactly on an edge counts as inside when the edge is to its right).
    """
    t = int(size)
    out = np.zeros((t, t), dtype=bool)
    if not len(edges):
        return out
    u0, v0, u1, v1 = np.asarray(edges, dtype=np.float64).T
    lo, hi = np.minimum(v0, v1), np.maximum(v0, v1)
    keep = (hi > 0) & (lo < t) & (np.maximum(u0, u1) > 0) & (hi > lo)  # others cross no row right of a centre
    if not keep.any():
        return out
    u0, v0, u1, v1, lo, hi = (a[keep] for a in (u0, v0, u1, v1, lo, hi))
    r0 = np.clip(np.ceil(lo - 0.5), 0, t).astype(np.int64)  # rows whose centre v = r + 0.5 lies in [lo, hi)
    r1 = np.clip(np.ceil(hi - 0.5), 0, t).astype(np.int64)
    n = r1 - r0
    total = int(n.sum())
    if total == 0:
        return out
    edge = np.repeat(np.arange(len(n)), n)
    rows = r0[edge] + np.arange(total) - np.repeat(np.cumsum(n) - n, n)
    vc = rows + 0.5
    x = u0[edge] + (vc - v0[edge]) * (u1[edge] - u0[edge]) / (v1[edge] - v0[edge])
    width = t + 3  # crossings clipped to [-1, t + 1], shifted by 1: one band of keys per row
    keys = np.sort(rows * width + np.clip(x, -1.0, t + 1.0) + 1.0)
    row_ids = np.arange(t)
    centres = (row_ids * width)[:, None] + 1.0 + np.arange(t)[None, :] + 0.5
    at_or_left = np.searchsorted(keys, centres.ravel(), side="right").reshape(t, t)
    row_end = np.searchsorted(keys, (row_ids + 1) * width, side="left")
    out[:] = (row_end[:, None] - at_or_left) % 2 == 1
    return out


class _PartIndex:
    """Polygons bucketed on a coarse level-0 grid (one cell per tile extent) for per-tile lookups."""

    def __init__(self, parts: list[_Part], cell: float, bounds: tuple[int, int]) -> None:
        self.parts = parts
        self.cell = max(float(cell), 1.0)
        nx, ny = (max(1, math.ceil(b / self.cell)) for b in bounds)
        self.buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        for k, part in enumerate(parts):
            x0, y0, x1, y1 = part.bbox
            cx0, cy0 = max(0, int(x0 // self.cell)), max(0, int(y0 // self.cell))
            cx1, cy1 = min(nx, int(x1 // self.cell)), min(ny, int(y1 // self.cell))
            for cy in range(cy0, cy1 + 1):
                for cx in range(cx0, cx1 + 1):
                    self.buckets[(cx, cy)].append(k)

    def query(self, x0: float, y0: float, x1: float, y1: float) -> list[_Part]:
        found: set[int] = set()
        for cy in range(max(0, int(y0 // self.cell)), int(y1 // self.cell) + 1):
            for cx in range(max(0, int(x0 // self.cell)), int(x1 // self.cell) + 1):
                found.update(self.buckets.get((cx, cy), ()))
        hits = []
        for k in sorted(found):
            bx0, by0, bx1, by1 = self.parts[k].bbox
            if bx1 > x0 and by1 > y0 and bx0 < x1 and by0 < y1:
                hits.append(self.parts[k])
        return hits


# -- label-mask TIFFs -------------------------------------------------------------------------------


class _Level:
    """Random-access reads of one TIFF page (label = first channel), one stored segment at a time."""

    def __init__(self, path: Path, tif: Any, page: Any, downsample: float) -> None:
        self.path, self.page, self.downsample = path, page, float(downsample)
        self.width, self.height = int(page.imagewidth), int(page.imagelength)
        self.spp = int(page.samplesperpixel)
        if int(page.imagedepth) != 1 or (self.spp > 1 and int(page.planarconfig) != 1):
            raise AnnotationError(f"{path}: page {page.index}: volumetric or planar-separate TIFF pages are not supported")
        self._fh = tif.filehandle
        if page.is_tiled:
            self.seg_w, self.seg_h = int(page.tilewidth), int(page.tilelength)
        else:
            self.seg_w, self.seg_h = self.width, min(int(page.rowsperstrip or self.height), self.height)
        self.across = -(-self.width // self.seg_w)
        self._memmap = None
        if (page.is_contiguous and not page.is_tiled and int(page.compression) == 1 and int(page.predictor) == 1
                and int(page.fillorder) == 1 and page.dtype is not None and page.dtype.itemsize * 8 == page.bitspersample):
            self._memmap = np.memmap(path, dtype=page.dtype.newbyteorder(tif.byteorder), mode="r", offset=int(page.dataoffsets[0]),
                                     shape=(self.height, self.width, self.spp))
        self._cache: OrderedDict[int, np.ndarray | None] = OrderedDict()
        self._cache_bytes = 0

    def _segment(self, index: int) -> np.ndarray | None:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        offset, count = self.page.dataoffsets[index], self.page.databytecounts[index]
        seg = None
        if count:
            self._fh.seek(offset)
            data = self._fh.read(count)
            try:
                decoded, _, _ = self.page.decode(data, index, jpegtables=self.page.jpegtables)
            except Exception as err:  # codec errors come in many types
                raise SlideError(f"{self.path}: cannot decode segment {index} of page {self.page.index}: {err}") from err
            if decoded is not None:
                seg = np.asarray(decoded).reshape(-1, self.seg_w, self.spp)[..., 0] > 0
        self._cache[index] = seg
        self._cache_bytes += 0 if seg is None else seg.nbytes
        while self._cache_bytes > _SEGMENT_CACHE_BYTES and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= 0 if old is None else old.nbytes
        return seg

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Boolean ``label > 0`` of rows ``r0:r1``, columns ``c0:c1`` (False outside the page)."""
        out = np.zeros((r1 - r0, c1 - c0), dtype=bool)
        y0, y1, x0, x1 = max(r0, 0), min(r1, self.height), max(c0, 0), min(c1, self.width)
        if y0 >= y1 or x0 >= x1:
            return out
        if self._memmap is not None:
            out[y0 - r0 : y1 - r0, x0 - c0 : x1 - c0] = self._memmap[y0:y1, x0:x1, 0] > 0
            return out
        for sy in range(y0 // self.seg_h, (y1 - 1) // self.seg_h + 1):
            for sx in range(x0 // self.seg_w, (x1 - 1) // self.seg_w + 1):
                seg = self._segment(sy * self.across + sx)
                if seg is None:
                    continue
                oy, ox = sy * self.seg_h, sx * self.seg_w
                ya, yb = max(y0, oy), min(y1, oy + seg.shape[0])
                xa, xb = max(x0, ox), min(x1, ox + seg.shape[1])
                if ya < yb and xa < xb:
                    out[ya - r0 : yb - r0, xa - c0 : xb - c0] = seg[ya - oy : yb - oy, xa - ox : xb - ox]
        return out


class _LabelMask:
    """A label-mask TIFF matched to its slide's grid (context manager); :meth:`sample` reads per tile."""

    def __init__(self, path: Path, geometry: _Geometry) -> None:
        import tifffile

        self.path = path
        try:
            self._tif = tifffile.TiffFile(path)
        except Exception as err:  # tifffile raises many types for non-TIFFs
            raise AnnotationError(f"{path}: not a readable TIFF ({err})") from err
        try:
            self.levels = self._match(geometry)
        except BaseException:
            self._tif.close()
            raise

    def _match(self, geometry: _Geometry) -> list[_Level]:
        pages, seen = [], set()
        for series in self._tif.series:
            for level in series.levels:
                page = level.pages[0]
                page = page.aspage() if hasattr(page, "aspage") else page
                size = (int(page.imagewidth), int(page.imagelength))
                if size not in seen:
                    seen.add(size)
                    pages.append((size, page))
        if not pages:
            raise AnnotationError(f"{self.path}: TIFF holds no image")
        pages.sort(key=lambda item: -item[0][0] * item[0][1])
        levels = []
        if geometry.from_slide:
            ref_w, ref_h = geometry.width, geometry.height
        else:  # no slide: the TIFF's largest page must cover the tiles and is taken as level 0
            ref_w, ref_h = pages[0][0]
            if ref_w < geometry.width or ref_h < geometry.height:
                raise MaskMismatchError(
                    f"{self.path}: label mask is {ref_w}x{ref_h}, smaller than {geometry.width}x{geometry.height} "
                    f"({geometry.source}); without the slide file it must be at level 0"
                )
        for (w, h), page in pages:
            ds = _grid_downsample(w, h, ref_w, ref_h, geometry)
            if ds is not None:
                levels.append(_Level(self.path, self._tif, page, ds))
        if not levels:
            (w, h), _ = pages[0]
            grids = ", ".join(f"{a}x{b}" for a, b in geometry.level_dimensions)
            raise MaskMismatchError(
                f"{self.path}: label mask is {w}x{h}, neither the slide's level-0 grid ({geometry.width}x"
                f"{geometry.height}) nor a pyramid level of it (levels {grids}; {geometry.source})"
            )
        return sorted(levels, key=lambda lv: lv.downsample)

    def sample(self, x0: float, y0: float, downsample: float, size: int) -> np.ndarray:
        """Boolean ``(size, size)``: whether each tile pixel's centre falls in a labelled mask pixel."""
        fine_enough = [lv for lv in self.levels if lv.downsample <= downsample * (1 + 1e-3)]
        level = fine_enough[-1] if fine_enough else self.levels[0]
        centres = (np.arange(size) + 0.5) * downsample
        cols = np.floor((x0 + centres) / level.downsample).astype(np.int64)
        rows = np.floor((y0 + centres) / level.downsample).astype(np.int64)
        region = level.read(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
        return region[np.ix_(rows - rows[0], cols - cols[0])]

    def close(self) -> None:
        self._tif.close()

    def __enter__(self) -> _LabelMask:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _grid_downsample(w: int, h: int, ref_w: int, ref_h: int, geometry: _Geometry) -> float | None:
    """Level-0 pixels per pixel of a ``w x h`` page: a level of the slide, or the reference grid divided by an
    integer (rounding either way); ``None`` when the page is off the grid."""
    if geometry.from_slide:
        for dims, ds in zip(geometry.level_dimensions, geometry.level_downsamples):
            if (w, h) == tuple(dims):
                return float(ds)
    ds = round((ref_w / w + ref_h / h) / 2)  # pyramid levels halve (or divide by an integer) the grid
    if ds >= 1 and all(n in (math.floor(ref / ds), math.ceil(ref / ds)) for n, ref in ((w, ref_w), (h, ref_h))):
        return float(ds)
    return None


# -- writing ----------------------------------------------------------------------------------------


def _iter_tissue(bag: Bag, batch_size: int) -> Iterator[tuple[slice, np.ndarray]]:
    """``(tile slice, bool (k, T, T) tissue)``: the ground-truth mask's rule (``weaken``), else the tissue detector."""
    if bag.has_masks:
        for sl, common in _iter_common_masks(bag, batch_size):
            yield sl, common != 0
        return
    from .tissue import detect_tissue

    for idx, tiles in bag.iter_tiles(batch_size):
        yield slice(int(idx[0]), int(idx[-1]) + 1), np.stack([detect_tissue(t) for t in tiles])


def _write_bag(plan: _Plan, target: Path, *, erode: int, record_negatives: bool,
               batch_size: int = 64) -> dict[str, int]:
    counts = {"positive": 0, "negative": 0, "unlabeled": 0}
    structure = np.ones((3, 3), dtype=bool)
    with Bag(plan.header.path) as bag, contextlib.ExitStack() as stack:
        t, d = bag.tile_size, float(bag.meta.downsample)
        geometry = plan.geometry
        bounds = (geometry.width, geometry.height) if geometry else (0, 0)
        index = _PartIndex(plan.parts, t * d, bounds)
        masks = [(stack.enter_context(_LabelMask(path, geometry)), role) for path, role in plan.masks] if geometry else []
        with derived_bag_writer(bag, target) as f:
            ds = label_dataset(f, "pu_labels", len(bag), t)
            for sl, tissue in _iter_tissue(bag, batch_size):
                out = np.where(tissue, PU_UNLABELED, PU_EXCLUDED).astype(np.uint8)
                for j, i in enumerate(range(sl.start, sl.stop)):
                    x0, y0 = (float(v) for v in bag.coords[i])
                    marked = {POSITIVE: np.zeros((t, t), bool), NEGATIVE: np.zeros((t, t), bool)}
                    for part in index.query(x0, y0, x0 + t * d, y0 + t * d):
                        e = part.edges
                        local = np.stack([(e[:, 0] - x0) / d, (e[:, 1] - y0) / d, (e[:, 2] - x0) / d, (e[:, 3] - y0) / d], 1)
                        marked[part.role] |= fill_polygon(local, t)
                    for mask, role in masks:
                        marked[role] |= mask.sample(x0, y0, d, t)
                    for role, code in ((NEGATIVE, PU_NEGATIVE), (POSITIVE, PU_POSITIVE)):  # positives win overlaps
                        if role == NEGATIVE and not record_negatives:
                            continue
                        keep = marked[role] & tissue[j]
                        if erode and keep.any():
                            keep = ndimage.binary_erosion(keep, structure, iterations=erode, border_value=1)
                        out[j][keep] = code
                ds[sl] = out
                counts["positive"] += int((out == PU_POSITIVE).sum())
                counts["negative"] += int((out == PU_NEGATIVE).sum())
                counts["unlabeled"] += int((out == PU_UNLABELED).sum())
            f.attrs["supervision"] = "pu"
            f.attrs["positive_fraction"] = float("nan")  # not simulated: the annotations decide
            f.attrs["erode"] = int(erode)
            f.attrs["weaken_seed"] = -1
            f.attrs["pu_source"] = "annotations"
            f.attrs["pu_negatives"] = bool(record_negatives)
            f.attrs["pu_background"] = "masks" if bag.has_masks else "tissue"
            f.attrs["annotation_files"] = json.dumps([str(p) for p in plan.files])
    return counts


__all__ = ["AnnotateReport", "AnnotationError", "annotate_bags", "fill_polygon"]
