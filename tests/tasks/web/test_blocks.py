"""Blocks told by response headers: one reading for the search engines and for IMDb's crawl.

The header sets are those real answers carry (AWS WAF's 202 challenge and 405 captcha,
Cloudflare's 403 challenge) next to ordinary answers that must not be taken for a block (a
bare 202, 403 or 429). Both callers, `tv100.tasks.collect.pages.header_block` and
`tv100.tasks.discover.imdb_pages.waf_action`, are checked to agree with `block_from_headers`,
and the headers are also read as they arrive through the HTTP client from a real server.
"""

from __future__ import annotations

import asyncio

import pytest

from tv100.sandbox.server import Response
from tv100.tasks.collect.pages import block_kind, header_block
from tv100.tasks.discover.imdb_pages import WAF_HEADER, waf_action
from tv100.tasks.web.blocks import (
    AWS_WAF_HEADER,
    BLOCK_KINDS,
    HeaderBlock,
    block_from_headers,
)
from tv100.tasks.web.client import HttpClient
from tv100.tasks.web.config import Fetched, HttpConfig

pytestmark = pytest.mark.timeout(60)

#: An AWS WAF challenge as IMDb answers it (HTTP 202; names lower case as in `Fetched`).
AWS_CHALLENGE = {
    "content-type": "text/html; charset=UTF-8",
    "content-length": "2163",
    "x-amzn-waf-action": "challenge",
    "cache-control": "no-store, max-age=0",
    "access-control-allow-origin": "*",
    "access-control-expose-headers": "x-amzn-waf-action",
    "access-control-max-age": "86400",
    "server": "CloudFront",
    "x-cache": "Error from cloudfront",
    "via": "1.1 0a1b2c3d4e5f.cloudfront.net (CloudFront)",
    "x-amz-cf-pop": "FRA56-P5",
    "x-amz-cf-id": "qL3yG5sCkPqv8w2xH0k1rWc1mV8bS1Zr9h0oTQ2mH7lYx3ZK4Yq6Kw==",
}
#: A Cloudflare managed challenge (HTTP 403).
CLOUDFLARE_CHALLENGE = {
    "content-type": "text/html; charset=UTF-8",
    "cf-mitigated": "challenge",
    "cross-origin-embedder-policy": "require-corp",
    "permissions-policy": "accelerometer=(),autoplay=(),camera=()",
    "referrer-policy": "same-origin",
    "server": "cloudflare",
    "cf-ray": "8e1f2a3b4c5d6e7f-FRA",
}

BLOCKS = {
    # name: (HTTP status, headers, the block expected)
    "AWS WAF challenge (202)": (
        202,
        AWS_CHALLENGE,
        HeaderBlock("WAF challenge", "AWS WAF", "x-amzn-waf-action", "challenge"),
    ),
    "AWS WAF captcha (405)": (
        405,
        {**AWS_CHALLENGE, "x-amzn-waf-action": "captcha"},
        HeaderBlock("captcha", "AWS WAF", "x-amzn-waf-action", "captcha"),
    ),
    "AWS WAF, value in capitals and spaces": (
        202,
        {"x-amzn-waf-action": "  Challenge "},
        HeaderBlock("WAF challenge", "AWS WAF", "x-amzn-waf-action", "challenge"),
    ),
    "AWS WAF, empty value": (
        202,
        {"x-amzn-waf-action": ""},
        HeaderBlock("WAF challenge", "AWS WAF", "x-amzn-waf-action", "challenge"),
    ),
    "Cloudflare challenge (403)": (
        403,
        CLOUDFLARE_CHALLENGE,
        HeaderBlock("JavaScript challenge", "Cloudflare", "cf-mitigated", "challenge"),
    ),
    "both services: AWS WAF first": (
        202,
        {**CLOUDFLARE_CHALLENGE, "x-amzn-waf-action": "captcha"},
        HeaderBlock("captcha", "AWS WAF", "x-amzn-waf-action", "captcha"),
    ),
}

NOT_BLOCKS = {
    "an ordinary page (200)": (200, {"content-type": "text/html", "server": "CloudFront"}),
    "a bare 202, empty body": (202, {"content-length": "0"}),
    "a bare 403": (403, {"content-type": "text/html", "server": "nginx"}),
    "a 429 with Retry-After": (429, {"retry-after": "30", "content-type": "text/plain"}),
    "Cloudflare, not a challenge": (200, {"server": "cloudflare", "cf-cache-status": "HIT"}),
    "cf-mitigated, other value": (403, {"cf-mitigated": "block"}),
    "the WAF header named only in CORS": (
        200,
        {"access-control-expose-headers": "x-amzn-waf-action"},
    ),
    "no headers": (200, {}),
}


@pytest.mark.parametrize("name", list(BLOCKS))
def test_block_answers_are_read_the_same_by_both_callers(name: str):
    status, headers, expected = BLOCKS[name]
    block = block_from_headers(headers)
    assert block == expected
    assert block.kind in BLOCK_KINDS
    # The search engines' page class: the same block, as a reason the collect stage reads.
    reason = header_block(headers, status)
    assert reason == f"{block.kind}: {block.evidence} (HTTP {status})"
    assert block_kind(reason) == block.kind
    # IMDb's crawl: the AWS WAF action, and only that service's.
    assert waf_action(headers) == (block.value if block.header == AWS_WAF_HEADER else None)


@pytest.mark.parametrize("name", list(NOT_BLOCKS))
def test_ordinary_answers_are_not_blocks(name: str):
    status, headers = NOT_BLOCKS[name]
    assert block_from_headers(headers) is None
    assert header_block(headers, status) is None
    assert waf_action(headers) is None


def test_reasons_and_names():
    block = block_from_headers({"x-amzn-waf-action": "challenge"})
    assert block is not None
    assert block.evidence == "AWS WAF x-amzn-waf-action: challenge"
    assert block.reason(202) == "WAF challenge: AWS WAF x-amzn-waf-action: challenge (HTTP 202)"
    assert block.reason(None) == "WAF challenge: AWS WAF x-amzn-waf-action: challenge (HTTP None)"
    assert WAF_HEADER == AWS_WAF_HEADER  # IMDb's name for the same header
    # A header value that is not text (a caller's own mapping) is no block, not a crash.
    assert block_from_headers({"x-amzn-waf-action": None}) is None  # type: ignore[dict-item]


def _get(url: str, host: str) -> Fetched:
    async def main() -> Fetched:
        # robots=None: the answers are about the page's own headers, not robots.txt's.
        config = HttpConfig(allow_hosts=(host,), retries=0)
        async with HttpClient(config, robots=None) as client:
            return await client.get(url)

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("status", "headers", "kind"),
    [
        (202, {"X-Amzn-Waf-Action": "challenge"}, "WAF challenge"),
        (405, {"X-Amzn-Waf-Action": "captcha"}, "captcha"),
        (403, {"CF-Mitigated": "challenge"}, "JavaScript challenge"),
        (202, {"Content-Type": "text/plain"}, None),
        (429, {"Retry-After": "3600"}, None),
    ],
)
def test_headers_as_the_client_receives_them(status, headers, kind, sandbox):
    """Sent in the wire's own spelling by a real server, read from `Fetched.headers`."""
    key = f"{status}-{'-'.join(headers).lower()}"
    sandbox.register(
        f"/_blocks/{key}",
        lambda request: Response(status, {"Content-Type": "text/html", **headers}, b""),
    )
    host = sandbox.base_url.split("://", 1)[1]
    fetched = _get(f"{sandbox.base_url}/_blocks/{key}", host)
    assert fetched.http_status == status
    block = block_from_headers(fetched.headers)
    assert (block.kind if block else None) == kind
    assert block_kind(header_block(fetched.headers, fetched.http_status)) == kind


def test_the_sandbox_imdb_waf_answer_is_a_block(sandbox, world):
    series_id = world.titles[0].series_id
    host = sandbox.base_url.split("://", 1)[1]
    fetched = _get(f"{sandbox.base_url}/waf/title/{series_id}/", host)
    assert fetched.http_status == 202
    assert waf_action(fetched.headers) == "challenge"
    assert header_block(fetched.headers, 202) == (
        "WAF challenge: AWS WAF x-amzn-waf-action: challenge (HTTP 202)"
    )
