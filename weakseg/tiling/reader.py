"""Fast reads of level-aligned regions by decoding a TIFF's own tiles.

OpenSlide's ``read_region`` paints through cairo and is decode-bound at a fraction of what
libjpeg-turbo can do. For a tiled TIFF level (generic TIFF, Aperio SVS with JPEG, LZW, deflate…)
:class:`TiffLevel` decodes the stored tiles directly with :mod:`tifffile` / :mod:`imagecodecs`
and assembles any integer region inside the level; pixels equal OpenSlide's (tested).
JPEG 2000 levels and anything else OpenSlide maps differently are left to OpenSlide.

:meth:`TiffLevel.jpeg_stream` returns one stored JPEG tile as a self-contained stream (shared
``JPEGTables`` merged in, an Adobe marker added for RGB-encoded tiles) so a tiler can store it
without re-encoding.
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import tifffile

from ..errors import SlideError

JPEG = 7
#: Compressions decoded here; JPEG 2000 (33003/33005, Aperio) and others fall back to OpenSlide.
SUPPORTED_COMPRESSIONS = {1, 5, 7, 8, 32946, 50000}
_PHOTOMETRIC_RGB = 2
_PHOTOMETRIC_YCBCR = 6
# APP14 "Adobe" segment with transform 0: tells any JPEG decoder the components are RGB.
_ADOBE_RGB = b"\xff\xee" + struct.pack(">H", 14) + b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0)


class TiffLevel:
    """Direct tile decoder for one tiled TIFF page (one pyramid level)."""

    def __init__(self, tif: tifffile.TiffFile, page: tifffile.TiffPage, cache_tiles: int) -> None:
        self.path = Path(tif.filehandle.path)
        self._tif = tif
        self._page = page
        self.width, self.height = int(page.imagewidth), int(page.imagelength)
        self.tile_w, self.tile_h = int(page.tilewidth), int(page.tilelength)
        self.n_across = -(-self.width // self.tile_w)
        self.compression = int(page.compression)
        self.photometric = int(page.photometric)
        self._tables = page.jpegtables
        self._decode = page.decode
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = max(4, cache_tiles)

    def _raw(self, index: int) -> bytes:
        offset, count = self._page.dataoffsets[index], self._page.databytecounts[index]
        fh = self._tif.filehandle
        fh.seek(offset)
        return fh.read(count)

    def tile(self, tx: int, ty: int) -> np.ndarray:
        """Decoded stored tile ``(tile_h, tile_w, 3)`` at tile column/row ``(tx, ty)`` (cached)."""
        index = ty * self.n_across + tx
        hit = self._cache.get(index)
        if hit is not None:
            self._cache.move_to_end(index)
            return hit
        data = self._raw(index)
        if not data:  # sparse tile: OpenSlide paints it transparent -> white
            arr = np.full((self.tile_h, self.tile_w, 3), 255, np.uint8)
        else:
            try:
                seg, _, _ = self._decode(data, index, jpegtables=self._tables)
                arr = np.asarray(seg).reshape(self.tile_h, self.tile_w, -1)[..., :3]
            except Exception as err:  # codec errors come in many types
                raise SlideError(f"{self.path}: cannot decode stored tile ({tx}, {ty}) of page {self._page.index}: {err}") from err
        self._cache[index] = arr
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return arr

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB ``(h, w, 3)`` of the level region at level pixel ``(x, y)``; must lie inside the level."""
        if x < 0 or y < 0 or x + w > self.width or y + h > self.height:
            raise ValueError(f"region {(x, y, w, h)} outside level {self.width}x{self.height}")
        tw, th = self.tile_w, self.tile_h
        tx0, ty0, tx1, ty1 = x // tw, y // th, (x + w - 1) // tw, (y + h - 1) // th
        if tx0 == tx1 and ty0 == ty1:
            return self.tile(tx0, ty0)[y - ty0 * th : y - ty0 * th + h, x - tx0 * tw : x - tx0 * tw + w]
        out = np.empty((h, w, 3), np.uint8)
        for ty in range(ty0, ty1 + 1):
            for tx in range(tx0, tx1 + 1):
                ox, oy = tx * tw, ty * th
                sx0, sy0 = max(x, ox), max(y, oy)
                sx1, sy1 = min(x + w, ox + tw), min(y + h, oy + th)
                out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = self.tile(tx, ty)[sy0 - oy : sy1 - oy, sx0 - ox : sx1 - ox]
        return out

    @property
    def passthrough(self) -> bool:
        """Whether stored tiles are baseline 3-channel JPEG that :meth:`jpeg_stream` can hand out."""
        return self.compression == JPEG and self.photometric in (_PHOTOMETRIC_RGB, _PHOTOMETRIC_YCBCR)

    def jpeg_stream(self, tx: int, ty: int) -> bytes:
        """Stored JPEG tile as a standalone stream (tables merged, RGB marked), no re-encoding."""
        data = self._raw(ty * self.n_across + tx)
        if not (data.startswith(b"\xff\xd8") and data.rstrip(b"\x00").endswith(b"\xff\xd9")):
            raise SlideError(f"{self.path}: stored JPEG tile ({tx}, {ty}) of page {self._page.index} is corrupt or truncated")
        head = b""
        if self._tables:
            head += bytes(self._tables)[2:-2]  # tables stream minus SOI/EOI
        if self.photometric == _PHOTOMETRIC_RGB:
            head += _ADOBE_RGB
        return data[:2] + head + data[2:]


class TiffPyramid:
    """Maps OpenSlide levels to directly decodable tiled TIFF pages (context manager).

    ``level(k)`` is ``None`` where no decodable page matches level ``k``'s dimensions.
    """

    def __init__(self, path: str | os.PathLike, level_dimensions: list[tuple[int, int]], cache_bytes: int = 64 << 20) -> None:
        self.path = Path(path)
        self._levels: dict[int, TiffLevel] = {}
        try:
            self._tif: tifffile.TiffFile | None = tifffile.TiffFile(self.path)
        except Exception:  # not a TIFF (or unreadable by tifffile): everything goes through OpenSlide
            self._tif = None
            return
        pages = [p for p in self._tif.pages if isinstance(p, tifffile.TiffPage)]
        for k, (w, h) in enumerate(level_dimensions):
            for p in pages:
                if (
                    p.is_tiled
                    and (p.imagewidth, p.imagelength) == (w, h)
                    and p.imagedepth == 1
                    and p.samplesperpixel == 3
                    and p.bitspersample == 8
                    and p.planarconfig == 1
                    and int(p.compression) in SUPPORTED_COMPRESSIONS
                    and (
                        int(p.photometric) == _PHOTOMETRIC_RGB
                        or (int(p.photometric) == _PHOTOMETRIC_YCBCR and int(p.compression) == JPEG)
                    )
                ):
                    per_tile = p.tilewidth * p.tilelength * 3
                    self._levels[k] = TiffLevel(self._tif, p, cache_bytes // max(per_tile, 1))
                    break

    def level(self, k: int) -> TiffLevel | None:
        return self._levels.get(k)

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()

    def __enter__(self) -> TiffPyramid:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
