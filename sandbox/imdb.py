"""The made-up IMDb: pages and files in the formats of the real site.

- Advanced-search list pages (``/search/title/?title_type=...&release_date=...&start=N``),
  English at ``/`` and German under ``/de/``, in the markup of the current imdb.com
  (``ul.ipc-metadata-list > li.ipc-metadata-list-summary-item``) inside realistic page chrome.
  ``count=`` sets the page size (default 50). Like the real site, the release-date filter lets
  some older titles through (the sandbox's ``before_cutoff`` negatives) and the list includes
  adult and year-less series, so a client has to check title pages.
- Title pages (``/title/ttNNNNNNN/``, ``/de/title/...``) with a ``__NEXT_DATA__`` JSON blob
  shaped like the real one (countries and languages in ``mainColumnData``) and a JSON-LD
  block. Titles without a rating, poster or languages omit those fields.

The IMDb non-commercial datasets are `tv100.sandbox.imdb_datasets`.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable

from tv100.sandbox.server import Request, Response
from tv100.sandbox.world import SERIES_KINDS, Title, World

DEFAULT_PAGE_SIZE = 50
LOCALES: tuple[str, ...] = ("en", "de")

#: Advanced-search title_type values → IMDb titleType ids.
TITLE_TYPE_PARAM: dict[str, str] = {
    "tv_series": "tvSeries",
    "tv_miniseries": "tvMiniSeries",
    "feature": "movie",
    "tv_episode": "tvEpisode",
}

#: How IMDb labels the title types, per locale.
TYPE_LABELS: dict[str, dict[str, str]] = {
    "en": {"tvSeries": "TV Series", "tvMiniSeries": "TV Mini Series", "movie": "Movie",
           "tvEpisode": "Episode"},
    "de": {"tvSeries": "Fernsehserie", "tvMiniSeries": "Miniserie", "movie": "Film",
           "tvEpisode": "Folge"},
}  # fmt: skip

COUNTRY_NAMES: dict[str, dict[str, str]] = {
    "en": {"CN": "China", "JP": "Japan", "KR": "South Korea", "TH": "Thailand",
           "US": "United States"},
    "de": {"CN": "China", "JP": "Japan", "KR": "Südkorea", "TH": "Thailand",
           "US": "Vereinigte Staaten"},
}  # fmt: skip

#: IMDb's language ids (Chinese is "cmn", Mandarin) and names, per locale.
IMDB_LANGUAGE_ID: dict[str, str] = {"zh": "cmn", "ja": "ja", "ko": "ko", "th": "th", "en": "en"}
LANGUAGE_NAMES: dict[str, dict[str, str]] = {
    "en": {"zh": "Mandarin", "ja": "Japanese", "ko": "Korean", "th": "Thai", "en": "English"},
    "de": {"zh": "Mandarin", "ja": "Japanisch", "ko": "Koreanisch", "th": "Thailändisch",
           "en": "Englisch"},
}  # fmt: skip

GENRE_NAMES_DE: dict[str, str] = {
    "Action": "Action", "Adult": "Erwachsene", "Adventure": "Abenteuer",
    "Animation": "Animation", "Biography": "Biografie", "Comedy": "Komödie", "Crime": "Krimi",
    "Documentary": "Dokumentarfilm", "Drama": "Drama", "Family": "Familie",
    "Fantasy": "Fantasy", "History": "Historie", "Horror": "Horror", "Music": "Musik",
    "Mystery": "Mystery", "Reality-TV": "Reality-TV", "Romance": "Liebesfilm",
    "Sci-Fi": "Sci-Fi", "Sport": "Sport", "Thriller": "Thriller", "War": "Kriegsfilm",
    "Western": "Western",
}  # fmt: skip

_CERTS = {"en": ("TV-14", "TV-MA", "TV-PG", "TV-Y7"), "de": ("12", "16", "6", "0")}
_JSONLD_TYPE = {"tvSeries": "TVSeries", "tvMiniSeries": "TVSeries", "movie": "Movie",
                "tvEpisode": "TVEpisode"}  # fmt: skip


# ============================================================================ formatting


def year_label(t: Title) -> str | None:
    """The years as the list page shows them: ``2023– ``, ``2021–2023`` or ``2025``."""
    if t.start_year is None:
        return None
    if t.kind not in SERIES_KINDS:
        return str(t.start_year)
    if t.end_year is None:
        return f"{t.start_year}\u2013 "
    if t.end_year == t.start_year:
        return str(t.start_year)
    return f"{t.start_year}\u2013{t.end_year}"


def format_rating(rating: float, locale: str) -> str:
    """``8.7`` (en) or ``8,7`` (de)."""
    text = f"{rating:.1f}"
    return text.replace(".", ",") if locale == "de" else text


def format_votes(votes: int, locale: str) -> str:
    """Vote count as the list page shows it, without parentheses.

    English abbreviates (``999``, ``1.2K``, ``646K``, ``2.2M``); German writes full numbers
    with ``.`` grouping (``646.623``) and millions as ``1,2 Mio.``.
    """
    if locale == "de":
        if votes < 1_000_000:
            return f"{votes:,}".replace(",", ".")
        return f"{votes / 1e6:.1f}".replace(".", ",").removesuffix(",0") + " Mio."
    if votes < 1000:
        return str(votes)
    if votes < 10_000:
        return f"{votes / 1000:.1f}".removesuffix(".0") + "K"
    if votes < 999_500:
        return f"{round(votes / 1000)}K"
    return f"{votes / 1e6:.1f}".removesuffix(".0") + "M"


def _localized_title(t: Title, locale: str) -> str:
    return t.title_de if locale == "de" else t.title


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _script_json(data: object) -> str:
    """JSON for inside a <script> element (no '</script>' can appear)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _ld_escape(text: str) -> str:
    """IMDb's JSON-LD HTML-escapes text values (``Grey&apos;s Anatomy``)."""
    return (
        text.replace("&", "&amp;")
        .replace("'", "&apos;")
        .replace('"', "&quot;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


# ============================================================================ list pages


def served_titles(
    world: World,
    kinds: Iterable[str] | None = None,
    year_from: int | None = None,
    year_to: int | None = None,
) -> list[Title]:
    """Titles the advanced search lists, in the site's order (most votes first).

    The release-date filter keeps titles whose start year lies in [year_from, year_to]; like
    the real per-country filter it lets ``before_cutoff`` titles and titles without a year
    through. Adult titles are listed too.
    """
    wanted = set(kinds) if kinds is not None else None
    out = []
    for t in world.titles:
        if wanted is not None and t.kind not in wanted:
            continue
        leaks = t.negative_reason == "before_cutoff" or t.start_year is None
        if not leaks and t.start_year is not None:
            if year_from is not None and t.start_year < year_from:
                continue
            if year_to is not None and t.start_year > year_to:
                continue
        out.append(t)
    out.sort(key=lambda t: (-(t.num_votes or 0), t.series_id))
    return out


def _li(t: Title, rank: int, locale: str, base_url: str) -> str:
    name = _localized_title(t, locale)
    items = []
    years = year_label(t)
    if years is not None:
        items.append(years)
    if t.episodes is not None:
        items.append(f"{t.episodes} Folgen" if locale == "de" else f"{t.episodes} eps")
    certs = _CERTS[locale]
    items.append(certs[int(t.series_id[2:]) % len(certs)])
    meta = "".join(
        f'<span class="sc-b189961a-8 hCbzGp dli-title-metadata-item">{_e(x)}</span>' for x in items
    )
    label = TYPE_LABELS[locale].get(t.kind, t.kind)
    rate_word = "Bewerten" if locale == "de" else "Rate"
    if t.rating is not None and t.num_votes is not None:
        aria = "IMDb-Bewertung" if locale == "de" else "IMDb rating"
        r = format_rating(t.rating, locale)
        rating_html = (
            f'<span aria-label="{aria}: {r}" class="ipc-rating-star ipc-rating-star--base '
            'ipc-rating-star--imdb ratingGroup--imdb-rating" '
            'data-testid="ratingGroup--imdb-rating">'
            '<svg width="24" height="24" xmlns="http://www.w3.org/2000/svg" '
            'class="ipc-icon ipc-icon--star-inline" viewBox="0 0 24 24" fill="currentColor" '
            'role="presentation"><path d="M12 20.1l5.82 3.682c1.066.675 2.37-.322 2.09-1.584l'
            "-1.543-6.926 5.146-4.667c.94-.85.435-2.465-.799-2.567l-6.773-.602L13.29.89a1.38 "
            "1.38 0 0 0-2.581 0l-2.65 6.53-6.774.602C.052 8.126-.453 9.74.486 10.59l5.147 "
            '4.666-1.542 6.926c-.28 1.262 1.023 2.26 2.09 1.585L12 20.099z"></path></svg>'
            f'<span class="ipc-rating-star--rating">{r}</span>'
            '<span class="ipc-rating-star--voteCount">&nbsp;(<!-- -->'
            f"{_e(format_votes(t.num_votes, locale))}<!-- -->)</span></span>"
        )
    else:
        rating_html = ""
    img = ""
    if t.poster is not None:
        img = (
            f'<img alt="{_e(name)}" class="ipc-image" loading="lazy" '
            f'src="{_e(base_url + t.poster.path)}" sizes="50vw, (min-width: 480px) 34vw" '
            'width="140">'
        )
    plot = (
        "Eine Geschichte über Freundschaft, Verrat und Hoffnung."
        if locale == "de"
        else "A story of friendship, betrayal and hope."
    )
    return (
        '<li class="ipc-metadata-list-summary-item">'
        '<div class="sc-4b408797-0 eFqEzG dli-parent"><div class="sc-4b408797-1 cOTuVd">'
        '<div class="ipc-poster ipc-poster--base ipc-poster--media-radius '
        'ipc-poster--dynamic-width ipc-sub-grid-item ipc-sub-grid-item--span-2" role="group">'
        '<div class="ipc-media ipc-media--poster-27x40 ipc-image-media-ratio--poster-27x40 '
        "ipc-media--media-radius ipc-media--base ipc-media--poster-m ipc-poster__poster-image "
        f'ipc-media__img" style="width:100%">{img}</div>'
        f'<a class="ipc-lockup-overlay ipc-focusable" href="/title/{t.series_id}/?ref_=sr_i_{rank}"'
        f' aria-label="{_e(name)}"><div class="ipc-lockup-overlay__screen"></div></a></div>'
        '<div class="sc-b189961a-0 iqHBGn">'
        '<div class="ipc-title ipc-title--base ipc-title--title ipc-title-link-no-icon '
        'ipc-title--on-textPrimary sc-b189961a-9 bnSrml dli-title with-margin">'
        f'<a href="/title/{t.series_id}/?ref_=sr_t_{rank}" class="ipc-title-link-wrapper" '
        f'tabindex="0"><h3 class="ipc-title__text">{rank}. {_e(name)}</h3></a></div>'
        f'<div class="sc-b189961a-7 btCcOY dli-title-metadata">{meta}</div>'
        f'<span class="sc-b189961a-10 jNuWXh dli-title-type-data">{_e(label)}</span>'
        '<span class="sc-b189961a-1 kcRofM dli-ratings-container" '
        f'data-testid="ratingGroup--container">{rating_html}'
        '<button class="ipc-rate-button sc-e3a4a5b8-0 ratingGroup--user-rating ipc-rate-button--'
        f'unrated ipc-rate-button--base" aria-label="{rate_word}" data-testid="rate-button">'
        f'<span class="ipc-rating-star--rate">{rate_word}</span></button></span>'
        "</div></div></div>"
        '<div class="sc-4b408797-3 dli-post-plot-container"><div class="ipc-html-content '
        'ipc-html-content--base" role="presentation"><div class="ipc-html-content-inner-div" '
        f'role="presentation">{plot}</div></div></div></li>'
    )


def render_list_page(
    world: World,
    *,
    locale: str = "en",
    kinds: Iterable[str] | None = SERIES_KINDS,
    year_from: int | None = None,
    year_to: int | None = None,
    start: int = 1,
    count: int = DEFAULT_PAGE_SIZE,
    base_url: str = "",
    query: str = "",
) -> bytes:
    """Render one advanced-search result page (1-based `start`, `count` per page)."""
    titles = served_titles(world, kinds, year_from, year_to)
    total = len(titles)
    first = max(start, 1)
    page = titles[first - 1 : first - 1 + count]
    lang = "de-DE" if locale == "de" else "en-US"
    prefix = "/de" if locale == "de" else ""
    items = "".join(_li(t, first + i, locale, base_url) for i, t in enumerate(page))
    last = first - 1 + len(page)
    if locale == "de":
        heading, counter = (
            "Erweiterte Titelsuche",
            f"{first}–{last} von {total:,}".replace(",", "."),
        )
        sort_label, more = "Sortieren nach Beliebtheit", f"{count} weitere"
    else:
        heading, counter = "Advanced title search", f"{first}-{last} of {total:,}"
        sort_label, more = "Sort by Popularity", f"{count} more"
    more_button = ""
    if last < total:
        more_button = (
            '<div class="sc-13add9d7-0 ipc-see-more"><button class="ipc-btn '
            "ipc-btn--single-padding ipc-btn--center-align-content ipc-btn--default-height "
            "ipc-btn--core-base ipc-btn--theme-base ipc-btn--button-radius ipc-btn--on-accent2 "
            'ipc-text-button ipc-see-more__button" tabindex="0" aria-disabled="false">'
            f'<span class="ipc-btn__text"><span class="ipc-see-more__text">{more}</span></span>'
            "</button></div>"
        )
    next_data = {
        "props": {
            "pageProps": {
                "searchInput": {"titleTypeConstraint": {"anyTitleTypeIds": sorted(kinds or [])}},
                "requestContext": {"sidecar": {"localizedStrings": {}}},
            },
            "__N_SSP": True,
        },
        "page": "/search/title",
        "query": {"q": query},
        "buildId": "sandbox-build",
        "locale": lang,
    }
    decoy = json.dumps(
        {"template": '<li class="ipc-metadata-list-summary-item"><a href="/title/tt0000001/">'}
    )
    body = f"""<!DOCTYPE html>
<html lang="{lang}" xmlns:og="http://opengraphprotocol.org/schema/"><head>
<meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{heading} - IMDb</title>
<meta property="og:site_name" content="IMDb">
<script>if(typeof uet==='function'){{uet('bb','LoadTitle',{{wb:1}});}}</script>
<script>window.__IMDB_TEMPLATES__ = {decoy};</script>
<link rel="stylesheet" href="https://m.media-amazon.com/images/S/sash/sandbox.css">
</head><body id="styleguide-v2" class="fixed">
<div id="__next"><nav id="imdbHeader" class="ipc-page-wrapper imdb-header imdb-header--sticky">
<a href="{prefix}/" aria-label="Home"><svg id="home_img" width="64" height="32"></svg></a>
<div class="nav-search__search-container"><form id="nav-search-form" action="{prefix}/find/">
<input type="text" name="q" placeholder="Search IMDb" autocomplete="off"></form></div>
<ul class="ipc-list"><li class="ipc-list__item"><a href="{prefix}/chart/top/">Top 250</a></li>
<li class="ipc-list__item"><a href="{prefix}/calendar/">Release calendar</a></li></ul></nav>
<main role="main" class="ipc-page-wrapper"><section class="ipc-page-section ipc-page-section--base">
<h1 class="ipc-title__text">{heading}</h1>
<div class="sc-13add9d7-3 fwjHEn">{counter}</div>
<button class="ipc-btn ipc-btn--single-padding" aria-label="{sort_label}">
<span class="ipc-btn__text">{sort_label}</span></button>
<ul class="ipc-metadata-list ipc-metadata-list--dividers-between sc-748571c8-0 jmWPOZ
 detailed-list-view ipc-metadata-list--base" role="presentation">{items}</ul>
{more_button}
</section>
<aside class="sc-sidebar"><h3 class="ipc-title__text">More to explore</h3>
<ul class="ipc-metadata-list ipc-metadata-list--base"><li class="ipc-metadata-list-summary-item">
<a href="{prefix}/chart/toptv/" class="ipc-title-link-wrapper">
<h3 class="ipc-title__text">Top 250 TV Shows</h3></a></li></ul></aside></main>
<footer class="imdb-footer"><a href="https://help.imdb.com/">Help</a>
<span>© 1990-2025 by IMDb.com, Inc.</span></footer></div>
<script id="__NEXT_DATA__" type="application/json">{_script_json(next_data)}</script>
<script src="https://m.media-amazon.com/images/S/sash/framework.js" async></script>
</body></html>
"""
    return body.encode("utf-8")


# ============================================================================ title pages


def title_next_data(t: Title, locale: str, base_url: str) -> dict[str, object]:
    """The ``__NEXT_DATA__`` object of a title page (real imdb.com shape, reduced)."""
    name = _localized_title(t, locale)
    type_text = TYPE_LABELS[locale].get(t.kind, t.kind)
    genres = [
        {"text": GENRE_NAMES_DE.get(g, g) if locale == "de" else g, "id": g, "__typename": "Genre"}
        for g in t.genres
    ]
    above: dict[str, object] = {
        "id": t.series_id,
        "productionStatus": {"currentProductionStage": {"id": "released", "text": "Released"}},
        "canHaveEpisodes": t.kind in SERIES_KINDS,
        "titleText": {"text": name, "__typename": "TitleText"},
        "titleType": {
            "displayableProperty": {"value": {"plainText": type_text}},
            "text": type_text,
            "id": t.kind,
            "isSeries": t.kind in SERIES_KINDS,
            "isEpisode": t.kind == "tvEpisode",
            "canHaveEpisodes": t.kind in SERIES_KINDS,
            "__typename": "TitleType",
        },
        "originalTitleText": {"text": t.original_title, "__typename": "TitleText"},
        "releaseYear": (
            {"year": t.start_year, "endYear": t.end_year, "__typename": "YearRange"}
            if t.start_year is not None
            else None
        ),
        "ratingsSummary": {
            "aggregateRating": t.rating,
            "voteCount": t.num_votes or 0,
            "__typename": "RatingsSummary",
        },
        "primaryImage": (
            {
                "id": "rm" + t.series_id[2:],
                "width": t.poster.width,
                "height": t.poster.height,
                "url": base_url + t.poster.path,
                "caption": {"plainText": name, "__typename": "Markdown"},
                "__typename": "Image",
            }
            if t.poster is not None
            else None
        ),
        "isAdult": t.is_adult,
        "genres": {"genres": genres, "__typename": "Genres"},
        "plot": {"plotText": {"plainText": "A story of friendship, betrayal and hope."}},
        "meta": {"canonicalId": t.series_id, "publicationStatus": "PUBLISHED"},
    }
    if t.parent_id is not None:
        above["series"] = {
            "series": {"id": t.parent_id, "__typename": "Title"},
            "episodeNumber": {"episodeNumber": 1, "seasonNumber": 1},
        }
    countries = [{"id": c, "text": COUNTRY_NAMES[locale].get(c, c)} for c in t.countries]
    languages = [
        {"id": IMDB_LANGUAGE_ID.get(x, x), "text": LANGUAGE_NAMES[locale].get(x, x)}
        for x in t.languages
    ]
    main: dict[str, object] = {
        "id": t.series_id,
        "countriesOfOrigin": {"countries": countries, "__typename": "CountriesOfOrigin"},
        "spokenLanguages": (
            {"spokenLanguages": languages, "__typename": "SpokenLanguages"} if languages else None
        ),
        "episodes": {"episodes": {"total": t.episodes}} if t.episodes is not None else None,
        "runtime": ({"seconds": t.runtime_minutes * 60} if t.runtime_minutes is not None else None),
    }
    lang = "de-DE" if locale == "de" else "en-US"
    return {
        "props": {
            "pageProps": {
                "tconst": t.series_id,
                "aboveTheFoldData": above,
                "mainColumnData": main,
                "requestContext": {"pageType": "title", "subPageType": "main"},
            },
            "__N_SSP": True,
        },
        "page": "/title/[tconst]",
        "query": {"tconst": t.series_id},
        "buildId": "sandbox-build",
        "isFallback": False,
        "gssp": True,
        "locale": lang,
        "locales": ["en-US", "de-DE"],
        "defaultLocale": "en-US",
        "scriptLoader": [],
    }


def title_json_ld(t: Title, locale: str, base_url: str) -> dict[str, object]:
    """The JSON-LD object of a title page (text values HTML-escaped, as imdb.com does)."""
    name = _localized_title(t, locale)
    data: dict[str, object] = {
        "@context": "https://schema.org",
        "@type": _JSONLD_TYPE.get(t.kind, "CreativeWork"),
        "url": f"{base_url}/title/{t.series_id}/",
        "name": _ld_escape(name),
    }
    if t.original_title != name:
        data["alternateName"] = _ld_escape(t.original_title)
    if t.poster is not None:
        data["image"] = base_url + t.poster.path
    data["description"] = "A story of friendship, betrayal and hope."
    if t.rating is not None and t.num_votes is not None:
        data["aggregateRating"] = {
            "@type": "AggregateRating",
            "ratingCount": t.num_votes,
            "bestRating": 10,
            "worstRating": 1,
            "ratingValue": t.rating,
        }
    data["genre"] = list(t.genres)
    if t.start_year is not None:
        data["datePublished"] = f"{t.start_year}-{1 + int(t.series_id[-2:]) % 12:02d}-15"
    return data


def render_title_page(t: Title, *, locale: str = "en", base_url: str = "") -> bytes:
    """Render the title page of `t`."""
    name = _localized_title(t, locale)
    lang = "de-DE" if locale == "de" else "en-US"
    type_text = TYPE_LABELS[locale].get(t.kind, t.kind)
    years = year_label(t) or ""
    canonical = f"{base_url}{'/de' if locale == 'de' else ''}/title/{t.series_id}/"
    hero_img = (
        f'<img alt="{_e(name)}" class="ipc-image" src="{_e(base_url + t.poster.path)}">'
        if t.poster is not None
        else ""
    )
    page = f"""<!DOCTYPE html>
<html lang="{lang}" xmlns:og="http://opengraphprotocol.org/schema/"><head>
<meta charset="utf-8">
<title>{_e(name)} ({_e(type_text)} {_e(years.strip())}) - IMDb</title>
<meta name="description" content="{_e(name)}: A story of friendship, betrayal and hope.">
<meta property="og:title" content="{_e(name)} ({_e(type_text)} {_e(years.strip())})">
<meta property="og:type" content="video.tv_show">
<meta property="imdb:pageConst" content="{t.series_id}">
<meta property="imdb:pageType" content="title">
<link rel="canonical" href="{_e(canonical)}">
<script type="application/ld+json">{_script_json(title_json_ld(t, locale, base_url))}</script>
<script>if(typeof uet==='function'){{uet('bb','LoadTitle',{{wb:1}});}}</script>
</head><body id="styleguide-v2" class="fixed"><div id="__next">
<nav id="imdbHeader" class="ipc-page-wrapper imdb-header"><a href="/" aria-label="Home">IMDb</a>
</nav><main role="main" class="ipc-page-wrapper">
<section class="sc-9a2a0028-0 hero__title"><h1 textlength="{len(name)}"
 data-testid="hero__pageTitle" class="sc-afe43def-0 hnYaOZ">
<span class="hero__primary-text" data-testid="hero__primary-text">{_e(name)}</span></h1>
<ul class="ipc-inline-list ipc-inline-list--show-dividers baseAlt" role="presentation">
<li class="ipc-inline-list__item" role="presentation">{_e(type_text)}</li>
<li class="ipc-inline-list__item" role="presentation">{_e(years)}</li></ul>
<div class="ipc-media ipc-media--poster-27x40">{hero_img}</div></section></main>
<footer class="imdb-footer"><span>© 1990-2025 by IMDb.com, Inc.</span></footer></div>
<script id="__NEXT_DATA__" type="application/json">{_script_json(title_next_data(t, locale, base_url))}</script>
</body></html>
"""  # noqa: E501
    return page.encode("utf-8")


# ============================================================================ HTTP site

_SEARCH_RE = re.compile(r"^/(?:(?P<locale>[a-z]{2})/)?search/title/?$")
_TITLE_RE = re.compile(r"^/(?:(?P<locale>[a-z]{2})/)?title/(?P<id>tt\d{7,8})/?$")
_YEAR_RE = re.compile(r"^\s*(\d{4})")


class ImdbSite:
    """Route handler serving the made-up IMDb of one `World`."""

    prefixes: tuple[str, ...] = ("/search/", "/title/", "/de/")

    def __init__(self, world: World) -> None:
        self.world = world

    def handle(self, request: Request) -> Response | None:
        """Answer a list page or title page request (None → 404)."""
        if m := _SEARCH_RE.match(request.path):
            locale = m.group("locale") or "en"
            return self._search(request, locale) if locale in LOCALES else None
        if m := _TITLE_RE.match(request.path):
            locale = m.group("locale") or "en"
            t = self.world.by_id.get(m.group("id"))
            if t is None or locale not in LOCALES:
                return _html_response(_not_found_page(), status=404)
            return _html_response(render_title_page(t, locale=locale, base_url=request.base_url))
        return None

    def _search(self, request: Request, locale: str) -> Response:
        q = request.query
        kinds: list[str] | None = None
        if q.get("title_type"):
            kinds = [
                TITLE_TYPE_PARAM[x] for x in q["title_type"].split(",") if x in TITLE_TYPE_PARAM
            ]
        year_from = year_to = None
        if "release_date" in q:
            low, _, high = q["release_date"].partition(",")
            if m := _YEAR_RE.match(low):
                year_from = int(m.group(1))
            if m := _YEAR_RE.match(high):
                year_to = int(m.group(1))
        try:
            start = max(1, int(q.get("start") or 1))
            count = min(250, max(1, int(q.get("count") or DEFAULT_PAGE_SIZE)))
        except ValueError:
            return _html_response(b"<html><body>Bad request</body></html>", status=400)
        page = render_list_page(
            self.world,
            locale=locale,
            kinds=kinds,
            year_from=year_from,
            year_to=year_to,
            start=start,
            count=count,
            base_url=request.base_url,
            query=request.raw_target,
        )
        return _html_response(page)

def _html_response(body: bytes, status: int = 200) -> Response:
    return Response(status=status, headers={"Content-Type": "text/html; charset=utf-8"}, body=body)


def _not_found_page() -> bytes:
    return (
        b"<!DOCTYPE html><html><head><title>404 Error - IMDb</title></head><body>"
        b'<div class="error-page"><h1>404 Error</h1></div></body></html>'
    )
