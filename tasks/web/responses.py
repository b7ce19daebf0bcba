"""Reading an `httpx.Response` the same way in every client: its headers and its redirect.

`tv100.tasks.web.client.HttpClient` (pages) and `tv100.tasks.web.stream.FileDownloader`
(files) follow redirects by hand, so that every hop is checked; both read a response's
headers into `Fetched.headers` and decide whether it is a redirect with these helpers.
"""

from __future__ import annotations

from typing import Final

import httpx

REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
"""HTTP statuses followed as redirects (when they carry a Location)."""


def response_headers(response: httpx.Response) -> dict[str, str]:
    """A response's headers as `Fetched.headers` holds them: lower-case names.

    A header sent more than once is one entry, its values joined by ``", "`` (as httpx
    merges them).
    """
    return {k.lower(): v for k, v in response.headers.items()}


def redirect_location(response: httpx.Response) -> str | None:
    """The Location a redirect points to, as sent (maybe relative); None for any other answer.

    A redirect status without a Location is not a redirect: it is read as the final answer.
    """
    if response.status_code in REDIRECT_STATUSES:
        location = response.headers.get("location")
        if location:
            return location
    return None
