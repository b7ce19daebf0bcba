"""The made-up IMDb: its pages as the real site serves them, and the bot checks it answers with.

Pages are rendered by `tv100.sandbox.imdb_lists` (advanced search, find) and
`tv100.sandbox.imdb_titles` (title pages); the datasets are `tv100.sandbox.imdb_datasets`.
`ImdbSite` serves one `World` as several sites, chosen by a path prefix before the usual
paths (``/search/title/``, ``/title/ttNNNNNNN/``, ``/find/``, each also under ``/de/``):

- no prefix: the current layouts (``dli-`` list pages, ``__NEXT_DATA__`` title pages in the
  2025 layout);
- ``/mixed``: every layout IMDb has served, as the real web mixes them: each list page in
  one of `LIST_VARIANTS` (by its page number and the world's seed), each title page in one
  of `TITLE_VARIANTS` (drawn per title from the world's seed);
- ``/waf``: every page answered by IMDb's web-application firewall (AWS WAF): HTTP 202, an
  ``x-amzn-waf-action: challenge`` header and its JavaScript challenge page;
- ``/captcha``: list pages as ``/mixed``, but every title page is Amazon's captcha form
  (HTTP 200, no WAF header: only the body says it).

So a client pointed at ``{base}/mixed`` meets every layout in one crawl, and one pointed at
``{base}/waf`` or ``{base}/captcha`` is blocked at the first or the second step.
"""

from __future__ import annotations

import html
import re

from tv100.sandbox.imdb_lists import (
    DEFAULT_PAGE_SIZE,
    IMDB_LANGUAGE_ID,
    LIST_VARIANTS,
    LOCALES,
    TITLE_TYPE_PARAM,
    format_votes,
    render_find_page,
    render_list_page,
    served_titles,
)
from tv100.sandbox.imdb_titles import TITLE_VARIANTS, render_title_page
from tv100.sandbox.server import Request, Response
from tv100.sandbox.world import World

__all__ = [
    "IMDB_LANGUAGE_ID",
    "LIST_VARIANTS",
    "SITES",
    "TITLE_VARIANTS",
    "ImdbSite",
    "captcha_page",
    "format_votes",
    "list_variant",
    "render_list_page",
    "render_title_page",
    "served_titles",
    "title_variant",
    "waf_challenge_page",
]

#: The sites under a path prefix (see the module docstring).
SITES: tuple[str, ...] = ("mixed", "waf", "captcha")

_ROUTE_RE = re.compile(
    r"^/(?:(?P<site>mixed|waf|captcha)/)?(?:(?P<locale>[a-z]{2})/)?"
    r"(?:(?P<search>search/title)|title/(?P<id>tt\d{7,9})|(?P<find>find))/?$"
)
_YEAR_RE = re.compile(r"^\s*(\d{4})")


def list_variant(world: World, start: int, count: int) -> str:
    """The layout of the ``/mixed`` list page starting at `start`: every layout in turn."""
    page = (max(start, 1) - 1) // max(count, 1)
    return LIST_VARIANTS[(page + world.seed) % len(LIST_VARIANTS)]


def title_variant(world: World, series_id: str) -> str:
    """The layout of a ``/mixed`` title page, drawn per title from the world's seed."""
    rng = world.rng(series_id, "imdb-title-layout")
    return TITLE_VARIANTS[int(rng.integers(len(TITLE_VARIANTS)))]


def waf_challenge_page() -> bytes:
    """The body of an AWS WAF challenge (served with HTTP 202 and ``x-amzn-waf-action``)."""
    return b"""<!DOCTYPE html>
<html lang="en">
<head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title></title>
    <style>
        body { font-family: "Arial"; }
    </style>
    <script type="text/javascript">
    window.awsWafCookieDomainList = [];
    window.gokuProps = {
"key":"AQIDAHjcYu/GjX+QlghicBgQ/7bFaQZ+m5FKCMDnO+vTbNg96AEkDxtSsEUlqBH1QMnSAIZpAAAAfjB8Bgkq",
          "iv":"D549nACWwAAAAdBa",
          "context":"kP0yvl5fWrrLhOt7wp0cKBvH+J7k2mMcHdUCe3xmLqx8qS2dQnUBBVWfPNzAVVTs0/l"
};
    </script>
    <script src="https://3f38f7f4f368.83109fa9.us-east-2.token.awswaf.com/3f38f7f4f368/e1fcfc58118e/2ad9e6b0fb28/challenge.js"></script>
</head>
<body>
    <div id="challenge-container"></div>
    <script type="text/javascript">
        AwsWafIntegration.saveReferrer();
        AwsWafIntegration.checkForceRefresh().then((forceRefresh) => {
            if (forceRefresh) {
                AwsWafIntegration.forceRefreshToken().then(() => {
                    window.location.reload(true);
                });
            } else {
                AwsWafIntegration.getToken().then(() => {
                    window.location.reload(true);
                });
            }
        });
    </script>
    <noscript>
        <h1>JavaScript is disabled</h1>
        In order to continue, we need to verify that you're not a robot.
        This requires JavaScript. Enable JavaScript and then reload the page.
    </noscript>
</body>
</html>
"""  # noqa: E501


def captcha_page(path: str) -> bytes:
    """Amazon's captcha form, as IMDb has served it instead of a page (HTTP 200)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="X-UA-Compatible" content="IE=edge,chrome=1"><title>IMDb</title>
<link rel="stylesheet" href="https://images-na.ssl-images-amazon.com/images/G/01/AUIClients/AmazonUI-3c913031596ca78a3768f4e934b1cc02ce238101.secure.min._V1_.css">
</head><body>
<div class="a-container a-padding-double-large" style="min-width:350px;padding:44px 0 !important">
<div class="a-row a-spacing-double-large" style="width: 350px; margin: 0 auto">
<div class="a-row a-spacing-medium a-text-center"><i class="a-icon a-logo"></i></div>
<div class="a-box a-alert a-alert-info a-spacing-base"><div class="a-box-inner">
<i class="a-icon a-icon-alert"></i><h4>Enter the characters you see below</h4>
<p class="a-last">Sorry, we just need to make sure you're not a robot. For best results, please
make sure your browser is accepting cookies.</p></div></div>
<div class="a-section"><div class="a-box a-color-offset-background"><div class="a-box-inner a-padding-extra-large">
<form method="get" action="/errors/validateCaptcha" name="">
<input type=hidden name="amzn" value="WjRJOG1wWUxKL0pXbU1ZRk5HZHpBUT09"/>
<input type=hidden name="amzn-r" value="{html.escape(path)}"/>
<div class="a-row a-spacing-large"><div class="a-box"><div class="a-box-inner">
<h4>Type the characters you see in this image:</h4>
<div class="a-row a-text-center"><img src="https://images-na.ssl-images-amazon.com/captcha/usvmgloq/Captcha_kyrmvupiqz.jpg"></div>
<input autocomplete="off" spellcheck="false" placeholder="Type characters" id="captchacharacters"
 name="field-keywords" class="a-span12" autocapitalize="off" autocorrect="off" type="text">
</div></div></div>
<span class="a-button a-button-primary a-span12"><span class="a-button-inner">
<button type="submit" class="a-button-text">Continue shopping</button></span></span>
</form></div></div></div></div></div>
<div class="a-divider a-divider-section"><div class="a-divider-inner"></div></div>
<div class="a-text-center a-spacing-small a-size-mini">
<a href="https://www.imdb.com/conditions">Conditions of Use</a>
<a href="https://www.imdb.com/privacy">Privacy Policy</a></div>
</body></html>
""".encode()  # noqa: E501


class ImdbSite:
    """Route handler serving the made-up IMDb of one `World` (sites: see the module docstring)."""

    prefixes: tuple[str, ...] = ("/search/", "/title/", "/find/", "/de/") + tuple(
        f"/{site}/" for site in SITES
    )

    def __init__(self, world: World) -> None:
        self.world = world

    def handle(self, request: Request) -> Response | None:
        """Answer a list, find or title page request (None → 404)."""
        m = _ROUTE_RE.match(request.path)
        if m is None:
            return None
        site, locale = m.group("site") or "", m.group("locale") or "en"
        if locale not in LOCALES:
            return _html_response(_not_found_page(), status=404)
        if site == "waf":
            return Response(
                status=202,
                headers={
                    "Content-Type": "text/html; charset=UTF-8",
                    "x-amzn-waf-action": "challenge",
                    "Cache-Control": "no-store, max-age=0",
                },
                body=waf_challenge_page(),
            )
        if m.group("search"):
            return self._search(request, locale, site)
        if m.group("find"):
            q = request.query.get("q", "")
            return _html_response(
                render_find_page(self.world, q, locale=locale, base_url=request.base_url)
            )
        t = self.world.by_id.get(m.group("id"))
        if t is None:
            return _html_response(_not_found_page(), status=404)
        if site == "captcha":
            return _html_response(captcha_page(request.path))
        variant = title_variant(self.world, t.series_id) if site == "mixed" else "current"
        return _html_response(
            render_title_page(t, locale=locale, base_url=request.base_url, variant=variant)
        )

    def _search(self, request: Request, locale: str, site: str) -> Response:
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
            variant=list_variant(self.world, start, count) if site else "dli",
        )
        return _html_response(page)


def _html_response(body: bytes, status: int = 200) -> Response:
    return Response(status=status, headers={"Content-Type": "text/html; charset=utf-8"}, body=body)


def _not_found_page() -> bytes:
    return (
        b"<!DOCTYPE html><html><head><title>404 Error - IMDb</title></head><body>"
        b'<div class="error-page"><h1>404 Error</h1></div></body></html>'
    )
