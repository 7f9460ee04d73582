"""Fast reads of level-aligned regions by decoding a TIFF's own tiles.

OpenSlide's ``read_region`` paints through cairo and is decode-bound at a fraction of what
libjpeg-turbo can do. For a tiled TIFF level (generic TIFF, Aperio SVS with JPEG, LZW, deflate…)
:class:`TiffLevel` decodes the stored tiles directly with :mod:`tifffile` / :mod:`imagecodecs`
and assembles any integer region inside the level; pixels equal OpenSlide's (tested).
JPEG 2000 levels and anything else OpenSlide maps differently are left to OpenSlide.

:meth:`TiffLevel.jpeg_stream` returns one stored JPEG tile as a self-contained stream (shared
``JPEGTables`` merged in, an Adobe marker added for RGB-encoded tiles) so a tiler can store it
without re-encoding. Every stored JPEG tile read here is checked first (:func:`jpeg_defect`):
markers where JPEG puts them and nothing after the end-of-image marker, the damage that libjpeg
only warns about (OpenSlide refuses such tiles, imagecodecs would decode them to garbage);
:meth:`TiffLevel.jpeg_stream` also decodes each stream once with the decoder that reads bags, so
a tile stored as it is always decodes later.
"""

from __future__ import annotations

import os
import re
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import tifffile

from .errors import SlideError

JPEG = 7
#: Compressions decoded here; JPEG 2000 (33003/33005, Aperio) and others fall back to OpenSlide.
SUPPORTED_COMPRESSIONS = {1, 5, 7, 8, 32946, 50000}
_PHOTOMETRIC_RGB = 2
_PHOTOMETRIC_YCBCR = 6
# APP14 "Adobe" segment with transform 0: tells any JPEG decoder the components are RGB.
_ADOBE_RGB = b"\xff\xee" + struct.pack(">H", 14) + b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0)
# Inside entropy-coded data 0xFF is followed by 0x00 (stuffing), 0xD0-0xD7 (restart) or 0xFF (fill);
# anything else is the next marker.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def jpeg_defect(data: bytes) -> str | None:
    """Why ``data`` is not a well-formed (baseline or progressive) JPEG stream; ``None`` when it is.

    Walks the marker segments from SOI to EOI, skipping entropy-coded data after each SOS:
    bytes where a marker should be, a segment running past the end, a second SOI, a stream without
    EOI and data after EOI (zero padding is allowed) are defects. Costs microseconds per tile;
    corruption that leaves the entropy-coded bits well-formed is invisible to any check short of a
    checksum, which TIFF does not store.
    """
    n = len(data)
    if not data.startswith(b"\xff\xd8"):
        return "no start-of-image marker"
    pos = 2
    while True:
        if pos >= n:
            return "the stream ends before its end-of-image marker"
        if data[pos] != 0xFF:
            nxt = data.find(b"\xff", pos)
            extra = (nxt if nxt >= 0 else n) - pos
            return f"{extra} extraneous bytes before a marker at byte {pos}"
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            return "the stream ends in fill bytes"
        code = data[pos]
        pos += 1
        if code == 0xD9:  # EOI
            tail = data[pos:]
            if tail.strip(b"\x00"):
                return f"{len(tail)} bytes after the end-of-image marker at byte {pos - 2}"
            return None
        if code in _STANDALONE:
            continue
        if code in (0x00, 0xD8):
            return f"unexpected marker 0xFF{code:02X} at byte {pos - 2}"
        if pos + 2 > n:
            return f"marker 0xFF{code:02X} at byte {pos - 2} is cut off"
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2 or pos + length > n:
            return f"marker 0xFF{code:02X} at byte {pos - 2}: segment length {length} runs past the end ({n} bytes)"
        pos += length
        if code == 0xDA:  # SOS: entropy-coded data up to the next marker
            m = _NEXT_MARKER.search(data, pos)
            pos = m.start() if m else n


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
            defect = jpeg_defect(data) if self.compression == JPEG else None
            if defect is not None:
                raise SlideError(f"{self.path}: cannot decode stored tile {self._where(tx, ty)}: corrupt JPEG data: {defect}")
            try:
                seg, _, _ = self._decode(data, index, jpegtables=self._tables)
                arr = np.asarray(seg).reshape(self.tile_h, self.tile_w, -1)[..., :3]
            except Exception as err:  # codec errors come in many types
                raise SlideError(f"{self.path}: cannot decode stored tile {self._where(tx, ty)}: corrupt or unreadable data: {err}") from err
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

    def _where(self, tx: int, ty: int) -> str:
        return f"({tx}, {ty}) of page {self._page.index} (level pixels x={tx * self.tile_w}, y={ty * self.tile_h})"

    def jpeg_stream(self, tx: int, ty: int, *, validate: bool = True) -> bytes:
        """Stored JPEG tile as a standalone stream (tables merged, RGB marked), no re-encoding.

        With ``validate`` (the default) the stream must pass :func:`jpeg_defect` and decode, with
        the decoder that reads bags (:func:`weakseg.bags.decode_tile`), to one ``tile_h × tile_w``
        RGB tile; otherwise :class:`SlideError` names the file and the tile.
        """
        data = self._raw(ty * self.n_across + tx)
        defect = jpeg_defect(data)
        if defect is not None:
            raise SlideError(f"{self.path}: stored JPEG tile {self._where(tx, ty)} is corrupt: {defect}")
        head = b""
        if self._tables:
            head += bytes(self._tables)[2:-2]  # tables stream minus SOI/EOI
        if self.photometric == _PHOTOMETRIC_RGB:
            head += _ADOBE_RGB
        stream = data[:2] + head + data[2:]
        if validate:
            check_jpeg_decodes(stream, (self.tile_h, self.tile_w, 3), f"{self.path}: stored JPEG tile {self._where(tx, ty)}")
        return stream


def check_jpeg_decodes(stream: bytes, shape: tuple[int, int, int], what: str) -> None:
    """Decode ``stream`` once as a bag reader would; :class:`SlideError` about ``what`` unless it gives ``shape``."""
    from .bags import decode_tile

    try:
        got = decode_tile(np.frombuffer(stream, np.uint8), "jpeg").shape
    except Exception as err:  # codec errors come in many types
        raise SlideError(f"{what} is corrupt: it does not decode ({type(err).__name__}: {err})") from err
    if tuple(got) != tuple(shape):
        raise SlideError(f"{what} is corrupt: it decodes to shape {tuple(got)}, not {tuple(shape)}")


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


__all__ = ["JPEG", "SUPPORTED_COMPRESSIONS", "TiffLevel", "TiffPyramid", "check_jpeg_decodes", "jpeg_defect"]
