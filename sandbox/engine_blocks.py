"""Pages the sandbox engines answer instead of results: bot checks and consent walls.

Each follows the hand-written page of the same kind in tests/fixtures/search/ (Bing's
"One last step" captcha and its cookie-consent interstitial, Google's "enable JavaScript"
bot check and its consent.google.com page, DuckDuckGo's anomaly challenge). Served by the
engine variants of `tv100.sandbox.engines` (``/google-blocked``, ``/bing-consent`` …).
"""

from __future__ import annotations

from urllib.parse import quote

from tv100.sandbox.engine_markup import escape, token


def bing_captcha_html(query: str, redirect: str) -> str:
    """Bing's captcha page: "One last step", a ``/turing/captcha/challenge`` frame."""
    ig = token("ig", query, size=16).upper()
    return (
        '<!DOCTYPE html><html dir="ltr" lang="en"><head><meta charset="utf-8"><title>Bing</title>'
        '<meta name="robots" content="noindex,nofollow" /><style>.captcha{max-width:420px;'
        "margin:10vh auto;text-align:center}</style></head><body class=\"b_respl\">"
        '<div id="b_content" class="b_captcha"><div class="captcha" role="main">'
        '<div class="captcha_header"><h1 id="captcha_title" class="captcha_title">One last step'
        '</h1><p id="captcha_subtitle" class="captcha_subtitle">Please solve the challenge '
        'below to continue</p></div><div id="captcha_frame" class="captcha_frame"><iframe '
        'id="turnstile-frame" title="Verification challenge" src="/turing/captcha/challenge?'
        f'isChallengeIframe=1&amp;IG={ig}&amp;redirectUrl={quote(redirect, safe="")}" '
        'width="300" height="65" frameborder="0" scrolling="no"></iframe></div>'
        '<form id="captcha_form" method="post" action="/turing/captcha/verify"><input '
        f'type="hidden" name="redirectUrl" value="{escape(redirect)}" /></form></div></div>'
        "</body></html>"
    )


def bing_consent_html(query: str) -> str:
    """Bing's cookie-consent interstitial: the search chrome, no results, ``#bnp_container``."""
    q = escape(query)
    return (
        '<!DOCTYPE html><html dir="ltr" lang="en"><head><meta charset="utf-8">'
        f"<title>{q} - Search Images</title></head><body class=\"b_respl\"><header "
        'id="b_header"><form action="/bing/images/search" id="sb_form" role="search"><input '
        f'class="b_searchbox" id="sb_form_q" name="q" type="search" value="{q}" /></form>'
        '</header><div id="b_content" class="b_consent_wall"></div><div id="bnp_container" '
        'class="bnp_container" role="dialog" aria-modal="true" aria-label="Cookie consent">'
        '<div id="bnp_cookie_banner" class="bnp_cookie_banner"><div class="bnp_title">Your '
        'privacy choices</div><div class="bnp_body">We and our partners use cookies and '
        "similar technologies to deliver, maintain and improve our services and ads.</div>"
        '<div class="bnp_btn_container"><button id="bnp_btn_accept" class="bnp_btn_accept" '
        'type="button">Accept</button><button id="bnp_btn_reject" class="bnp_btn_reject" '
        'type="button">Reject</button></div></div></div></body></html>'
    )


def google_enablejs_html(query: str) -> str:
    """Google's bot check for clients without JavaScript: a redirect to ``enablejs``."""
    sei = token("sei", query, size=12)
    qp = quote(query, safe="").replace("%20", "+")
    return (
        '<!DOCTYPE html><html lang="en"><head><title>Google Search</title><style>body{'
        "background-color:var(--xhUGwc)}</style></head><body><noscript><style>table,div,span,p{"
        "display:none}</style><meta content=\"0;url=/httpservice/retry/enablejs?sei="
        f'{sei}" http-equiv="refresh"><div style="display:block">Please click <a href="'
        f'/httpservice/retry/enablejs?sei={sei}">here</a> if you are not redirected within a '
        'few seconds.</div></noscript><div class="yvlrue" id="yvlrue" style="display:none">If '
        "you're having trouble accessing Google Search, please&nbsp;<a href=\"/search?q="
        f'{qp}&amp;tbm=isch&amp;emsg=SG_REL&amp;sei={sei}">click here</a>, or send&nbsp;<a '
        'href="https://support.google.com/websearch">feedback</a>.</div></body></html>'
    )


def google_consent_html(continue_url: str) -> str:
    """Google's consent page ("Before you continue to Google"), posting to consent.google.com."""
    hidden = (
        '<input type="hidden" name="gl" value="DE"><input type="hidden" name="pc" value="srp">'
        f'<input type="hidden" name="continue" value="{escape(continue_url)}">'
        '<input type="hidden" name="hl" value="en"><input type="hidden" name="src" value="1">'
    )
    return (
        '<!doctype html><html lang="en" dir="ltr"><head><meta name="robots" '
        'content="noindex,nofollow"><title>Before you continue to Google</title></head><body>'
        '<div class="KxvlWc"><h1 class="HTYwY">Before you continue to Google</h1><div '
        'class="qqtRac">We use <a href="https://policies.google.com/technologies/cookies?hl=en">'
        "cookies</a> and data to<ul><li>Deliver and maintain Google services</li><li>Track "
        "outages and protect against spam, fraud, and abuse</li></ul></div><div class=\"GzLjMd\">"
        f'<form action="https://consent.google.com/save" method="POST">{hidden}<input '
        'type="hidden" name="set_eom" value="true"><button aria-label="Reject all">Reject all'
        '</button></form><form action="https://consent.google.com/save" method="POST">'
        f'{hidden}<input type="hidden" name="set_eom" value="false"><button aria-label="Accept '
        'all">Accept all</button></form></div></div></body></html>'
    )


def ddg_anomaly_html(query: str) -> str:
    """DuckDuckGo's bot challenge ("Unfortunately, bots use DuckDuckGo too.")."""
    boxes = "".join(
        f'<div class="anomaly-modal__box"><input type="checkbox" name="image-check_{t}">'
        f'<img class="anomaly-modal__image" src="/assets/anomaly/images/challenge/{t}.jpg" '
        'alt=""></div>'
        for t in (token("anomaly", query, n, size=8) for n in range(6))
    )
    return (
        '<!DOCTYPE html><html lang="en-US"><head><meta charset="utf-8"><meta name="robots" '
        'content="noindex,nofollow"><title>DuckDuckGo</title></head><body><div '
        'class="anomaly-modal__mask"><div class="anomaly-modal__modal" '
        'data-testid="anomaly-modal"><div class="anomaly-modal__title">Unfortunately, bots use '
        'DuckDuckGo too.</div><div class="anomaly-modal__description">Please complete the '
        "following challenge to confirm this search was made by a human.</div><form "
        f'id="challenge-form" action="/ddg/anomaly.js?sv=html&amp;cc=sre&amp;q={quote(query)}" '
        f'method="POST"><div class="anomaly-modal__images">{boxes}</div><button type="submit" '
        'class="anomaly-modal__submit" disabled>Submit</button></form></div></div></body></html>'
    )
