"""The sandbox's image host and its ground truth (what the collect stage must find).

`build_catalog(world, scale)` decides, for every candidate series of a `tv100.sandbox.world.World`
(``expected=True``), which images the image-search engines list for it, in rank order, and
what a correct downloader must record for each (`HostedImage.expected_status`). Nothing is
rendered while building: image bytes are drawn on first request (see `tv100.sandbox.imagegen`),
deterministically from the world seed, and kept in an LRU cache.

Counts follow a long tail like TV100's: series are ranked by a seeded permutation and series
of rank r get about ``14 + 270 * (r + 1) ** -0.85`` images (×0.92..1.08 jitter) times `scale`,
at least `MIN_PER_SERIES`; with 48 series that is ~2,300 images (~2,700 with the label
noise), largest/smallest ~12.

Plants (every one recorded in the manifest, `HostedImage.plant`):

- duplicates, ~10% of each series (rate drawn per series in 0.06..0.14) plus one of each kind
  somewhere in the world: ``exact_duplicate`` (the same bytes at another URL), ``near_jpeg``
  (re-encoded at quality 30), ``near_resize`` (half size), ``near_crop`` (10% of each
  dimension cropped), ``near_brightness`` (±15%), ``near_grayscale``; and 2-4
  ``cross_series`` copies (an ordinary image of series A listed, same bytes, under series B);
- label noise, drawn per series: ``NOISE_LOW + NOISE_SPAN * Beta(0.7, 2.2)`` of its listing
  (5..35%, mean ~12%, long-tailed like real search), placed towards the end of its results:
  ``irrelevant_other_series`` (a fresh scene in another candidate's signature, not a copy;
  `HostedImage.true_series_id` names that series) and ``irrelevant_offtopic`` (a banner, a
  logo or a generic stock-like scene: `tv100.sandbox.imagegen.offtopic_scene`), the split
  between them drawn per series (30..70% other series);
- junk, 1-2 of each kind in the world: ``junk_blank``, ``junk_tiny`` (16×16),
  ``junk_corrupt`` (JPEG header then garbage), ``junk_html`` (HTML served as image/jpeg),
  ``junk_gif_as_jpg``, ``junk_bomb`` (a 30000×30000 PNG of ~110 KiB), ``junk_cmyk``,
  ``junk_alpha_png``, ``junk_webp``;
- faults, 1-2 of each kind: ``fault_5xx`` (always 500/502/503), ``fault_429`` (429 with
  ``Retry-After: 1`` on the first request for that URL, then 200), ``fault_slow`` (`slow_s`
  seconds before the headers), ``fault_truncated`` (Content-Length of the whole image, half of
  it sent, then the connection closed), ``fault_redirect_loop`` (302 to ``?hop=n+1`` forever),
  ``fault_lying_length`` (the whole image sent, Content-Length 4 KiB larger, then close),
  ``fault_too_large`` (`too_large_bytes` of JPEG-looking bytes, chunked, no Content-Length),
  ``fault_noai`` (a valid image with ``X-Robots-Tag: noai``), ``fault_robots`` (a valid image
  under ``/img/private/``, a folder the sandbox's robots.txt disallows: `tv100.sandbox.robots`).

Expected statuses (`EXPECTED_STATUS`), the decisions a downloader is held to:

- ``ok``: ordinary and irrelevant images, every duplicate and cross-series copy, blank and
  tiny images (the clean stage flags those later), the GIF named ``.jpg`` (decoded by
  content), CMYK JPEG, RGBA PNG, WebP (all converted to RGB JPEG by the downloader), and the
  429-then-200 URL.
- ``decode_error``: the corrupt JPEG and the decompression bomb (Pillow refuses it on open with
  ``Image.DecompressionBombError``; a downloader must not raise the pixel limit for it).
- ``not_image``: the HTML page served as ``image/jpeg`` (content sniffing, not the header).
- ``http_error``: always-5xx, the redirect loop, and both short bodies (truncated and lying
  Content-Length): the HTTP layer sees the connection close before the declared length, a
  transfer failure, so nothing reaches the decoder (``tv100.tasks.web.client`` reports it as its
  connection-level ``error``; the downloader records it as ``http_error``).
- ``timeout``: the slow URL (`slow_s` must exceed the downloader's timeout).
- ``too_large``: the oversized body (`too_large_bytes` must exceed the downloader's cap).
- ``opted_out``: the ``X-Robots-Tag: noai`` image.
- ``robots_disallowed``: the image under ``/img/private/`` (never requested at all).

Source pages (``/page/<token>.html``, one per image, what the engines link as its page) show
the image and name it in their head for link previews: ``og:image`` (absolute) and
``twitter:image`` (relative), as most sites do. Page plants (`PAGE_PLANTS`, two of each kind
among ordinary images, `HostedImage.page_plant`; they never change the image itself):
``page_noai`` (``<meta name="robots" content="noai, noimageai">`` in the head) and
``page_no_og_image`` (Open Graph tags but no image named). Only a downloader that reads the
page (a thumbnail-only hit's, `tv100.tasks.collect.shards`) sees them; what it must then record
is `ImageCatalog.expected_through_page`.

Thumbnails (`ImageCatalog.thumbnail`, served by the engines' thumbnail URLs,
`tv100.sandbox.engines`): the image shrunk to fit `THUMBNAIL_SIDE` pixels, as a JPEG; None
where the host serves no decodable image (bodiless faults, the corrupt JPEG, the HTML, the
bomb), which the engines answer with a 404.

Routes (`ImageCatalog.register`): ``/img/<token>[.ext]`` (ext ``.jpg``, ``.jpeg``, ``.png``,
``.webp`` or none; ``/img/private/<token>.jpg`` for ``fault_robots``) and
``/page/<token>.html`` (the image's source page).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import html
import io
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import pyarrow as pa

from tv100.sandbox import imagegen
from tv100.sandbox.imagegen import Signature
from tv100.sandbox.robots import PRIVATE_IMAGES
from tv100.sandbox.server import Request, Response
from tv100.sandbox.world import series_rng
from tv100.tasks.parallel import mp_context

if TYPE_CHECKING:
    from PIL import Image

    from tv100.sandbox.server import SandboxServer
    from tv100.sandbox.world import Title, World

MIB = 1024 * 1024

#: Fewest images listed for one series, whatever the scale.
MIN_PER_SERIES = 5

DUP_KINDS: tuple[str, ...] = ("exact_duplicate", *imagegen.NEAR_KINDS)
JUNK_KINDS: tuple[str, ...] = (
    "junk_blank",
    "junk_tiny",
    "junk_corrupt",
    "junk_html",
    "junk_gif_as_jpg",
    "junk_bomb",
    "junk_cmyk",
    "junk_alpha_png",
    "junk_webp",
)
FAULT_KINDS: tuple[str, ...] = (
    "fault_5xx",
    "fault_429",
    "fault_slow",
    "fault_truncated",
    "fault_redirect_loop",
    "fault_lying_length",
    "fault_too_large",
    "fault_noai",
    "fault_robots",
)
#: Irrelevant images (label noise): real pixels that do not show the series they are listed for.
IRRELEVANT_KINDS: tuple[str, ...] = ("irrelevant_other_series", "irrelevant_offtopic")
#: Every value `HostedImage.plant` takes besides None.
PLANT_KINDS: tuple[str, ...] = (
    *DUP_KINDS, "cross_series", *JUNK_KINDS, *FAULT_KINDS, *IRRELEVANT_KINDS
)
#: Share of a series' listed images that are irrelevant: ``LOW + SPAN * Beta(a, b)``, drawn
#: per series: most series get a little noise, a few get a lot (mean ~12%, 5..35%).
NOISE_LOW, NOISE_SPAN, NOISE_BETA = 0.05, 0.30, (0.7, 2.2)

#: What the downloader must record for each plant kind (None: an ordinary image).
EXPECTED_STATUS: dict[str | None, str] = {
    None: "ok",
    **{k: "ok" for k in DUP_KINDS},
    "cross_series": "ok",
    "junk_blank": "ok",
    "junk_tiny": "ok",
    "junk_corrupt": "decode_error",
    "junk_html": "not_image",
    "junk_gif_as_jpg": "ok",
    "junk_bomb": "decode_error",
    "junk_cmyk": "ok",
    "junk_alpha_png": "ok",
    "junk_webp": "ok",
    "fault_5xx": "http_error",
    "fault_429": "ok",
    "fault_slow": "timeout",
    "fault_truncated": "http_error",
    "fault_redirect_loop": "http_error",
    "fault_lying_length": "http_error",
    "fault_too_large": "too_large",
    "fault_noai": "opted_out",
    "fault_robots": "robots_disallowed",
    **{k: "ok" for k in IRRELEVANT_KINDS},
}

#: Kinds of source-page plants (`HostedImage.page_plant`), each on two ordinary images.
PAGE_PLANTS: tuple[str, ...] = ("page_noai", "page_no_og_image")
#: The longer side of an engine's thumbnail, at most (Google's basic-HTML ones are ~150 px).
THUMBNAIL_SIDE = 150

#: Faults that never answer with an image file at all.
_BODILESS = frozenset({"fault_5xx", "fault_redirect_loop", "fault_too_large"})
#: Plants no thumbnail can be made of (the host serves no decodable image; the bomb is not
#: decoded on purpose).
_NO_THUMBNAIL = _BODILESS | {"junk_corrupt", "junk_html", "junk_bomb"}
#: Faults whose URL never yields the image's bytes as a complete 200 body (no sha256).
_NO_SHA = frozenset(FAULT_KINDS) - {"fault_429"}
#: Plants whose bytes show no series image (no signature).
_NO_SIGNATURE = frozenset(
    {
        "irrelevant_offtopic",
        "junk_blank",
        "junk_corrupt",
        "junk_html",
        "junk_bomb",
        "fault_5xx",
        "fault_redirect_loop",
        "fault_too_large",
    }
)
#: Faults that hide an ordinary JPEG of the series behind their misbehaviour.
_FAULT_SCENES = frozenset(
    {
        "fault_429",
        "fault_slow",
        "fault_truncated",
        "fault_lying_length",
        "fault_noai",
        "fault_robots",
    }
)
_EXT = {"junk_bomb": ".png", "junk_alpha_png": ".png", "junk_webp": ".webp"}
_CONTENT_TYPE = {"junk_bomb": "image/png", "junk_alpha_png": "image/png", "junk_webp": "image/webp"}
_TITLE_TEMPLATES = (
    "{t} TV Series still",
    "{t} ({y}) episode {e}",
    "{o} - scene {n}",
    "Watch {t} season {s} episode {e}",
    "{t} cast photo",
    "{t} ({y}) poster wallpaper",
    "{o} {t} behind the scenes",
)

#: Schema of the `sandbox_images` table (`ImageCatalog.manifest_table`).
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("url", pa.string(), nullable=False),
        pa.field("series_id", pa.string(), nullable=False),
        pa.field("plant", pa.string()),
        pa.field("original_url", pa.string()),
        pa.field("expected_status", pa.string(), nullable=False),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("sha256", pa.string()),
        pa.field("signature", pa.int32()),
        pa.field("page_plant", pa.string()),
        pa.field("true_series_id", pa.string()),
    ]
)


@dataclass(frozen=True)
class HostedImage:
    """One image URL as the search engines list it, with its ground truth.

    Attributes:
        url_path: path on the sandbox server, e.g. ``/img/ab12cd34ef.jpg`` (some without an
            extension).
        series_id: the series whose search results list it.
        plant: None for an ordinary image, else one of `PLANT_KINDS`.
        original_url_path: for duplicates, near duplicates and cross-series copies, the
            ordinary image they copy; else None.
        title: the caption a search engine shows.
        page_path: the page the image appears on (``/page/<token>.html``).
        width: pixel width a search engine would report.
        height: pixel height a search engine would report.
        expected_status: what the downloader must record (see `EXPECTED_STATUS`).
        signature: the visual signature id of the series the pixels show (a cross-series
            copy shows its original's series), None when they show none (blank, corrupt,
            HTML, bomb, and faults that never deliver an image).
        page_plant: None for an ordinary source page, else one of `PAGE_PLANTS`.
        true_series_id: the series the pixels show (`series_id` for ordinary images; for
            ``irrelevant_other_series`` the other series, a cross-series copy its original's),
            None when they show none (off-topic images, blank and bodiless plants).
    """

    url_path: str
    series_id: str
    plant: str | None
    original_url_path: str | None
    title: str
    page_path: str
    width: int
    height: int
    expected_status: str
    signature: int | None = None
    page_plant: str | None = None
    true_series_id: str | None = None


@dataclass(frozen=True)
class _Recipe:
    """How the bytes of one URL are made (private to the catalog)."""

    series_id: str  # whose signature the pixels use (a cross-series copy: the original's)
    key: str  # purpose suffix of the RNG stream for this image's pixels
    width: int  # render size
    height: int
    extra: int = 0  # plant-specific: HTTP status of fault_5xx, colour of junk_blank, off-topic kind


class _LRU:
    """A thread-safe LRU cache of bytes with a total size budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._data: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self.hits += 1
            self._data.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.budget:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.size -= len(old)
            self._data[key] = value
            self.size += len(value)
            while self.size > self.budget:
                _, dropped = self._data.popitem(last=False)
                self.size -= len(dropped)

    def __len__(self) -> int:
        return len(self._data)


@lru_cache(maxsize=1)
def _bomb_bytes() -> bytes:
    return imagegen.bomb_png()


def _token(seed: int, series_id: str, key: str) -> str:
    return hashlib.blake2b(
        f"{seed}\x1f{series_id}\x1fimg\x1f{key}".encode(), digest_size=6
    ).hexdigest()


def tail_counts(n: int, seed: int, scale: float = 1.0) -> list[int]:
    """Images per series for `n` candidate series, in candidate order (long tail).

    A seeded permutation gives every series a rank r; rank r gets
    ``round((14 + 270 * (r + 1) ** -0.85) * jitter * scale)`` images (jitter 0.92..1.08),
    at least `MIN_PER_SERIES`. These counts include the per-series duplicates but not the
    world-level plants (cross-series copies, junk, faults, one guaranteed duplicate of each
    kind), which come on top.

    Args:
        n: number of candidate series.
        seed: world seed.
        scale: multiplies every count (e.g. 0.1 for fast tests).
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    rng = series_rng(seed, "", "images/tail")
    ranks = rng.permutation(n)
    jitter = rng.uniform(0.92, 1.08, size=n)
    base = (14 + 270 * (ranks + 1.0) ** -0.85) * jitter
    return [max(MIN_PER_SERIES, round(float(b) * scale)) for b in base]


class ImageCatalog:
    """Every image URL of the sandbox with its ground truth, and the route handlers.

    Build it with `build_catalog`. Attributes: `images` (all `HostedImage`s, series in
    world order, each in rank order), `by_path` (url_path → `HostedImage`), `signatures`
    (series_id → `imagegen.Signature`), `slow_s`, `too_large_bytes`, `scale`, `seed`.
    """

    def __init__(
        self,
        world: World,
        scale: float,
        slow_s: float,
        too_large_bytes: int,
        cache_bytes: int,
        noise: bool = True,
    ) -> None:
        self.world = world
        self.seed = world.seed
        self.scale = scale
        self.noise = noise
        self.slow_s = slow_s
        self.too_large_bytes = too_large_bytes
        self.signatures: dict[str, Signature] = {}
        self.images: tuple[HostedImage, ...] = ()
        self.by_path: dict[str, HostedImage] = {}
        self._by_page: dict[str, HostedImage] = {}
        self._by_series: dict[str, list[HostedImage]] = {}
        self._recipes: dict[str, _Recipe] = {}
        self._cache = _LRU(cache_bytes)
        self._sha: dict[str, str] = {}
        self._lock = threading.Lock()
        self._requests: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------------ lookups
    def listing_key(self) -> str:
        """A digest of everything the search engines list (16 hex): the world's seed and
        titles, and every image's URL, series, plant, caption, page, size and planted status,
        in order. Two catalogs that list anything differently (another seed, scale, number
        of series, noise) have different keys."""
        h = hashlib.blake2b(digest_size=8)
        h.update(f"{self.seed}\x1e{self.scale!r}\x1e".encode())
        for t in self.world.titles:
            h.update(f"{t.series_id}\x1f{t.title}\x1f{t.original_title}\x1e".encode())
        for img in self.images:
            h.update(repr(img).encode())
        return h.hexdigest()

    def for_series(self, series_id: str) -> list[HostedImage]:
        """The images listed for `series_id`, in search-rank order (empty if none)."""
        return list(self._by_series.get(series_id, ()))

    @property
    def series_ids(self) -> list[str]:
        """Series that have images (the world's candidates), in world order."""
        return list(self._by_series)

    def signature_id(self, series_id: str) -> int:
        """The visual signature id of a series (its index among the candidates)."""
        return self.signatures[series_id].sig_id

    def content_type(self, url_path: str) -> str:
        """The Content-Type the host sends for an image (what the URL claims, not the truth)."""
        plant = self.by_path[url_path].plant
        return _CONTENT_TYPE.get(plant or "", "image/jpeg")

    # ------------------------------------------------------------------ bytes
    def content(self, url_path: str) -> bytes | None:
        """The bytes of a complete 200 answer for `url_path` (the image file).

        For faults this is the image hidden behind the fault (served after the 429, after the
        delay, cut short, or with the noai header); None where there is none (always-5xx,
        the redirect loop, the oversized body). Deterministic; cached.

        Raises:
            KeyError: for an unknown path.
        """
        img = self.by_path[url_path]
        if img.plant in _BODILESS:
            return None
        cached = self._cache.get(url_path)
        if cached is not None:
            return cached
        data = self._make(img)
        self._cache.put(url_path, data)
        with self._lock:
            self._sha.setdefault(url_path, hashlib.sha256(data).hexdigest())
        return data

    def sha256(self, url_path: str) -> str | None:
        """sha256 of the served image bytes; None for faults other than `fault_429`."""
        img = self.by_path[url_path]
        if img.plant in _NO_SHA:
            return None
        with self._lock:
            sha = self._sha.get(url_path)
        if sha is None:
            data = self.content(url_path)
            assert data is not None
            sha = hashlib.sha256(data).hexdigest()
        return sha

    def prerender(self, workers: int = 1) -> int:
        """Render every image now (fills the cache and the sha256 table); returns the count.

        ~6 ms an image on one core (~15 s for the default world, ~10 min for 100,000
        images). Call it (or `manifest_table`, which calls it) before serving many images,
        so that serving is not bound by rendering. ``workers > 1`` renders in that many
        processes (threads gain little: Pillow holds the GIL while drawing), each with its
        own copy of this catalog (`build_catalog` from the same arguments: the same bytes),
        chunks of `PRERENDER_CHUNK` images at a time; their bytes come back to this cache.
        """
        paths = [i.url_path for i in self.images if i.plant not in _BODILESS]
        with self._lock:
            todo = [p for p in paths if p not in self._sha]
        if workers <= 1 or len(todo) < 2 * PRERENDER_CHUNK:
            for p in todo:
                self.content(p)
            return len(paths)
        chunks = [todo[i : i + PRERENDER_CHUNK] for i in range(0, len(todo), PRERENDER_CHUNK)]
        args = (self.world, self.scale, self.slow_s, self.too_large_bytes, self.noise)
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp_context(),
                                 initializer=_init_render_worker, initargs=args) as pool:
            for rendered in pool.map(_render_chunk, chunks):
                for path, data in rendered:
                    self._cache.put(path, data)
                    with self._lock:
                        self._sha.setdefault(path, hashlib.sha256(data).hexdigest())
        return len(paths)

    def cache_info(self) -> dict[str, int]:
        """Cache statistics: entries, bytes, budget, hits, misses."""
        c = self._cache
        return {
            "entries": len(c),
            "bytes": c.size,
            "budget": c.budget,
            "hits": c.hits,
            "misses": c.misses,
        }

    def thumbnail(self, url_path: str) -> bytes | None:
        """An engine's thumbnail of the image: it shrunk to fit `THUMBNAIL_SIDE`, as a JPEG.

        None where the host serves no decodable image (see `_NO_THUMBNAIL`). Deterministic;
        cached.

        Raises:
            KeyError: for an unknown path.
        """
        from PIL import Image

        if self.by_path[url_path].plant in _NO_THUMBNAIL:
            return None
        key = f"thumb:{url_path}"
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        data = self.content(url_path)
        assert data is not None
        with Image.open(io.BytesIO(data)) as im:
            small = im.convert("RGB")
        small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BICUBIC)
        thumb = imagegen.encode(small, quality=80)
        self._cache.put(key, thumb)
        return thumb

    def expected_through_page(self, url_path: str) -> tuple[str, str]:
        """What a downloader must record for a thumbnail-only hit of this image.

        The hit's URL is the image's thumbnail and its page the image's source page; the
        downloader reads the page, stores the image it names (``og_image``) or else the
        thumbnail (``thumbnail``), and honours the page's opt-out (``source_page``).

        Returns:
            (status, source) of the `images` row.
        """
        img = self.by_path[url_path]
        if img.page_plant == "page_noai":
            return "opted_out", "source_page"
        if img.page_plant != "page_no_og_image" and img.expected_status in ("ok", "opted_out"):
            return img.expected_status, "og_image"
        # The page's image failed (or there is none): the thumbnail, if the engine has one.
        return ("http_error" if img.plant in _NO_THUMBNAIL else "ok"), "thumbnail"

    def _scene(
        self, recipe: _Recipe, width: int | None = None, height: int | None = None
    ) -> Image.Image:
        sig = self.signatures[recipe.series_id]
        rng = series_rng(self.seed, recipe.series_id, f"images/{recipe.key}")
        return imagegen.render_scene(sig, rng, width or recipe.width, height or recipe.height)

    def _make(self, img: HostedImage) -> bytes:
        recipe = self._recipes[img.url_path]
        plant = img.plant
        if plant is None or plant in _FAULT_SCENES or plant == "irrelevant_other_series":
            return imagegen.encode(self._scene(recipe))
        if plant in ("exact_duplicate", "cross_series"):
            assert img.original_url_path is not None
            data = self.content(img.original_url_path)
            assert data is not None
            return data
        rng = series_rng(self.seed, img.series_id, f"images/{recipe.key}/plant")
        if plant in imagegen.NEAR_KINDS:
            assert img.original_url_path is not None
            data = self.content(img.original_url_path)
            assert data is not None
            return imagegen.near_variant(data, plant, rng)
        if plant == "junk_blank":
            c = recipe.extra
            return imagegen.blank_jpeg(((c >> 16) & 255, (c >> 8) & 255, c & 255))
        if plant == "junk_tiny":
            return imagegen.tiny_jpeg(self._scene(recipe, 128, 96), 16)
        if plant == "junk_corrupt":
            return imagegen.corrupt_jpeg(rng)
        if plant == "junk_html":
            return imagegen.html_page(self.world.by_id[img.series_id].title)
        if plant == "junk_gif_as_jpg":
            return imagegen.gif_bytes(self._scene(recipe))
        if plant == "junk_bomb":
            return _bomb_bytes()
        if plant == "junk_cmyk":
            return imagegen.cmyk_jpeg(self._scene(recipe))
        if plant == "junk_alpha_png":
            return imagegen.alpha_png(self._scene(recipe), rng)
        if plant == "junk_webp":
            return imagegen.webp_bytes(self._scene(recipe))
        if plant == "irrelevant_offtopic":
            kind = imagegen.OFFTOPIC_KINDS[recipe.extra]
            return imagegen.encode(imagegen.offtopic_scene(kind, rng, recipe.width, recipe.height))
        raise ValueError(f"no bytes for plant {plant!r} at {img.url_path}")

    # ------------------------------------------------------------------ serving
    def register(self, server: SandboxServer) -> None:
        """Mount ``/img/`` and ``/page/`` on a `tv100.sandbox.server.SandboxServer`."""
        server.register("/img/", self.handle_image)
        server.register("/page/", self.handle_page)

    def reset_state(self) -> None:
        """Forget per-URL request counts (the 429 plants answer 429 again once)."""
        with self._lock:
            self._requests.clear()

    def request_count(self, url_path: str) -> int:
        """How many requests the host has answered for `url_path`."""
        with self._lock:
            return self._requests[url_path]

    def handle_image(self, request: Request) -> Response | None:
        """Answer ``/img/<token>[.ext]`` (None → 404 for unknown paths)."""
        img = self.by_path.get(request.path)
        if img is None:
            return None
        with self._lock:
            seen = self._requests[img.url_path]
            self._requests[img.url_path] += 1
        plant = img.plant
        headers = {
            "Content-Type": self.content_type(img.url_path),
            "Cache-Control": "public, max-age=86400",
        }
        if plant == "fault_5xx":
            code = self._recipes[img.url_path].extra
            return Response.text("<html><body>upstream error</body></html>", code, "text/html")
        if plant == "fault_429" and seen == 0:
            return Response(
                status=429,
                headers={"Retry-After": "1", "Content-Type": "text/plain"},
                body=b"too many requests\n",
            )
        if plant == "fault_redirect_loop":
            try:
                hop = int(request.query.get("hop", "0"))
            except ValueError:
                hop = 0
            location = f"{request.base_url}{img.url_path}?hop={hop + 1}"
            return Response(
                status=302, headers={"Location": location, "Content-Type": "text/plain"}
            )
        if plant == "fault_too_large":
            return Response(headers=headers, chunks=self._big_body())
        data = self.content(img.url_path)
        assert data is not None
        if plant == "fault_slow":
            return Response(headers=headers, body=data, delay=self.slow_s)
        if plant == "fault_truncated":
            return Response(
                headers=headers, body=data[: len(data) // 2], content_length=len(data), close=True
            )
        if plant == "fault_lying_length":
            return Response(headers=headers, body=data, content_length=len(data) + 4096, close=True)
        if plant == "fault_noai":
            headers["X-Robots-Tag"] = "noai"
        return Response(headers=headers, body=data)

    def _big_body(self) -> Iterator[bytes]:
        rng = series_rng(self.seed, "", "images/too-large")
        block = imagegen.jpeg_ish_block(rng, 256 * 1024)
        left = self.too_large_bytes
        first = True
        while left > 0:
            piece = block if first else block[64:]
            first = False
            yield piece[:left]
            left -= min(left, len(piece))

    def handle_page(self, request: Request) -> Response | None:
        """Answer ``/page/<token>.html``: the image's source page (see the module docstring)."""
        img = self._by_page.get(request.path)
        if img is None:
            return None
        body = source_page_html(request.base_url, img, self.world.by_id[img.series_id].title)
        return Response.text(body, content_type="text/html")

    # ------------------------------------------------------------------ ground truth
    def manifest_table(self, workers: int = 1) -> pa.Table:
        """The ground truth as table ``sandbox_images`` (one row per listed image URL).

        Columns: url (path only), series_id, plant, original_url, expected_status, width,
        height, sha256 (of the served bytes; null for faults other than fault_429),
        signature (int32; null where the bytes show no series), page_plant, true_series_id
        (the series the pixels show; null where none). Renders every image first
        (`prerender`; through the cache, ~15 s for the default world).
        """
        self.prerender(workers)
        imgs = self.images
        cols = {
            "url": [i.url_path for i in imgs],
            "series_id": [i.series_id for i in imgs],
            "plant": [i.plant for i in imgs],
            "original_url": [i.original_url_path for i in imgs],
            "expected_status": [i.expected_status for i in imgs],
            "width": [i.width for i in imgs],
            "height": [i.height for i in imgs],
            "sha256": [self.sha256(i.url_path) for i in imgs],
            "signature": [i.signature for i in imgs],
            "page_plant": [i.page_plant for i in imgs],
            "true_series_id": [i.true_series_id for i in imgs],
        }
        return pa.table(cols, schema=MANIFEST_SCHEMA)


def source_page_html(base: str, img: HostedImage, series_title: str) -> str:
    """The source page of `img` on the server at `base`: a gallery page showing the image.

    Its head carries what real pages do for link previews (Open Graph, Twitter card, a
    JSON-LD ``ImageObject``) and, for page plants, their opt-out or the image left unnamed.
    """
    caption = html.escape(img.title)
    series = html.escape(series_title)
    page_url = html.escape(base + img.page_path)
    image_url = html.escape(base + img.url_path)
    robots = (
        '<meta name="robots" content="noai, noimageai">'
        if img.page_plant == "page_noai"
        else '<meta name="robots" content="index, follow, max-image-preview:large">'
    )
    preview = (
        ""
        if img.page_plant == "page_no_og_image"
        else f'<meta property="og:image" content="{image_url}">'
        f'<meta property="og:image:width" content="{img.width}">'
        f'<meta property="og:image:height" content="{img.height}">'
        f'<meta property="og:image:alt" content="{caption}">'
        f'<meta name="twitter:image" content="{html.escape(img.url_path)}">'
    )
    ld = json.dumps(
        {"@context": "https://schema.org", "@type": "ImageObject", "name": img.title,
         "contentUrl": base + img.url_path, "width": img.width, "height": img.height},
        separators=(",", ":"),
    ).replace("</", "<\\/")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{caption} | {series} | TV Stills</title>"
        f'<link rel="canonical" href="{page_url}">'
        f'<meta name="description" content="{caption}: a still from {series}.">{robots}'
        '<meta property="og:type" content="article"><meta property="og:site_name" '
        f'content="TV Stills"><meta property="og:title" content="{caption}">'
        f'<meta property="og:url" content="{page_url}">{preview}'
        '<meta name="twitter:card" content="summary_large_image">'
        '<meta name="twitter:site" content="@tvstills">'
        '<link rel="stylesheet" href="/static/gallery.css">'
        '<script async src="/static/consent.js"></script>'
        f'<script type="application/ld+json">{ld}</script></head><body>'
        '<header class="site-header"><a class="logo" href="/">TV Stills</a><nav>'
        '<a href="/series/">Series</a> <a href="/new/">New</a></nav></header><main>'
        f'<h1>{series}</h1><figure class="still"><img src="{html.escape(img.url_path)}" '
        f'width="{img.width}" height="{img.height}" alt="{caption}" loading="eager">'
        f"<figcaption>{caption}</figcaption></figure></main>"
        '<footer><a href="/about/">About</a> · <a href="/privacy/">Privacy</a></footer>'
        "</body></html>\n"
    )


#: Images per task of a process-parallel `ImageCatalog.prerender`.
PRERENDER_CHUNK = 256
#: Cache budget of a prerender worker: enough for the originals its chunks copy.
_WORKER_CACHE_BYTES = 64 * MIB
_worker_catalog: ImageCatalog | None = None


def _init_render_worker(
    world: World, scale: float, slow_s: float, too_large_bytes: int, noise: bool
) -> None:
    global _worker_catalog
    _worker_catalog = build_catalog(world, scale, slow_s=slow_s, too_large_bytes=too_large_bytes,
                                    cache_bytes=_WORKER_CACHE_BYTES, noise=noise)


def _render_chunk(paths: list[str]) -> list[tuple[str, bytes]]:
    assert _worker_catalog is not None, "prerender worker not initialised"
    out = []
    for path in paths:
        data = _worker_catalog.content(path)
        assert data is not None  # bodiless plants are never sent
        out.append((path, data))
    return out


# ---------------------------------------------------------------------------- building


def build_catalog(
    world: World,
    scale: float = 1.0,
    *,
    slow_s: float = 30.0,
    too_large_bytes: int = 30 * MIB,
    cache_bytes: int = 512 * MIB,
    noise: bool = True,
) -> ImageCatalog:
    """Build the image catalog of `world` (no image is rendered here).

    Args:
        world: the sandbox ground truth; only its candidates (``expected``) get images.
        scale: multiplies the per-series counts (at least `MIN_PER_SERIES` each); the
            world-level plants (one or two of each junk and fault kind, one of each
            duplicate kind, 2-4 cross-series copies) do not scale.
        slow_s: seconds `fault_slow` waits before its headers (tests use ~3).
        too_large_bytes: body size of `fault_too_large` (must exceed the downloader's cap).
        cache_bytes: budget of the LRU cache of rendered bytes.
        noise: plant the label noise (irrelevant images); False lists none, every other
            image and plant unchanged.

    Returns:
        The `ImageCatalog`; same world seed and arguments, same URLs and bytes.
    """
    cat = ImageCatalog(world, scale, slow_s, too_large_bytes, cache_bytes, noise)
    seed = world.seed
    candidates = [t for t in world.titles if t.expected]
    counts = tail_counts(len(candidates), seed, scale)
    recipes: dict[str, _Recipe] = {}
    images: dict[str, HostedImage] = {}
    ordinary: dict[str, list[str]] = {}
    lists: dict[str, list[str]] = {}

    for sig_id, title in enumerate(candidates):
        sid = title.series_id
        cat.signatures[sid] = imagegen.make_signature(sig_id, world.rng(sid, "images/signature"))

    def add(
        title: Title,
        key: str,
        plant: str | None,
        ext: str,
        recipe: _Recipe,
        original: str | None = None,
        size: tuple[int, int] | None = None,
    ) -> str:
        sid = title.series_id
        token = _token(seed, sid, key)
        folder = PRIVATE_IMAGES if plant == "fault_robots" else "/img/"
        path = f"{folder}{token}{ext}"
        if path in images:  # pragma: no cover - 48-bit tokens
            raise RuntimeError(f"image token collision at {path}")
        meta = series_rng(seed, sid, f"images/{key}/meta")
        template = _TITLE_TEMPLATES[int(meta.integers(len(_TITLE_TEMPLATES)))]
        caption = template.format(
            t=title.title,
            o=title.original_title,
            y=title.start_year or "",
            e=int(meta.integers(1, 25)),
            s=int(meta.integers(1, 4)),
            n=int(meta.integers(1, 200)),
        )
        if plant in _NO_SIGNATURE:
            signature, true_sid = None, None
        else:
            signature, true_sid = cat.signatures[recipe.series_id].sig_id, recipe.series_id
        width, height = size or (recipe.width, recipe.height)
        images[path] = HostedImage(
            url_path=path,
            series_id=sid,
            plant=plant,
            original_url_path=original,
            title=caption,
            page_path=f"/page/{token}.html",
            width=width,
            height=height,
            expected_status=EXPECTED_STATUS[plant],
            signature=signature,
            true_series_id=true_sid,
        )
        recipes[path] = recipe
        return path

    def scene_recipe(sid: str, key: str) -> _Recipe:
        meta = series_rng(seed, sid, f"images/{key}/size")
        w, h = imagegen.SIZES[int(meta.integers(len(imagegen.SIZES)))]
        return _Recipe(sid, key, w, h)

    def add_dup(title: Title, key: str, kind: str, original: str) -> str:
        orig = images[original]
        rec = recipes[original]
        size = imagegen.near_size(kind, orig.width, orig.height)
        return add(title, key, kind, ".jpg", _Recipe(rec.series_id, key, *size), original, size)

    # Per series: ordinary images and ~10% duplicates, shuffled into rank order.
    for title, n in zip(candidates, counts, strict=True):
        sid = title.series_id
        rng = world.rng(sid, "images")
        rate = float(rng.uniform(0.06, 0.14))
        n_dup = min(n - 1, round(n * rate))
        n_ord = n - n_dup
        paths = []
        for i in range(n_ord):
            key = f"o{i}"
            ext = str(rng.choice([".jpg", ".jpeg", ""], p=[0.75, 0.1, 0.15]))
            paths.append(add(title, key, None, ext, scene_recipe(sid, key)))
        ordinary[sid] = list(paths)
        for j in range(n_dup):
            kind = DUP_KINDS[int(rng.integers(len(DUP_KINDS)))]
            original = paths[int(rng.integers(n_ord))]
            paths.append(add_dup(title, f"d{j}", kind, original))
        rng.shuffle(paths)
        lists[sid] = paths

    # World level: one of each duplicate kind, cross-series copies, junk and faults.
    wrng = series_rng(seed, "", "images/plants")
    by_index = [t.series_id for t in candidates]

    def place(sid: str, path: str) -> None:
        lst = lists[sid]
        lst.insert(int(wrng.integers(len(lst) + 1)), path)

    for kind in DUP_KINDS:
        title = candidates[int(wrng.integers(len(candidates)))]
        src = ordinary[title.series_id]
        place(title.series_id, add_dup(title, f"w-{kind}", kind, src[int(wrng.integers(len(src)))]))
    if len(candidates) >= 2:
        for j in range(int(wrng.integers(2, 5))):
            a, b = wrng.choice(len(candidates), size=2, replace=False)
            src = ordinary[by_index[int(a)]]
            original = src[int(wrng.integers(len(src)))]
            title = candidates[int(b)]
            rec = recipes[original]
            recipe = _Recipe(rec.series_id, f"x{j}", rec.width, rec.height)
            path = add(title, f"x{j}", "cross_series", ".jpg", recipe, original)
            place(title.series_id, path)
    for kind in (*JUNK_KINDS, *FAULT_KINDS):
        for j in range(int(wrng.integers(1, 3))):
            title = candidates[int(wrng.integers(len(candidates)))]
            sid = title.series_id
            key = f"p-{kind}-{j}"
            recipe = scene_recipe(sid, key)
            size: tuple[int, int] | None = None
            if kind == "fault_5xx":
                code = int(wrng.choice([500, 502, 503]))
                recipe = _Recipe(sid, key, recipe.width, recipe.height, code)
            elif kind == "junk_blank":
                rgb = wrng.integers(0, 256, size=3)
                color = int(rgb[0]) << 16 | int(rgb[1]) << 8 | int(rgb[2])
                recipe = _Recipe(sid, key, 640, 480, color)
            elif kind == "junk_tiny":
                size = (16, 16)
            elif kind == "junk_bomb":
                size = (30_000, 30_000)
            place(sid, add(title, key, kind, _EXT.get(kind, ".jpg"), recipe, None, size))

    # Label noise, from streams of their own (the images above stay as they were): per series
    # a share of irrelevant images, other series' scenes and off-topic pictures, placed
    # towards the end of its results as search ranks them.
    candidate_ids = [t.series_id for t in candidates]
    for pos, (title, n) in enumerate(zip(candidates, counts, strict=True) if noise else ()):
        sid = title.series_id
        nrng = world.rng(sid, "images/noise")
        rate = NOISE_LOW + NOISE_SPAN * float(nrng.beta(*NOISE_BETA))
        n_noise = max(1, round(n * rate / (1 - rate)))
        other_share = float(nrng.uniform(0.3, 0.7)) if len(candidates) >= 2 else 0.0
        for j in range(n_noise):
            key = f"n{j}"
            recipe = scene_recipe(sid, key)
            if nrng.uniform() < other_share:
                # the k-th of the other series (the list without `sid`, in order), without
                # building that list per image: quadratic in series at 400+ of them
                k = int(nrng.integers(len(candidate_ids) - 1))
                other = candidate_ids[k if k < pos else k + 1]
                # The pixel stream names both series: two series' noise showing the same
                # third one never draws the same picture.
                path = add(title, key, "irrelevant_other_series", ".jpg",
                           _Recipe(other, f"n-{sid}-{j}", recipe.width, recipe.height))
            else:
                kind = int(nrng.integers(len(imagegen.OFFTOPIC_KINDS)))
                path = add(title, key, "irrelevant_offtopic", ".jpg",
                           _Recipe(sid, key, recipe.width, recipe.height, kind))
            lst = lists[sid]
            lst.insert(int(len(lst) * float(nrng.uniform()) ** 0.5 + 0.5), path)

    # Source-page plants, from a stream of their own: the images above stay as they were.
    prng = series_rng(seed, "", "images/pages")
    plain = sorted(p for p, i in images.items() if i.plant is None)
    picks = prng.choice(len(plain), size=min(4, len(plain)), replace=False)
    for n, index in enumerate(int(i) for i in picks):
        path = plain[index]
        images[path] = dataclasses.replace(images[path], page_plant=PAGE_PLANTS[n % 2])

    ordered: list[HostedImage] = []
    for title in candidates:
        sid = title.series_id
        cat._by_series[sid] = [images[p] for p in lists[sid]]
        ordered.extend(cat._by_series[sid])
    cat.images = tuple(ordered)
    cat.by_path = {i.url_path: i for i in ordered}
    cat._by_page = {i.page_path: i for i in ordered}
    cat._recipes = recipes
    return cat
