"""The made-up IMDb's list pages (advanced search, find) and the vocabulary every page shares.

Advanced-search pages (``/search/title/?title_type=...&release_date=...&start=N``) come in the
variants the real site has served, all ``ul.ipc-metadata-list > li.ipc-metadata-list-summary-
item`` inside realistic page chrome:

- ``dli``: the current markup (``dli-title-metadata-item``, ``dli-title-type-data``);
- ``cli``: newer pages, the same component with ``cli-`` classes;
- ``older``: the title in ``a.ipc-metadata-list-summary-item__t`` and the years in
  ``…__li`` items (also the find page's markup), the rating as a text child of the star;
- ``next_data``: ``cli`` markup plus the exact results in ``__NEXT_DATA__``
  (``props.pageProps.searchResults.titleResults.titleListItems[]``).

``count=`` sets the page size (default 50). Like the real site, the release-date filter lets
some older titles through (the sandbox's ``before_cutoff`` negatives) and the list includes
adult and year-less series, so a client has to check title pages. Find pages (``/find/?q=``)
carry their results in ``props.pageProps.titleResults.results[].listItem`` and ``older``
markup.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable

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

#: Certificates shown in list items, per locale.
CERTS = {"en": ("TV-14", "TV-MA", "TV-PG", "TV-Y7"), "de": ("12", "16", "6", "0")}
#: IMDb titleType → JSON-LD ``@type`` (no mini-series type; a TV movie or video is a Movie).
JSONLD_TYPE = {"tvSeries": "TVSeries", "tvMiniSeries": "TVSeries", "movie": "Movie",
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


def localized_title(t: Title, locale: str) -> str:
    """The title a page of `locale` shows."""
    return t.title_de if locale == "de" else t.title


def escape(text: str) -> str:
    """Text for HTML content or a quoted attribute."""
    return html.escape(text, quote=True)


def script_json(data: object) -> str:
    """JSON for inside a <script> element (no '</script>' can appear)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def ld_escape(text: str) -> str:
    """IMDb's JSON-LD HTML-escapes text values (``Grey&apos;s Anatomy``)."""
    return (
        text.replace("&", "&amp;")
        .replace("'", "&apos;")
        .replace('"', "&quot;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


#: The list-page variants (see the module docstring).
LIST_VARIANTS: tuple[str, ...] = ("dli", "cli", "older", "next_data")

_STAR_SVG = (
    '<svg width="24" height="24" xmlns="http://www.w3.org/2000/svg" '
    'class="ipc-icon ipc-icon--star-inline" viewBox="0 0 24 24" fill="currentColor" '
    'role="presentation"><path d="M12 20.1l5.82 3.682c1.066.675 2.37-.322 2.09-1.584l'
    "-1.543-6.926 5.146-4.667c.94-.85.435-2.465-.799-2.567l-6.773-.602L13.29.89a1.38 "
    "1.38 0 0 0-2.581 0l-2.65 6.53-6.774.602C.052 8.126-.453 9.74.486 10.59l5.147 "
    '4.666-1.542 6.926c-.28 1.262 1.023 2.26 2.09 1.585L12 20.099z"></path></svg>'
)


# ============================================================================ list items


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


def _metadata(t: Title, locale: str) -> list[str]:
    """The years, episode count and certificate an item shows."""
    items = []
    years = year_label(t)
    if years is not None:
        items.append(years)
    if t.episodes is not None:
        items.append(f"{t.episodes} Folgen" if locale == "de" else f"{t.episodes} eps")
    certs = CERTS[locale]
    items.append(certs[int(t.series_id[2:]) % len(certs)])
    return items


def _poster(t: Title, name: str, base_url: str) -> str:
    if t.poster is None:
        return ""
    return (
        f'<img alt="{escape(name)}" class="ipc-image" loading="lazy" '
        f'src="{escape(base_url + t.poster.path)}" sizes="50vw, (min-width: 480px) 34vw" '
        'width="140">'
    )


def _star(t: Title, locale: str, rating_span: bool) -> str:
    """The ``ipc-rating-star`` of an item; older markup has the rating as a text child."""
    if t.rating is None or t.num_votes is None:
        return ""
    aria = "IMDb-Bewertung" if locale == "de" else "IMDb rating"
    r = format_rating(t.rating, locale)
    value = f'<span class="ipc-rating-star--rating">{r}</span>' if rating_span else r
    return (
        f'<span aria-label="{aria}: {r}" class="ipc-rating-star ipc-rating-star--base '
        'ipc-rating-star--imdb ratingGroup--imdb-rating" '
        f'data-testid="ratingGroup--imdb-rating">{_STAR_SVG}{value}'
        '<span class="ipc-rating-star--voteCount">&nbsp;(<!-- -->'
        f"{escape(format_votes(t.num_votes, locale))}<!-- -->)</span></span>"
    )


def _li(t: Title, rank: int, locale: str, base_url: str, prefix: str) -> str:
    """An item in the current (``dli``) or newer (``cli``) markup."""
    name = localized_title(t, locale)
    meta = "".join(
        f'<span class="sc-b189961a-8 hCbzGp {prefix}-title-metadata-item">{escape(x)}</span>'
        for x in _metadata(t, locale)
    )
    label = TYPE_LABELS[locale].get(t.kind, t.kind)
    rate_word = "Bewerten" if locale == "de" else "Rate"
    plot = (
        "Eine Geschichte über Freundschaft, Verrat und Hoffnung."
        if locale == "de"
        else "A story of friendship, betrayal and hope."
    )
    return (
        '<li class="ipc-metadata-list-summary-item">'
        f'<div class="sc-4b408797-0 eFqEzG {prefix}-parent"><div class="sc-4b408797-1 cOTuVd">'
        f'<div class="sc-4b408797-4 fBVvDe {prefix}-poster-container">'
        '<div class="ipc-poster ipc-poster--base ipc-poster--media-radius '
        'ipc-poster--dynamic-width ipc-sub-grid-item ipc-sub-grid-item--span-2" role="group">'
        '<div class="ipc-media ipc-media--poster-27x40 ipc-image-media-ratio--poster-27x40 '
        "ipc-media--media-radius ipc-media--base ipc-media--poster-m ipc-poster__poster-image "
        f'ipc-media__img" style="width:100%">{_poster(t, name, base_url)}</div>'
        f'<a class="ipc-lockup-overlay ipc-focusable" href="/title/{t.series_id}/?ref_=sr_i_{rank}"'
        f' aria-label="{escape(name)}"><div class="ipc-lockup-overlay__screen"></div></a></div>'
        '</div><div class="sc-b189961a-0 iqHBGn">'
        '<div class="ipc-title ipc-title--base ipc-title--title ipc-title-link-no-icon '
        f'ipc-title--on-textPrimary sc-b189961a-9 bnSrml {prefix}-title with-margin">'
        f'<a href="/title/{t.series_id}/?ref_=sr_t_{rank}" class="ipc-title-link-wrapper" '
        f'tabindex="0"><h3 class="ipc-title__text">{rank}. {escape(name)}</h3></a></div>'
        f'<div class="sc-b189961a-7 btCcOY {prefix}-title-metadata">{meta}</div>'
        f'<span class="sc-b189961a-10 jNuWXh {prefix}-title-type-data">{escape(label)}</span>'
        f'<span class="sc-b189961a-1 kcRofM {prefix}-ratings-container" '
        f'data-testid="ratingGroup--container">{_star(t, locale, rating_span=True)}'
        '<button class="ipc-rate-button sc-e3a4a5b8-0 ratingGroup--user-rating ipc-rate-button--'
        f'unrated ipc-rate-button--base" aria-label="{rate_word}" data-testid="rate-button">'
        f'<span class="ipc-rating-star--rate">{rate_word}</span></button></span>'
        "</div></div>"
        f'<div class="sc-4b408797-3 {prefix}-post-plot-container"><div class="ipc-html-content '
        'ipc-html-content--base" role="presentation"><div class="ipc-html-content-inner-div" '
        f'role="presentation">{plot}</div></div></div></div></li>'
    )


def _li_older(t: Title, locale: str, base_url: str, ref: str) -> str:
    """An item in the older markup (``…__t`` title, ``…__li`` metadata), as find pages have."""
    name = localized_title(t, locale)
    items = "".join(
        '<li role="presentation" class="ipc-inline-list__item">'
        f'<span class="ipc-metadata-list-summary-item__li">{escape(x)}</span></li>'
        for x in _metadata(t, locale)
    )
    label = TYPE_LABELS[locale].get(t.kind, t.kind)
    return (
        '<li class="ipc-metadata-list-summary-item ipc-metadata-list-summary-item--click '
        'find-result-item find-title-result"><div class="ipc-metadata-list-summary-item__tc">'
        '<div class="ipc-media ipc-media--poster-27x40 ipc-image-media-ratio--poster-27x40 '
        f'ipc-media--base ipc-media--poster-s ipc-media__img">{_poster(t, name, base_url)}'
        '</div></div><div class="ipc-metadata-list-summary-item__c">'
        '<div class="ipc-metadata-list-summary-item__tc">'
        '<a class="ipc-metadata-list-summary-item__t" tabindex="0" aria-disabled="false" '
        f'href="/title/{t.series_id}/?ref_={ref}">{escape(name)}</a>'
        '<ul class="ipc-inline-list ipc-inline-list--show-dividers ipc-inline-list--inline '
        f'ipc-metadata-list-summary-item__tl base" role="presentation">{items}</ul>'
        '<ul class="ipc-inline-list ipc-inline-list--show-dividers ipc-inline-list--no-wrap '
        'ipc-inline-list--inline ipc-metadata-list-summary-item__stl base" role="presentation">'
        '<li role="presentation" class="ipc-inline-list__item">'
        f'<span class="ipc-metadata-list-summary-item__li">{escape(label)}</span></li></ul>'
        f"{_star(t, locale, rating_span=False)}</div></div></li>"
    )


def title_fields(t: Title, locale: str) -> dict[str, object]:
    """What IMDb's ``__NEXT_DATA__`` says of a title on every page: names, years, ratings."""
    return {
        "titleText": {"text": localized_title(t, locale), "__typename": "TitleText"},
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
    }


def result_item(t: Title, locale: str, base_url: str) -> dict[str, object]:
    """One result as ``__NEXT_DATA__`` carries it (exact votes, the titleType id)."""
    label = TYPE_LABELS[locale].get(t.kind, t.kind)
    return {
        "titleId": t.series_id,
        **title_fields(t, locale),
        "titleType": {
            "id": t.kind,
            "text": label,
            "canHaveEpisodes": t.kind in SERIES_KINDS,
            "__typename": "TitleType",
        },
        "primaryImage": (
            {"url": base_url + t.poster.path, "width": t.poster.width, "height": t.poster.height}
            if t.poster is not None
            else None
        ),
        "episodes": {"totalEpisodes": {"total": t.episodes}} if t.episodes is not None else None,
        "plot": {"plotText": {"plainText": "A story of friendship, betrayal and hope."}},
    }


# ============================================================================ pages


def _page(
    *, lang: str, prefix: str, heading: str, main: str, next_data: dict[str, object]
) -> bytes:
    """An IMDb page around `main`: head, header with search box, footer, ``__NEXT_DATA__``."""
    decoy = json.dumps(
        {"template": '<li class="ipc-metadata-list-summary-item"><a href="/title/tt0000001/">'}
    )
    body = f"""<!DOCTYPE html>
<html lang="{lang}" xmlns:og="http://opengraphprotocol.org/schema/"><head>
<meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{escape(heading)} - IMDb</title>
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
<main role="main" class="ipc-page-wrapper">{main}
<aside class="sc-sidebar"><h3 class="ipc-title__text">More to explore</h3>
<ul class="ipc-metadata-list ipc-metadata-list--base"><li class="ipc-metadata-list-summary-item">
<a href="{prefix}/chart/toptv/" class="ipc-title-link-wrapper">
<h3 class="ipc-title__text">Top 250 TV Shows</h3></a></li></ul></aside></main>
<footer class="imdb-footer"><a href="https://help.imdb.com/">Help</a>
<span>© 1990-2025 by IMDb.com, Inc.</span></footer></div>
<script id="__NEXT_DATA__" type="application/json">{script_json(next_data)}</script>
<script src="https://m.media-amazon.com/images/S/sash/framework.js" async></script>
</body></html>
"""
    return body.encode("utf-8")


def _next_data(
    page: str, query: object, locale: str, props: dict[str, object]
) -> dict[str, object]:
    return {
        "props": {
            "pageProps": {**props, "requestContext": {"sidecar": {"localizedStrings": {}}}},
            "__N_SSP": True,
        },
        "page": page,
        "query": query,
        "buildId": "sandbox-build",
        "locale": "de-DE" if locale == "de" else "en-US",
    }


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
    variant: str = "dli",
) -> bytes:
    """Render one advanced-search result page (1-based `start`, `count` per page).

    Args:
        variant: one of `LIST_VARIANTS`.
    """
    if variant not in LIST_VARIANTS:
        raise ValueError(f"variant={variant!r}; expected one of {LIST_VARIANTS}")
    titles = served_titles(world, kinds, year_from, year_to)
    total = len(titles)
    first = max(start, 1)
    page = titles[first - 1 : first - 1 + count]
    prefix = "/de" if locale == "de" else ""
    if variant == "older":
        items = "".join(
            _li_older(t, locale, base_url, f"sr_t_{first + i}") for i, t in enumerate(page)
        )
    else:
        css = "dli" if variant == "dli" else "cli"
        items = "".join(_li(t, first + i, locale, base_url, css) for i, t in enumerate(page))
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
    props: dict[str, object] = {
        "searchInput": {"titleTypeConstraint": {"anyTitleTypeIds": sorted(kinds or [])}}
    }
    if variant == "next_data":
        props["searchResults"] = {
            "titleResults": {
                "titleListItems": [result_item(t, locale, base_url) for t in page],
                "total": total,
                "hasNextPage": last < total,
            }
        }
    main = f"""<section class="ipc-page-section ipc-page-section--base">
<h1 class="ipc-title__text">{heading}</h1>
<div class="sc-13add9d7-3 fwjHEn">{counter}</div>
<button class="ipc-btn ipc-btn--single-padding" aria-label="{sort_label}">
<span class="ipc-btn__text">{sort_label}</span></button>
<ul class="ipc-metadata-list ipc-metadata-list--dividers-between sc-748571c8-0 jmWPOZ
 detailed-list-view ipc-metadata-list--base" role="presentation">{items}</ul>
{more_button}
</section>"""
    return _page(
        lang="de-DE" if locale == "de" else "en-US",
        prefix=prefix,
        heading=heading,
        main=main,
        next_data=_next_data("/search/title", {"q": query}, locale, props),
    )


def find_titles(world: World, q: str) -> list[Title]:
    """Titles a find query matches (any of their titles contains it), most votes first."""
    needle = q.strip().casefold()
    if not needle:
        return []
    found = [
        t
        for t in world.titles
        if any(needle in x.casefold() for x in (t.title, t.original_title, t.title_de))
    ]
    return sorted(found, key=lambda t: (-(t.num_votes or 0), t.series_id))


def render_find_page(world: World, q: str, *, locale: str = "en", base_url: str = "") -> bytes:
    """Render a find page (``/find/?q=``): older markup, results in ``__NEXT_DATA__``."""
    found = find_titles(world, q)
    prefix = "/de" if locale == "de" else ""
    heading = f'Suche nach "{q}"' if locale == "de" else f'Search "{q}"'
    items = "".join(
        _li_older(t, locale, base_url, f"fn_al_tt_{i}") for i, t in enumerate(found, start=1)
    )
    main = f"""<section class="ipc-page-section ipc-page-section--base">
<h1 class="ipc-title__text">{escape(heading)}</h1>
<section class="ipc-page-section ipc-page-section--base" data-testid="find-results-section-title">
<h3 class="ipc-title__text">{"Titel" if locale == "de" else "Titles"}</h3>
<ul class="ipc-metadata-list ipc-metadata-list--dividers-after ipc-metadata-list--base"
 role="presentation">{items}</ul></section></section>"""
    props: dict[str, object] = {
        "findPageMeta": {"searchTerm": q, "includeAdult": False, "isExactMatch": False},
        "titleResults": {
            "results": [
                {"index": t.series_id, "listItem": result_item(t, locale, base_url)} for t in found
            ],
            "hasExactMatches": False,
        },
    }
    return _page(
        lang="de-DE" if locale == "de" else "en-US",
        prefix=prefix,
        heading=heading,
        main=main,
        next_data=_next_data("/find", {"q": q}, locale, props),
    )
