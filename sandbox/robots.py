"""The sandbox's robots rules: its robots.txt, and pages and images that opt out of AI use.

One origin serves the whole sandbox (the made-up IMDb, the engines, the image host), so one
robots.txt (`ROBOTS_TXT`, the same for every world) holds the rules of all of them:

- IMDb paths discover never reads (the media viewer, reviews, registration, like the real
  site's robots.txt keeps crawlers off), so discover is not affected;
- the image host's ``/img/private/`` folder, where `tv100.sandbox.imagehost` puts its
  ``fault_robots`` plants: listed by the engines like any image, never to be requested;
- a group for another crawler (``otherbot``: everything disallowed, a 30 s Crawl-delay) that
  must not apply to tv100;
- no Crawl-delay for tv100: the demo's thousands of images come from this one host.

`OptOutSite` serves, under ``/optout/``, the opt-out forms of `OPT_OUT_FORMS`, each an image
(``/optout/<form>.jpg``) or a source page showing one (``/optout/<form>.html``): the
X-Robots-Tag header in its plain, per-crawler and comma-list forms, and the robots meta tag
in a page's head, each with a look-alike that does not opt out.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import lru_cache

from tv100.sandbox import imagegen
from tv100.sandbox.server import Request, Response

PRIVATE_IMAGES = "/img/private/"
"""Image paths under this folder are disallowed by the sandbox's robots.txt."""

DISALLOWED_IMDB = (
    "/title/*/mediaviewer/",
    "/title/*/reviews",
    "/registration/",
    "/ap/",
)
"""IMDb paths (robots.txt patterns) the sandbox disallows; discover needs none of them."""

ROBOTS_TXT = (
    "# robots.txt of the tv100 sandbox web: one origin serves the made-up IMDb, the image\n"
    "# search engines and the image host, so this file holds the rules of all three.\n"
    "\n"
    "User-agent: *\n"
    "# IMDb: pages the discover stage does not read\n"
    + "".join(f"Disallow: {path}\n" for path in DISALLOWED_IMDB)
    + "# The image host: images their owners keep out of crawls\n"
    f"Disallow: {PRIVATE_IMAGES}\n"
    "\n"
    "# Another crawler's rules, which must not apply to tv100\n"
    "User-agent: otherbot\n"
    "Disallow: /\n"
    "Crawl-delay: 30\n"
)
"""The sandbox's robots.txt (the same for every world)."""


def robots_response(request: Request) -> Response | None:
    """Answer ``/robots.txt`` (None → 404 for other paths under that prefix)."""
    return Response.text(ROBOTS_TXT) if request.path == "/robots.txt" else None


@dataclass(frozen=True)
class OptOutForm:
    """One way (or a look-alike) of saying "not for AI" that the sandbox serves.

    Attributes:
        name: the URL name (``/optout/<name>.jpg`` or ``.html``).
        kind: ``image`` (the image's own response says it) or ``page`` (its source page).
        header: the response's X-Robots-Tag value, if any.
        meta: (name, content) of the page's robots-style meta tags.
        opted_out: whether a correct downloader treats the image as opted out.
    """

    name: str
    kind: str
    header: str | None = None
    meta: tuple[tuple[str, str], ...] = ()
    opted_out: bool = True


OPT_OUT_FORMS: tuple[OptOutForm, ...] = (
    OptOutForm("header-plain", "image", header="noai"),
    OptOutForm("header-agent", "image", header="tv100: noimageai"),
    OptOutForm("header-list", "image", header="noarchive, nosnippet, NoImageAI"),
    OptOutForm("header-other", "image", header="nofollow, noarchive", opted_out=False),
    OptOutForm("meta-robots", "page", meta=(("robots", "noai, noimageai"),)),
    OptOutForm("meta-agent", "page", meta=(("tv100", "noimageai"),)),
    OptOutForm("meta-case", "page", meta=(("Robots", "NOAI"),)),
    OptOutForm("page-header", "page", header="noimageai"),
    OptOutForm(
        "meta-other",
        "page",
        meta=(("robots", "index, follow, max-image-preview:large"), ("description", "noai")),
        opted_out=False,
    ),
)
"""The forms `OptOutSite` serves, opt-outs and look-alikes."""

_BY_NAME = {f.name: f for f in OPT_OUT_FORMS}


@lru_cache(maxsize=1)
def _image() -> bytes:
    return imagegen.encode_under(imagegen.make_photo(7), 60_000)


def _page(form: OptOutForm) -> bytes:
    metas = "".join(
        f'<meta name="{html.escape(name)}" content="{html.escape(content)}">'
        for name, content in form.meta
    )
    image = f"/optout/{form.name}.jpg"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Gallery: {form.name}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'{metas}<meta property="og:image" content="{image}">'
        '</head><body><header><nav><a href="/">Home</a></nav></header><main>'
        f'<figure><img src="{image}" width="640" height="480" alt="{form.name}">'
        f"<figcaption>{form.name}</figcaption></figure></main></body></html>\n"
    ).encode()


class OptOutSite:
    """Route handler of ``/optout/``: the images and pages of `OPT_OUT_FORMS`."""

    prefix = "/optout/"

    def handle(self, request: Request) -> Response | None:
        """Answer ``/optout/<form>.jpg`` or ``/optout/<form>.html`` (None → 404)."""
        name, dot, ext = request.path[len(self.prefix) :].rpartition(".")
        form = _BY_NAME.get(name) if dot else None
        if form is None or ext not in ("jpg", "html"):
            return None
        headers = {"Content-Type": "image/jpeg" if ext == "jpg" else "text/html; charset=utf-8"}
        # An image form's header is on the image, a page form's on the page.
        if form.header and (ext == "jpg") == (form.kind == "image"):
            headers["X-Robots-Tag"] = form.header
        body = _image() if ext == "jpg" else _page(form)
        return Response(headers=headers, body=body)
