"""Deterministic, seeded ground truth for the offline sandbox.

`build_world(seed, n_series)` makes up a small IMDb: `n_series` candidate TV series that a
discover run with ``since=2021`` must keep, plus a fixed set of negatives (movies, episodes,
series that started in or before 2021, adult series and a miniseries without a year) that it
must drop. Everything the sandbox server renders (list pages, title pages, the TSV datasets)
is derived from this ground truth, so tests can compare what a pipeline found with what is
really there.

Determinism: series ids and the country allocation come from one master stream seeded by
`seed`; every other attribute of a title comes from its own stream derived from
``(seed, series_id, purpose)`` (see `series_rng`). Later ground truth (images, search-engine
results) must use new ``purpose`` strings, so adding it never changes existing titles.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from tv100.tasks.discover.config import DISCOVER
from tv100.tasks.discover.imdb_codes import SERIES_KINDS

#: The cut-off used by the TV100 recipe: a series qualifies when start_year > CUTOFF_YEAR.
CUTOFF_YEAR = DISCOVER.since

#: Country shares of TV100 (paper, table of origins); used to allocate candidate countries.
COUNTRY_SHARES: dict[str, float] = {"CN": 0.55, "JP": 0.25, "KR": 0.16, "TH": 0.03, "US": 0.01}

#: ISO 639-1 language spoken in each sandbox country.
COUNTRY_LANGUAGE: dict[str, str] = {"CN": "zh", "JP": "ja", "KR": "ko", "TH": "th", "US": "en"}

#: IMDb's genre list (ids as used in title.basics and on title pages).
IMDB_GENRES: tuple[str, ...] = (
    "Action", "Adult", "Adventure", "Animation", "Biography", "Comedy", "Crime", "Documentary",
    "Drama", "Family", "Fantasy", "Film-Noir", "Game-Show", "History", "Horror", "Music",
    "Musical", "Mystery", "News", "Reality-TV", "Romance", "Sci-Fi", "Short", "Sport",
    "Talk-Show", "Thriller", "War", "Western",
)  # fmt: skip

NEGATIVE_REASONS: tuple[str, ...] = ("movie", "episode", "before_cutoff", "adult", "no_year")

# Genre weights per country: (genre, weight). Drama-heavy, like the TV100 sources.
_GENRE_WEIGHTS: dict[str, list[tuple[str, float]]] = {
    "CN": [("Drama", 10), ("Romance", 7), ("Fantasy", 5), ("History", 4), ("Action", 3),
           ("Comedy", 3), ("Mystery", 2), ("Crime", 2), ("Adventure", 1), ("Thriller", 1)],
    "JP": [("Animation", 8), ("Drama", 6), ("Comedy", 4), ("Action", 4), ("Fantasy", 4),
           ("Adventure", 3), ("Mystery", 2), ("Sci-Fi", 2), ("Romance", 2), ("Sport", 1)],
    "KR": [("Drama", 10), ("Romance", 6), ("Comedy", 5), ("Thriller", 3), ("Crime", 3),
           ("Mystery", 2), ("Fantasy", 2), ("Action", 2), ("Family", 1), ("Reality-TV", 1)],
    "TH": [("Drama", 8), ("Romance", 8), ("Comedy", 4), ("Mystery", 1), ("Family", 1)],
    "US": [("Drama", 6), ("Comedy", 4), ("Crime", 3), ("Sci-Fi", 3), ("Thriller", 3),
           ("Action", 2), ("Mystery", 2), ("Horror", 1), ("Western", 1)],
}  # fmt: skip

_ADJ = (
    "Jade", "Moonlit", "Silent", "Crimson", "Golden", "Silver", "Hidden", "Eternal", "Fallen",
    "Rising", "Wandering", "Distant", "Frozen", "Burning", "Gentle", "Scarlet", "Azure",
    "Velvet", "Broken", "Secret", "Midnight", "Endless", "Lonely", "Wild", "Brave", "Last",
    "Little", "Lost", "Sunlit", "Misty", "Paper", "Glass", "Iron", "Emerald", "Ivory",
    "Painted", "Whispering", "Restless", "Starry", "Quiet",
)  # fmt: skip
_NOUN = (
    "Lantern", "Harbor", "Palace", "River", "Blossom", "Dragon", "Phoenix", "Sword", "Falcon",
    "Garden", "Mirror", "Cloud", "Tide", "Bridge", "Orchard", "Kitchen", "Detective",
    "Courtyard", "Empress", "Scholar", "Pavilion", "Melody", "Promise", "Summer", "Winter",
    "Station", "Alley", "Lighthouse", "Academy", "Teahouse", "Kingdom", "Crane", "Peony",
    "Compass", "Archive", "Voyage", "Verdict", "Signal", "Canvas", "Orchestra",
)  # fmt: skip
_PLACES: dict[str, tuple[str, ...]] = {
    "CN": ("Chang'an", "Hangzhou", "Shanghai", "Luoyang", "Suzhou", "Chengdu"),
    "JP": ("Kyoto", "Osaka", "Sapporo", "Kamakura", "Nagasaki", "Shibuya"),
    "KR": ("Busan", "Seoul", "Jeju", "Incheon", "Gangneung", "Mokpo"),
    "TH": ("Bangkok", "Chiang Mai", "Phuket", "Pattaya"),
    "US": ("Manhattan", "Tulsa", "Boston", "Savannah"),
}

_CN_CHARS = "玉灯月港长安风云剑心梦花雪山河春秋星海龙凤宫城夜雨江湖天下少年青锦绣明珠琉璃"
_CN_SUFFIX = ("传", "记", "录", "令", "歌", "赋", "")
_PINYIN = (
    "yu", "deng", "yue", "gang", "chang", "an", "feng", "yun", "jian", "xin", "meng", "hua",
    "xue", "shan", "he", "chun", "qiu", "xing", "hai", "long", "gong", "cheng", "ye", "jiang",
    "tian", "shao", "nian", "qing", "jin", "ming", "zhu", "li",
)  # fmt: skip
_JP_KANJI = "月光港恋桜夜空雪花海星風夢城道青春刀影"
_JP_KANA = ("さくら", "ひかり", "ゆめ", "つばさ", "こころ", "ほし", "そら", "みなと")
_ROMAJI = (
    "tsu", "ki", "mi", "na", "to", "sa", "ku", "ra", "hi", "ka", "ri", "yu", "me", "ko", "ha",
    "ze", "ho", "shi", "so", "ta",
)  # fmt: skip
_HANGUL = "달빛항구비밀사랑별바다꽃눈하늘도시밤노래봄여름"
_KR_ROMAN = (
    "dal", "bit", "hang", "gu", "bi", "mil", "sa", "rang", "byeol", "ba", "da", "kkot", "nun",
    "ha", "neul", "do", "si", "bam", "no", "rae", "bom", "yeo", "reum",
)  # fmt: skip
_THAI_WORDS = ("รัก", "แรก", "ดวง", "จันทร์", "ทะเล", "หัวใจ", "เมือง", "ฝัน", "ดาว", "ฟ้า", "คืนนี้")
_THAI_ROMAN = ("Rak", "Raek", "Duang", "Jan", "Thale", "Huachai", "Mueang", "Fan", "Dao", "Fa")

# Special title shapes forced onto the first candidates (by allocation order) so every world
# has them, whatever the seed: double quotes, an apostrophe, a year-like title, a title that
# itself starts with "<number>. ", and one that starts with a number.
_FORCED_PATTERNS = ("quoted", "apostrophe", "year_title", "number_dot", "number_lead")
# Traits forced onto a few candidates (index in allocation order): no rating, no poster, no
# languages, and (index 8) over a million votes so "M" / "Mio." renderings are always served.
_FORCED_TRAITS = {5: "rating", 6: "poster", 7: "languages", 8: "blockbuster"}


@dataclass(frozen=True)
class Poster:
    """Ground truth of a title's primary image (served by a later image host)."""

    path: str  # absolute path on the sandbox server, e.g. "/media/images/M/MV5B…._V1_.jpg"
    width: int
    height: int


@dataclass(frozen=True)
class Title:
    """One title the sandbox serves (a candidate series or a negative)."""

    series_id: str
    title: str  # English primary title (imdb.com, title.basics primaryTitle)
    original_title: str  # originalTitle, often in the original script
    title_de: str  # what the /de/ locale shows (the English or the original title)
    kind: str  # IMDb titleType id: tvSeries, tvMiniSeries, movie, tvEpisode
    start_year: int | None
    end_year: int | None
    is_adult: bool
    genres: tuple[str, ...]
    countries: tuple[str, ...]  # ISO 3166 alpha-2, production order
    languages: tuple[str, ...]  # ISO 639-1
    rating: float | None  # one decimal
    num_votes: int | None
    episodes: int | None
    negative_reason: str | None = None
    parent_id: str | None = None  # tvEpisode rows: the series they belong to
    poster: Poster | None = None
    runtime_minutes: int | None = None
    #: Whether the sandbox's pre-trained CLIP (`tv100.sandbox.pretrain`) was trained on this series:
    #: half of the candidates, chosen by `pick_known`; always False for negatives.
    known: bool = False

    @property
    def expected(self) -> bool:
        """Whether a discover run with since=2021 must keep this title."""
        return self.negative_reason is None

    @property
    def is_series(self) -> bool:
        """Whether the titleType is a series kind (tvSeries or tvMiniSeries)."""
        return self.kind in SERIES_KINDS


@dataclass
class World:
    """Ground truth of one sandbox: every title served, with lookups."""

    seed: int
    titles: tuple[Title, ...]  # sorted by series_id
    datasets_modified: datetime
    by_id: dict[str, Title] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_id = {t.series_id: t for t in self.titles}

    def rng(self, series_id: str, purpose: str) -> np.random.Generator:
        """Return the RNG stream for (this world's seed, series_id, purpose)."""
        return series_rng(self.seed, series_id, purpose)

    def candidates(self, since: int = CUTOFF_YEAR) -> list[Title]:
        """Titles a discover run with `since` must keep, by IMDb's own fields.

        A title qualifies when it is a tvSeries/tvMiniSeries, not adult, and its start year is
        known and greater than `since`. With ``since=2021`` this is exactly the titles whose
        `expected` flag is set.
        """
        return [
            t
            for t in self.titles
            if t.kind in SERIES_KINDS
            and not t.is_adult
            and t.start_year is not None
            and t.start_year > since
        ]

    def negatives(self) -> list[Title]:
        """Titles with a `negative_reason` (must be dropped by discover with since=2021)."""
        return [t for t in self.titles if t.negative_reason is not None]

    def manifest_tables(self) -> dict[str, pa.Table]:
        """Return the ground-truth tables; ``sandbox_series`` has one row per title served."""
        ts = self.titles
        strings = pa.string()
        lists = pa.list_(pa.string())
        cols: dict[str, pa.Array] = {
            "series_id": pa.array([t.series_id for t in ts], strings),
            "title": pa.array([t.title for t in ts], strings),
            "original_title": pa.array([t.original_title for t in ts], strings),
            "title_de": pa.array([t.title_de for t in ts], strings),
            "kind": pa.array([t.kind for t in ts], strings),
            "start_year": pa.array([t.start_year for t in ts], pa.int32()),
            "end_year": pa.array([t.end_year for t in ts], pa.int32()),
            "is_adult": pa.array([t.is_adult for t in ts], pa.bool_()),
            "genres": pa.array([list(t.genres) for t in ts], lists),
            "countries": pa.array([list(t.countries) for t in ts], lists),
            "languages": pa.array([list(t.languages) for t in ts], lists),
            "rating": pa.array([t.rating for t in ts], pa.float32()),
            "num_votes": pa.array([t.num_votes for t in ts], pa.int64()),
            "episodes": pa.array([t.episodes for t in ts], pa.int32()),
            "parent_id": pa.array([t.parent_id for t in ts], strings),
            "poster_path": pa.array([t.poster.path if t.poster else None for t in ts], strings),
            "negative_reason": pa.array([t.negative_reason for t in ts], strings),
            "expected": pa.array([t.expected for t in ts], pa.bool_()),
            "known": pa.array([t.known for t in ts], pa.bool_()),
        }
        return {"sandbox_series": pa.table(cols)}


def series_rng(seed: int, series_id: str, purpose: str) -> np.random.Generator:
    """Return an independent RNG stream for ``(seed, series_id, purpose)``.

    Streams are derived with BLAKE2b, so they do not depend on how many other titles exist
    or in which order they were generated.
    """
    digest = hashlib.blake2b(
        f"{seed}\x1f{series_id}\x1f{purpose}".encode(), digest_size=16
    ).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def allocate_countries(n: int) -> list[str]:
    """Split `n` candidates over TV100's country shares (largest remainder).

    With n >= 5 every country gets at least one series, so Thailand and the USA are present.
    The result is sorted by share (CN first); callers shuffle it.
    """
    codes = list(COUNTRY_SHARES)
    exact = [COUNTRY_SHARES[c] * n for c in codes]
    counts = [int(x) for x in exact]
    order = sorted(range(len(codes)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    if n >= len(codes):
        for i in range(len(codes)):
            while counts[i] == 0:
                donor = max(range(len(codes)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return [c for c, k in zip(codes, counts, strict=True) for _ in range(k)]


def pick_known(seed: int, candidate_ids: Sequence[str]) -> frozenset[str]:
    """The candidates the sandbox CLIP is pre-trained on: ``len // 2`` of them, seeded.

    A permutation of the sorted ids drawn from its own stream (purpose ``"known"``), so the
    choice depends only on the seed and the candidate set and draws from no other stream.
    """
    ids = sorted(candidate_ids)
    order = series_rng(seed, "", "known").permutation(len(ids))
    return frozenset(ids[int(i)] for i in order[: len(ids) // 2])


def build_world(seed: int = 0, n_series: int = 48) -> World:
    """Build the sandbox ground truth for `seed`.

    Args:
        seed: master seed; the same seed always gives the same world.
        n_series: number of candidate series (the negatives come on top: 2 movies,
            2 episodes, 3 series started 2015-2021, 2 adult series, 1 miniseries without year).

    Returns:
        The `World`, titles sorted by series_id.
    """
    if n_series < 1:
        raise ValueError(f"n_series must be >= 1, got {n_series}")
    master = np.random.default_rng(seed)
    negative_specs = _negative_specs()
    ids = _draw_ids(master, n_series + len(negative_specs))
    cand_ids, neg_ids = ids[:n_series], ids[n_series:]
    countries = allocate_countries(n_series)
    master.shuffle(countries)

    used_titles: set[str] = set()
    titles: list[Title] = []
    for i, (sid, country) in enumerate(zip(cand_ids, countries, strict=True)):
        titles.append(_make_candidate(seed, i, sid, country, used_titles))

    series_pool = [t for t in titles if t.start_year is not None]
    for sid, spec in zip(neg_ids, negative_specs, strict=True):
        titles.append(_make_negative(seed, sid, spec, series_pool, used_titles))

    titles.sort(key=lambda t: t.series_id)
    known = pick_known(seed, [t.series_id for t in titles if t.expected])
    titles = [replace(t, known=True) if t.series_id in known else t for t in titles]
    modified = datetime(2025, 6, 1, 6, 0, tzinfo=UTC) + timedelta(hours=int(seed % 1000))
    return World(seed=seed, titles=tuple(titles), datasets_modified=modified)


# --------------------------------------------------------------------------- generation


def _draw_ids(rng: np.random.Generator, n: int) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        if rng.random() < 0.25:
            sid = f"tt{int(rng.integers(1_000_000, 10_000_000)):07d}"
        else:
            sid = f"tt{int(rng.integers(10_000_000, 40_000_000)):08d}"
        if sid not in seen:
            seen.add(sid)
            out.append(sid)
    return out


def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _english_title(rng: np.random.Generator, country: str, pattern: str | None) -> str:
    if pattern is None:
        pattern = _pick(
            rng,
            ["the_adj", "the_adj", "adj_noun", "adj_noun", "noun_of_place", "love_in", "sequel",
             "apostrophe", "possessive_place"],
        )  # fmt: skip
    adj, noun, noun2 = _pick(rng, _ADJ), _pick(rng, _NOUN), _pick(rng, _NOUN)
    place = _pick(rng, _PLACES[country])
    if pattern == "the_adj":
        return f"The {adj} {noun}"
    if pattern == "adj_noun":
        return f"{adj} {noun}"
    if pattern == "noun_of_place":
        return f"The {noun} of {place}"
    if pattern == "love_in":
        return f"Love in {place}"
    if pattern == "sequel":
        return f"{adj} {noun} {int(rng.integers(2, 4))}"
    if pattern == "apostrophe":
        return f"The {noun}'s {noun2}"
    if pattern == "possessive_place":
        return f"{place}'s {adj} {noun}"
    if pattern == "quoted":
        return f'Operation "{adj} {noun}"'
    if pattern == "year_title":
        return str(int(rng.integers(1890, 1990)))
    if pattern == "number_dot":
        return f"{int(rng.integers(2, 40))}. {noun} Street"
    if pattern == "number_lead":
        return f"{int(rng.integers(2, 40))} {adj} {noun}s"
    raise ValueError(f"unknown title pattern {pattern!r}")


def _original_title(rng: np.random.Generator, country: str, english: str) -> str:
    native = rng.random()
    if country == "CN":
        if native < 0.6:
            k = int(rng.integers(2, 5))
            chars = "".join(_CN_CHARS[int(rng.integers(len(_CN_CHARS)))] for _ in range(k))
            return chars + _pick(rng, _CN_SUFFIX)
        words = [
            "".join(_pick(rng, _PINYIN) for _ in range(int(rng.integers(1, 3))))
            for _ in range(int(rng.integers(2, 4)))
        ]
        return " ".join(words).capitalize()
    if country == "JP":
        if native < 0.5:
            k1 = "".join(_JP_KANJI[int(rng.integers(len(_JP_KANJI)))] for _ in range(2))
            return f"{k1}の{_pick(rng, _JP_KANA)}"
        w1 = "".join(_pick(rng, _ROMAJI) for _ in range(int(rng.integers(2, 4))))
        w2 = "".join(_pick(rng, _ROMAJI) for _ in range(int(rng.integers(2, 4))))
        return f"{w1.capitalize()} no {w2}"
    if country == "KR":
        if native < 0.5:
            words = [
                "".join(_HANGUL[int(rng.integers(len(_HANGUL)))] for _ in range(2))
                for _ in range(2)
            ]
            return " ".join(words)
        w1 = "".join(_pick(rng, _KR_ROMAN) for _ in range(2))
        w2 = "".join(_pick(rng, _KR_ROMAN) for _ in range(2))
        return f"{w1.capitalize()} {w2}"
    if country == "TH":
        if native < 0.7:
            return "".join(_pick(rng, _THAI_WORDS) for _ in range(int(rng.integers(2, 4))))
        return " ".join(_pick(rng, _THAI_ROMAN) for _ in range(2))
    return english


def _genres(rng: np.random.Generator, country: str, extra: str | None = None) -> tuple[str, ...]:
    weights = _GENRE_WEIGHTS[country]
    names = [g for g, _ in weights]
    p = np.array([w for _, w in weights], dtype=float)
    k = int(rng.integers(1, 4))
    chosen = set(rng.choice(names, size=min(k, len(names)), replace=False, p=p / p.sum()))
    if extra:
        chosen.add(extra)
        while len(chosen) > 3:
            chosen.discard(sorted(chosen - {extra})[0])
    return tuple(sorted(str(g) for g in chosen))


def _rating_votes(rng: np.random.Generator) -> tuple[float, int]:
    rating = round(float(np.clip(rng.normal(7.3, 0.9), 5.0, 9.5)), 1)
    votes = int(np.clip(np.exp(rng.normal(7.5, 2.2)), 5, 3_500_000))
    return rating, votes


def _poster(seed: int, series_id: str) -> Poster:
    rng = series_rng(seed, series_id, "poster")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    token = "MV5B" + "".join(alphabet[int(rng.integers(len(alphabet)))] for _ in range(40))
    width = int(rng.choice([540, 675, 800, 1000, 1382]))
    height = int(round(width * float(rng.choice([1.48, 1.5, 1.4815]))))
    return Poster(path=f"/media/images/M/{token}._V1_.jpg", width=width, height=height)


def _unique(title: str, used: set[str]) -> str:
    out, n = title, 2
    while out in used:
        out = f"{title} {n}"
        n += 1
    used.add(out)
    return out


def _make_candidate(seed: int, index: int, sid: str, country: str, used: set[str]) -> Title:
    rng = series_rng(seed, sid, "title")
    pattern = _FORCED_PATTERNS[index] if index < len(_FORCED_PATTERNS) else None
    countries: tuple[str, ...] = (country,)
    if country in ("CN", "JP", "KR") and rng.random() < 0.1:
        partner = _pick(rng, [c for c in ("CN", "JP", "KR") if c != country])
        countries = (country, partner)
    title = _unique(_english_title(rng, country, pattern), used)
    original = _original_title(rng, country, title)
    title_de = original if (original != title and rng.random() < 0.35) else title
    kind = "tvMiniSeries" if rng.random() < 0.3 else "tvSeries"
    start = int(rng.integers(2022, 2026))
    if kind == "tvMiniSeries":
        end: int | None = start if rng.random() < 0.8 else None
        episodes = int(rng.integers(4, 13))
    else:
        ongoing = rng.random() < 0.45 or start == 2025
        end = None if ongoing else int(rng.integers(start, 2026))
        episodes = int(rng.integers(10, 61))
    rating: float | None
    votes: int | None
    rating, votes = _rating_votes(rng)
    languages = tuple(dict.fromkeys(COUNTRY_LANGUAGE[c] for c in countries))
    genres = _genres(rng, country)
    trait = _FORCED_TRAITS.get(index)
    if trait == "rating":
        rating, votes = None, None
    if trait == "languages":
        languages = ()
    if trait == "blockbuster":
        votes = int(rng.integers(1_000_000, 2_600_000))
    poster = None if trait == "poster" else _poster(seed, sid)
    return Title(
        series_id=sid,
        title=title,
        original_title=original,
        title_de=title_de,
        kind=kind,
        start_year=start,
        end_year=end,
        is_adult=False,
        genres=genres,
        countries=countries,
        languages=languages,
        rating=rating,
        num_votes=votes,
        episodes=episodes,
        poster=poster,
        runtime_minutes=int(rng.integers(20, 71)),
    )


@dataclass(frozen=True)
class _NegSpec:
    reason: str
    kind: str
    start_year: int | None
    adult: bool = False


def _negative_specs() -> list[_NegSpec]:
    return [
        _NegSpec("movie", "movie", 2023),
        _NegSpec("movie", "movie", 2024),
        _NegSpec("episode", "tvEpisode", None),  # year comes from the parent
        _NegSpec("episode", "tvEpisode", None),
        _NegSpec("before_cutoff", "tvSeries", 2021),
        _NegSpec("before_cutoff", "tvSeries", 2018),
        _NegSpec("before_cutoff", "tvMiniSeries", 2015),
        _NegSpec("adult", "tvSeries", 2023, adult=True),
        _NegSpec("adult", "tvSeries", 2024, adult=True),
        _NegSpec("no_year", "tvMiniSeries", None),
    ]


def _make_negative(
    seed: int, sid: str, spec: _NegSpec, series_pool: list[Title], used: set[str]
) -> Title:
    rng = series_rng(seed, sid, "title")
    country = _pick(rng, ["CN", "CN", "JP", "KR"])
    languages: tuple[str, ...] = (COUNTRY_LANGUAGE[country],)
    rating: float | None
    votes: int | None
    rating, votes = _rating_votes(rng)
    parent_id = None
    start, end = spec.start_year, None
    episodes: int | None = int(rng.integers(6, 41))
    runtime: int | None = int(rng.integers(20, 71))
    if spec.kind == "movie":
        title = _unique(_english_title(rng, country, None), used)
        original = _original_title(rng, country, title)
        episodes, runtime = None, int(rng.integers(85, 161))
    elif spec.kind == "tvEpisode":
        parent = series_pool[int(rng.integers(len(series_pool)))]
        parent_id, country, languages = parent.series_id, parent.countries[0], parent.languages
        season, number = 1, int(rng.integers(1, (parent.episodes or 2) + 1))
        title = original = f"Episode #{season}.{number}"
        start = parent.start_year
        episodes = None
        votes = max(5, votes // 20)
    else:
        title = _unique(_english_title(rng, country, None), used)
        original = _original_title(rng, country, title)
        if spec.reason == "before_cutoff" and rng.random() < 0.6:
            end = int(rng.integers(spec.start_year or 2015, 2024))
        if spec.kind == "tvMiniSeries" and start is not None:
            end = start
    if spec.reason == "no_year":
        rating, votes = None, None
    genres = _genres(rng, country, extra="Adult" if spec.adult else None)
    title_de = original if (original != title and rng.random() < 0.35) else title
    return Title(
        series_id=sid,
        title=title,
        original_title=original,
        title_de=title_de,
        kind=spec.kind,
        start_year=start,
        end_year=end,
        is_adult=spec.adult,
        genres=genres,
        countries=(country,),
        languages=languages,
        rating=rating,
        num_votes=votes,
        episodes=episodes,
        negative_reason=spec.reason,
        parent_id=parent_id,
        poster=_poster(seed, sid),
        runtime_minutes=runtime,
    )
