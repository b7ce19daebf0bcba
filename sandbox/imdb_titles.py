"""The made-up IMDb's title pages (``/title/ttNNNNNNN/``, ``/de/title/...``), in real layouts.

Every page has the hero (title, type, the release years as a ``releaseinfo`` link) and a
JSON-LD block as imdb.com writes it: ``name`` is the *original* title, ``alternateName`` the
localized one (when they differ), ``datePublished`` one country's release date (for some
titles in the year after the release year, as a December premiere dated by its US release).
Then, by `variant` (`TITLE_VARIANTS`):

- ``current``: ``__NEXT_DATA__`` in the 2025 layout, ``isAdult`` and the genre ids under
  ``mainColumnData``, the shown genre names under ``aboveTheFoldData.titleGenres``;
- ``earlier``: ``__NEXT_DATA__`` in the earlier layout, ``isAdult`` and ``genres.genres[]``
  under ``aboveTheFoldData``;
- ``json_ld``: no ``__NEXT_DATA__`` at all, so a client has only JSON-LD and the hero.

Countries and languages are under ``mainColumnData`` in both layouts. Titles without a rating,
poster or languages omit those fields.
"""

from __future__ import annotations

from tv100.sandbox.imdb_lists import (
    COUNTRY_NAMES,
    GENRE_NAMES_DE,
    IMDB_LANGUAGE_ID,
    JSONLD_TYPE,
    LANGUAGE_NAMES,
    TYPE_LABELS,
    escape,
    ld_escape,
    localized_title,
    script_json,
    title_fields,
    year_label,
)
from tv100.sandbox.world import SERIES_KINDS, Title

#: The title-page variants (see the module docstring).
TITLE_VARIANTS: tuple[str, ...] = ("current", "earlier", "json_ld")


def _genre_name(genre: str, locale: str) -> str:
    return GENRE_NAMES_DE.get(genre, genre) if locale == "de" else genre


def title_next_data(
    t: Title, locale: str, base_url: str, layout: str = "current"
) -> dict[str, object]:
    """The ``__NEXT_DATA__`` object of a title page (real imdb.com shape, reduced).

    Args:
        layout: ``current`` (2025) or ``earlier``.
    """
    name = localized_title(t, locale)
    type_text = TYPE_LABELS[locale].get(t.kind, t.kind)
    genres = [{"text": _genre_name(g, locale), "id": g, "__typename": "Genre"} for g in t.genres]
    above: dict[str, object] = {
        "id": t.series_id,
        "productionStatus": {"currentProductionStage": {"id": "released", "text": "Released"}},
        "canHaveEpisodes": t.kind in SERIES_KINDS,
        **title_fields(t, locale),
        "titleType": {
            "displayableProperty": {"value": {"plainText": type_text}},
            "text": type_text,
            "id": t.kind,
            "isSeries": t.kind in SERIES_KINDS,
            "isEpisode": t.kind == "tvEpisode",
            "canHaveEpisodes": t.kind in SERIES_KINDS,
            "__typename": "TitleType",
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
    if layout == "earlier":
        above["isAdult"] = t.is_adult
        above["genres"] = {"genres": genres, "__typename": "Genres"}
    else:
        above["titleGenres"] = {
            "genres": [{"genre": {"text": g["text"]}, "__typename": "TitleGenre"} for g in genres],
            "__typename": "TitleGenres",
        }
        main["isAdult"] = t.is_adult
        main["genres"] = {"genres": genres, "__typename": "Genres"}
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
        "locale": "de-DE" if locale == "de" else "en-US",
        "locales": ["en-US", "de-DE"],
        "defaultLocale": "en-US",
        "scriptLoader": [],
    }


def date_published(t: Title) -> str | None:
    """JSON-LD's ``datePublished``: one country's date, for some titles in the next year."""
    if t.start_year is None:
        return None
    if int(t.series_id[-1]) % 3 == 0:  # premiered in December, dated by a January release
        return f"{t.start_year + 1}-01-{10 + int(t.series_id[-2]):02d}"
    return f"{t.start_year}-{1 + int(t.series_id[-2:]) % 11:02d}-15"


def title_json_ld(t: Title, locale: str, base_url: str) -> dict[str, object]:
    """The JSON-LD object of a title page (text values HTML-escaped, as imdb.com does)."""
    name = localized_title(t, locale)
    data: dict[str, object] = {
        "@context": "https://schema.org",
        "@type": JSONLD_TYPE.get(t.kind, "CreativeWork"),
        "url": f"{base_url}/title/{t.series_id}/",
        "name": ld_escape(t.original_title),
    }
    if name != t.original_title:
        data["alternateName"] = ld_escape(name)
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
    published = date_published(t)
    if published is not None:
        data["datePublished"] = published
    return data


def _hero(t: Title, name: str, type_text: str, base_url: str) -> str:
    """The hero: title, then type, release years (a ``releaseinfo`` link) and runtime."""
    years = (year_label(t) or "").strip()
    items = [escape(type_text)]
    if years:
        items.append(
            '<a class="ipc-link ipc-link--baseAlt ipc-link--inherit-color" tabindex="0" '
            f'aria-disabled="false" href="/title/{t.series_id}/releaseinfo?ref_=tt_ov_rdat">'
            f"{escape(years)}</a>"
        )
    if t.runtime_minutes is not None:
        items.append(f"{t.runtime_minutes}m")
    lis = "".join(f'<li class="ipc-inline-list__item" role="presentation">{x}</li>' for x in items)
    img = (
        f'<img alt="{escape(name)}" class="ipc-image" src="{escape(base_url + t.poster.path)}">'
        if t.poster is not None
        else ""
    )
    original = (
        f'<div class="sc-afe43def-3 EpHJp">Original title: {escape(t.original_title)}</div>'
        if t.original_title != name
        else ""
    )
    return f"""<section class="sc-9a2a0028-0 hero__title"><h1 textlength="{len(name)}"
 data-testid="hero__pageTitle" class="sc-afe43def-0 hnYaOZ">
<span class="hero__primary-text" data-testid="hero__primary-text">{escape(name)}</span></h1>
{original}<ul class="ipc-inline-list ipc-inline-list--show-dividers sc-d8941411-2 cdJsTz baseAlt"
 role="presentation">{lis}</ul>
<div class="ipc-media ipc-media--poster-27x40">{img}</div></section>"""


def render_title_page(
    t: Title, *, locale: str = "en", base_url: str = "", variant: str = "current"
) -> bytes:
    """Render the title page of `t` in one of `TITLE_VARIANTS`."""
    if variant not in TITLE_VARIANTS:
        raise ValueError(f"variant={variant!r}; expected one of {TITLE_VARIANTS}")
    name = localized_title(t, locale)
    lang = "de-DE" if locale == "de" else "en-US"
    type_text = TYPE_LABELS[locale].get(t.kind, t.kind)
    years = (year_label(t) or "").strip()
    canonical = f"{base_url}{'/de' if locale == 'de' else ''}/title/{t.series_id}/"
    next_data = ""
    if variant != "json_ld":
        data = title_next_data(t, locale, base_url, layout=variant)
        next_data = (
            f'<script id="__NEXT_DATA__" type="application/json">{script_json(data)}</script>'
        )
    page = f"""<!DOCTYPE html>
<html lang="{lang}" xmlns:og="http://opengraphprotocol.org/schema/"><head>
<meta charset="utf-8">
<title>{escape(name)} ({escape(type_text)} {escape(years)}) - IMDb</title>
<meta name="description" content="{escape(name)}: A story of friendship, betrayal and hope.">
<meta property="og:title" content="{escape(name)} ({escape(type_text)} {escape(years)})">
<meta property="og:type" content="video.tv_show">
<meta property="imdb:pageConst" content="{t.series_id}">
<meta property="imdb:pageType" content="title">
<link rel="canonical" href="{escape(canonical)}">
<script type="application/ld+json">{script_json(title_json_ld(t, locale, base_url))}</script>
<script>if(typeof uet==='function'){{uet('bb','LoadTitle',{{wb:1}});}}</script>
</head><body id="styleguide-v2" class="fixed"><div id="__next">
<nav id="imdbHeader" class="ipc-page-wrapper imdb-header"><a href="/" aria-label="Home">IMDb</a>
</nav><main role="main" class="ipc-page-wrapper">
{_hero(t, name, type_text, base_url)}</main>
<footer class="imdb-footer"><span>© 1990-2025 by IMDb.com, Inc.</span></footer></div>
{next_data}
</body></html>
"""
    return page.encode("utf-8")
