"""Page classes: every saved page of every engine is results, no_results, blocked or unknown."""

from __future__ import annotations

import pytest

from tests.tasks.collect.helpers import fixture
from tv100.tasks.collect.engines import ENGINES, read_page
from tv100.tasks.collect.pages import (
    BLOCK_KINDS,
    PAGE_CLASSES,
    block_kind,
    header_block,
    page_verdict,
)
from tv100.tasks.web.config import Fetched

# (engine, saved page, page class, kind of block or None, hits)
CASES = [
    ("bing", "bing_results.html", "results", None, 4),
    ("bing", "bing_broken.html", "results", None, 6),
    ("bing", "bing_detail_links.html", "results", None, 2),
    ("bing", "bing_no_results.html", "no_results", None, 0),
    ("bing", "bing_captcha.html", "blocked", "captcha", 0),
    ("bing", "bing_consent.html", "blocked", "consent wall", 0),
    ("google", "google_results.html", "results", None, 4),
    ("google", "google_truncated.html", "results", None, 3),
    ("google", "google_imgres.html", "results", None, 2),
    ("google", "google_basic.html", "results", None, 5),
    ("google", "google_no_results.html", "no_results", None, 0),
    ("google", "google_enablejs.html", "blocked", "JavaScript challenge", 0),
    ("google", "google_consent.html", "blocked", "consent wall", 0),
    ("google", "google_sorry.html", "blocked", "captcha", 0),
    ("duckduckgo", "ddg_i.json", "results", None, 3),
    ("duckduckgo", "ddg_broken.json", "results", None, 3),
    ("duckduckgo", "ddg_i_empty.json", "no_results", None, 0),
    ("duckduckgo", "ddg_anomaly.html", "blocked", "captcha", 0),
]


@pytest.mark.parametrize(
    "engine,name,page_class,kind,n_hits", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_every_saved_page_has_its_class(engine, name, page_class, kind, n_hits):
    page = read_page(engine, fixture(name))
    assert (page.page_class, len(page.hits)) == (page_class, n_hits), page.reason
    assert page.valid == (page_class in ("results", "no_results"))
    assert block_kind(page.reason) == kind
    if page_class == "blocked":
        assert page.reason and page.reason.split(": ", 1)[1]  # says what the page showed
    else:
        assert page.reason is None


# Each engine's result pages, read by the two other engines: not their layout.
FOREIGN = [
    ("bing", "google_results.html"),
    ("bing", "google_basic.html"),
    ("bing", "ddg_i.json"),
    ("google", "bing_results.html"),
    ("google", "ddg_i.json"),
    ("google", "ddg_page.html"),
    ("duckduckgo", "bing_results.html"),
    ("duckduckgo", "google_basic.html"),
    ("duckduckgo", "ddg_page.html"),  # the token page is HTML, not the i.js answer
]


@pytest.mark.parametrize("engine,name", FOREIGN, ids=[f"{e}-{n}" for e, n in FOREIGN])
def test_another_engines_page_is_an_unknown_layout(engine, name):
    page = read_page(engine, fixture(name))
    assert (page.page_class, page.hits) == ("unknown_layout", [])
    assert (page.reason or "").startswith("no")  # "no <what the layout has>" / "not JSON"


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize(
    "content,reason",
    [(b"", "empty"), (b"  \n", "empty"), (fixture("garbage.bin"), None)],
    ids=["empty", "blank", "garbage"],
)
def test_empty_and_garbage_pages_are_unknown(engine, content, reason):
    page = read_page(engine, content)
    assert page.page_class == "unknown_layout" and page.hits == []
    if reason:
        assert reason in (page.reason or "")


def test_a_consent_banner_over_results_is_still_results():
    # EU Bing shows its cookie banner on top of real results: the tiles decide.
    banner = fixture("bing_consent.html").split(b'<div id="bnp_container"', 1)[1]
    page = fixture("bing_results.html").replace(
        b"</body>", b'<div id="bnp_container"' + banner.split(b"</body>")[0] + b"</body>"
    )
    assert read_page("bing", page).page_class == "results"
    assert len(read_page("bing", page).hits) == 4


def test_a_noscript_bot_check_around_a_no_results_answer_is_no_results():
    # Google's pages carry the enablejs fallback in <noscript>; the explicit answer decides.
    noscript = (
        b'<noscript><meta content="0;url=/httpservice/retry/enablejs?sei=x" '
        b'http-equiv="refresh"></noscript>'
    )
    page = fixture("google_no_results.html").replace(b"<body>", b"<body>" + noscript)
    assert read_page("google", page).page_class == "no_results"
    results = fixture("google_results.html").replace(b"<body", noscript + b"<body", 1)
    assert read_page("google", results).page_class == "results"


def test_zero_hits_alone_is_never_no_results():
    # A Bing page with its chrome but neither tiles nor its no-results block.
    chrome = fixture("bing_no_results.html")
    start = chrome.index(b'<div id="b_no_results"')
    end = chrome.index(b"</div>", start) + len(b"</div>")
    page = read_page("bing", chrome[:start] + chrome[end:])
    assert page.page_class == "unknown_layout"
    assert "no-results" in (page.reason or "")
    # DuckDuckGo JSON whose results are not a list: not an empty answer either.
    assert read_page("duckduckgo", b'{"results": "nope"}').page_class == "unknown_layout"
    assert read_page("duckduckgo", b"[1, 2]").page_class == "unknown_layout"


@pytest.mark.parametrize(
    "body,kind",
    [
        (b'<html><script src="https://ab12.token.awswaf.com/ab12/challenge.js"></script>'
         b"<script>AwsWafIntegration.checkForceRefresh()</script></html>", "WAF challenge"),
        (b"<html><head><title>Just a moment...</title></head><body><script "
         b'src="/cdn-cgi/challenge-platform/h/b/orchestrate/chl_page/v1"></script>'
         b"Enable JavaScript and cookies to continue</body></html>", "JavaScript challenge"),
        (b'<div class="h-captcha" data-sitekey="10000000-ffff-ffff-ffff-000000000001"></div>',
         "captcha"),
    ],
    ids=["aws-waf", "cloudflare", "hcaptcha"],
)
def test_common_challenges_are_blocked_on_every_engine(body, kind):
    for engine in ENGINES:
        page = read_page(engine, body)
        assert (page.page_class, block_kind(page.reason)) == ("blocked", kind), engine


def _fetched(status: int, headers: dict[str, str], content: bytes) -> Fetched:
    return Fetched(
        url="https://www.google.com/search?q=x&tbm=isch",
        final_url="https://www.google.com/search?q=x&tbm=isch",
        status="ok",
        http_status=status,
        headers=headers,
        content=content,
        error_message=None,
        attempts=1,
        elapsed_s=0.01,
    )


def test_a_waf_challenge_told_by_its_headers_is_blocked():
    assert header_block({}, 200) is None
    waf = _fetched(202, {"x-amzn-waf-action": "challenge"}, b"<html></html>")
    page = ENGINES["google"].read_fetched(waf)
    assert page.page_class == "blocked"
    assert page.reason == "WAF challenge: AWS WAF x-amzn-waf-action: challenge (HTTP 202)"
    captcha = _fetched(405, {"x-amzn-waf-action": "captcha"}, b"")
    assert block_kind(header_block(captcha.headers, 405)) == "captcha"
    cloudflare = {"cf-mitigated": "challenge"}
    assert block_kind(header_block(cloudflare, 403)) == "JavaScript challenge"
    ok = _fetched(200, {"content-type": "text/html"}, fixture("google_results.html"))
    assert ENGINES["google"].read_fetched(ok).page_class == "results"


def test_verdict_order_and_vocabulary():
    args = {"text": "<p>unusual traffic</p>", "markers": (), "expected": "tiles"}
    assert page_verdict(has_results=True, no_results=True, **args).page_class == "results"
    assert page_verdict(has_results=False, no_results=True, **args).page_class == "no_results"
    assert page_verdict(has_results=False, no_results=False, **args) == (
        "unknown_layout",
        "no tiles",
    )
    assert PAGE_CLASSES == ("results", "no_results", "blocked", "unknown_layout")
    assert block_kind("consent wall: x") == "consent wall" and block_kind("wall: x") is None
    assert all(block_kind(f"{k}: evidence") == k for k in BLOCK_KINDS)
