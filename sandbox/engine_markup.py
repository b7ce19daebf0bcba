"""Markup of the sandbox engines' result pages: Bing, Google (two layouts) and DuckDuckGo.

Pure functions from a page of sandbox images to the HTML each engine serves; the routes are
in `tv100.sandbox.engines`, the pages engines answer instead of results (bot checks,
consent walls) in `tv100.sandbox.engine_blocks`. The formats follow the saved pages in
tests/fixtures/search/ (which follow the real engines), not the other way round.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote, urlencode


class Image(Protocol):
    """What the engines read of a `tv100.sandbox.imagehost.HostedImage`."""

    @property
    def url_path(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def page_path(self) -> str | None: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...


def token(*parts: object, size: int = 8) -> str:
    """A deterministic hex token of `parts` (ids, nonces, hashes in the pages)."""
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=size).hexdigest()


def highlight(caption: str, series_title: str) -> str:
    """Bing's way of marking the query terms: U+E000 … U+E001 around the match."""
    if not series_title:
        return caption
    at = caption.casefold().find(series_title.casefold())
    if at < 0:
        return caption
    end = at + len(series_title)
    return caption[:at] + "\ue000" + caption[at:end] + "\ue001" + caption[end:]


def escape(text: str) -> str:
    """`text` escaped for HTML text and attribute values."""
    return html.escape(text, quote=True)


def bing_html(
    base: str,
    query: str,
    page: list[Image],
    start: int,
    series_title: str,
    thumb_id: Callable[[Image], str],
) -> str:
    """A Bing Images result page: ``a.iusc`` tiles with their `m` JSON, or the no-results
    block when `page` is empty."""
    q = escape(query)
    qp = quote(query, safe="").replace("%20", "+")
    tiles: list[str] = []
    for n, img in enumerate(page):
        image = base + img.url_path
        page_url = base + img.page_path if img.page_path else base + "/"
        tid = thumb_id(img)
        turl = f"{base}/bing/th?id=OIP.{tid}&pid=15.1"
        m = {
            "sid": "",
            "cturl": "",
            "cid": tid[:8],
            "purl": page_url,
            "murl": image,
            "turl": turl,
            "md5": token("md5", img.url_path, size=16),
            "shkey": "",
            "t": highlight(img.title, series_title),
            "mid": token("mid", img.url_path, size=16).upper(),
            "desc": "",
        }
        tw = 270 if img.width >= img.height else 160
        th = max(1, round(tw * img.height / max(img.width, 1)))
        detail = "/bing/images/search?" + urlencode(
            {
                "view": "detailV2",
                "ccid": tid[:8],
                "id": m["mid"],
                "thid": f"OIP.{tid}",
                "mediaurl": image,
                "exph": img.height,
                "expw": img.width,
                "q": query,
                "FORM": "IRPRST",
                "selectedIndex": start + n,
            }
        )
        fmt = img.url_path.rsplit(".", 1)[-1] if "." in img.url_path.rsplit("/", 1)[-1] else "jpeg"
        lazy = n >= 10
        src = (
            f'data-src="{escape(turl)}&amp;w={tw}&amp;h={th}" '
            'src="data:image/svg+xml,%3Csvg xmlns=%22http://www.w3.org/2000/svg%22/%3E"'
            if lazy
            else f'src="{escape(turl)}&amp;w={tw}&amp;h={th}&amp;c=7"'
        )
        tiles.append(
            f'<li data-idx="{start + n + 1}" data-hoq=""><div class="iuscp isv" data-evt="1" '
            f'style="width:{tw}px;height:{th + 43}px"><div class="imgpt" '
            f'style="width:{tw}px;height:{th}px"><a class="iusc" style="height:{th}px;'
            f'width:{tw}px" m="{escape(json.dumps(m, ensure_ascii=False, separators=(",", ":")))}" '
            f'href="{escape(detail)}" h="ID=images.5297_1,5006.{start + n + 1}">'
            f'<div class="img_cont hoff"><img class="mimg{" vimgld" if lazy else ""}" '
            f'height="{th}" width="{tw}" {src} alt="{escape(img.title)}" /></div></a>'
            f'<div class="img_info hon"><span class="nowrap">{img.width} × {img.height} · '
            f'{escape(fmt)}</span><div class="lnkw"><a target="_blank" aria-hidden="true" '
            f'tabindex="-1" href="{escape(page_url)}">{escape(base.split("//", 1)[-1])}</a></div>'
            f'</div></div><div class="infopt"><a class="inflnk" aria-label="Image result for '
            f'{q}" href="{escape(page_url)}"><ul class="b_dataList"><li>{escape(img.title)}'
            f"</li></ul></a></div></div></li>"
        )
    if tiles:
        listing = f'<ul class="dgControl_list " data-row="0">{"".join(tiles)}</ul>'
    else:
        listing = (
            f'<div id="b_no_results" class="b_no"><h1>There are no results for <strong>{q}'
            "</strong></h1><ul><li>Check your spelling or try different keywords</li></ul></div>"
        )
    return (
        '<!DOCTYPE html><html dir="ltr" lang="en" xml:lang="en" '
        'xmlns="http://www.w3.org/1999/xhtml" xmlns:Web="http://schemas.live.com/Web/">'
        '<script type="text/javascript" nonce="c2FuZGJveA">//<![CDATA[\nsi_ST=new Date\n//]]>'
        f"</script><head><!--pc--><title>{q} - Search Images</title>"
        '<meta content="text/html; charset=utf-8" http-equiv="content-type" />'
        '<meta name="referrer" content="origin-when-cross-origin" />'
        '<link rel="icon" href="/sa/simg/favicon-trans-bg-blue-mg.ico" />'
        '<script type="text/javascript" nonce="c2FuZGJveA">//<![CDATA[\n'
        '_G={Region:"US",Lang:"en-US",Mkt:"en-US",RTL:false,Ver:"12",V:"images",P:"images",'
        f'IG:"{token("ig", query, size=16).upper()}"}};\n'
        'var imgcfg={"murl":"https://r.bing.com/rp/placeholder.jpg","turl":""};\n//]]></script>'
        '<style type="text/css">.dgControl_list li{display:inline-block}.iusc{display:block}'
        '</style></head><body class="b_respl"><header id="b_header">'
        '<form action="/bing/images/search" id="sb_form" class="sb_form hassbi" role="search">'
        '<a class="b_logoArea" href="/bing/?FORM=Z9FD1"><h1 class="b_logo" title="Back to Bing '
        'search"></h1></a><input class="b_searchbox" id="sb_form_q" name="q" type="search" '
        f'value="{q}" maxlength="1000" /><input type="hidden" value="IRSBIQ" name="form" /></form>'
        '<nav class="b_scopebar"><ul><li><a href="/bing/search?q='
        f'{qp}&amp;FORM=HDRSC1">All</a></li><li class="b_active"><a href="/bing/images/search?q='
        f'{qp}&amp;FORM=HDRSC2">Images</a></li><li><a href="/bing/videos/search?q={qp}'
        '&amp;FORM=HDRSC3">Videos</a></li></ul></nav></header><div id="b_content"><div id="vm_c">'
        '<div class="dg_b isvctrl" id="mmComponent_images_2" data-evt="1">'
        f'{listing}</div><div id="relatedSearches" class="b_rs"><h2>Related searches</h2>'
        f'<ul><li><a href="/bing/images/search?q={qp}+cast&amp;FORM=IRPATC">{q} cast</a></li>'
        f'<li><a href="/bing/images/search?q={qp}+poster&amp;FORM=IRPATC">{q} poster</a></li>'
        '</ul></div></div></div><footer id="b_footer" class="b_footer"><ul>'
        '<li><a href="http://go.microsoft.com/fwlink/?LinkId=521839">Privacy and Cookies</a>'
        '</li><li><a href="http://go.microsoft.com/fwlink/?LinkID=246338">Legal</a></li></ul>'
        "</footer></body></html>"
    )


def js_data(value: Any) -> str:
    """JSON written the way Google's pages do (``=``, ``&``, ``<``, ``>`` as \\u escapes)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for ch in "=&<>":
        text = text.replace(ch, f"\\u{ord(ch):04x}")
    return text


def google_html(
    base: str,
    query: str,
    page: list[Image],
    start: int,
    seed: int,
    thumb_id: Callable[[Image], str],
) -> str:
    """A Google Images result page: the results in ``AF_initDataCallback`` data, or the
    no-results block when `page` is empty."""
    q = escape(query)
    entries: list[Any] = []
    tiles: list[str] = []
    for n, img in enumerate(page):
        tbnid = token("tbnid", seed, img.url_path, size=7)
        docid = token("docid", seed, img.url_path, size=7)
        host = base.split("//", 1)[-1]
        page_url = base + img.page_path if img.page_path else base + "/"
        scale = 300 / max(img.width, img.height, 1)
        tw, th = max(1, round(img.width * scale)), max(1, round(img.height * scale))
        thumb = f"{base}/google/images?q=tbn:{thumb_id(img)}&usqp=CAU"
        entries.append(
            [
                1,
                [
                    0,
                    tbnid,
                    [thumb, th, tw],
                    [base + img.url_path, img.height, img.width],
                    None,
                    0,
                    "rgb({},{},{})".format(*(int(docid[i : i + 2], 16) for i in (0, 2, 4))),
                    None,
                    0,
                    {
                        "2000": [None, host, f"{(img.width * img.height) // 9000}KB"],
                        "2001": [None, None, None, 0, 0, 0, 0, 0, 0, None, 0],
                        "2003": [None, docid, page_url, img.title] + [None] * 10 + [host],
                        "2008": [None, img.title.split(" ")[0]],
                    },
                ],
                None,
                0,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                tbnid,
            ]
        )
        if n == 2:  # a "related searches" chip among the results, as on the real page
            entries.append(
                [7] + [None] * 9 + [[[f"{query} cast", [thumb, 100, 100], "/search?q=cast"]]]
            )
        if n < 20:
            tiles.append(
                f'<div jsaction="IE7JUb:e5gl8b" class="isv-r PNCib MSM1fd BUooTd" '
                f'data-id="dimg_{n + 1}" data-tbnid="{tbnid}" data-ri="{start + n}">'
                '<a class="wXeWr islib nfEiy" jsname="sTFXNd" tabindex="0" role="button">'
                '<div class="bRMDJf islir"><img class="rg_i Q4LuWd" src="data:image/gif;base64,'
                'R0lGODlhAQABAIAAAP///////yH5BAEKAAEALAAAAAABAAEAAAICTAEAOw==" '
                f'alt="{escape(img.title)}"></div></a><a class="VFACy kGQAp sMi44c lNHeqe WGvvNb" '
                f'rel="noopener" target="_blank" href="{escape(page_url)}" '
                f'title="{escape(img.title)}"><div class="fxgdke">{escape(host)}</div></a></div>'
            )
    grid = [
        [
            "GRID_STATE0",
            None,
            entries,
            "",
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            query,
            None,
            [None, None, None, "CAE="],
        ]
    ]
    data = [None, [None, None, None, [[grid]]], None, None, None, None, None, []]
    listing = (
        f'<div id="islrg" class="islrg"><div class="islrc">{"".join(tiles)}</div></div>'
        if tiles
        else no_results_google(query)
    )
    ds0 = [[[f"/search?q={quote(query)}&tbm=isch", None, query]], "en"]
    nonce = token("nonce", query, size=9)
    return (
        '<!doctype html><html itemscope="" itemtype="http://schema.org/SearchResultsPage" '
        'lang="en"><head><meta charset="UTF-8"><meta content="/images/branding/googleg/1x/'
        'googleg_standard_color_128dp.png" itemprop="image">'
        f'<title>{q} - Google Search</title><script nonce="{nonce}">(function(){{var _g='
        f"{{kEI:'{token('kei', query, size=8)}',kEXPI:'31',kBL:'Xb4G'}};window.google=_g;"
        "})();</script><style>.rg_i{display:block}.isv-r{display:inline-block}</style></head>"
        '<body jsmodel="hspDDf" class="srp"><div class="L3eUgb"><div id="searchform">'
        '<form class="tsf" action="/google/search" id="tsf" method="GET" name="f" '
        f'role="search"><input name="q" value="{q}" type="text" class="gLFyf" maxlength="2048" '
        'aria-label="Search"><input value="isch" name="tbm" type="hidden"></form></div>'
        f'<div id="hdtb-msb"><a class="hdtb-mitem" href="/google/search?q={quote(query)}">All'
        '</a><span class="hdtb-mitem hdtb-msel">Images</span></div>'
        f"{listing}"
        f"<script nonce=\"{nonce}\">AF_initDataCallback({{key: 'ds:0', hash: '1', data:"
        f"{js_data(ds0)}, sideChannel: {{}}}});</script>"
        f"<script nonce=\"{nonce}\">AF_initDataCallback({{key: 'ds:1', hash: '2', data:"
        f"{js_data(data)}, sideChannel: {{}}}});</script>"
        '<footer id="fbar"><a href="https://policies.google.com/privacy?hl=en">Privacy</a>'
        '<a href="https://policies.google.com/terms?hl=en">Terms</a></footer></div></body>'
        "</html>"
    )


def google_web_html(query: str) -> str:
    """Google's web results (what ``/search`` answers without ``tbm=isch``): no images."""
    q = escape(query)
    return (
        '<!doctype html><html lang="en"><head><meta charset="UTF-8">'
        f'<title>{q} - Google Search</title></head><body><div id="search"><div id="rso">'
        f'<div class="g"><a href="https://en.wikipedia.org/wiki/Special:Search?search='
        f'{quote(query)}"><h3>{q} - Wikipedia</h3></a></div></div></div></body></html>'
    )


def ddg_html(query: str, vqd: str) -> str:
    """DuckDuckGo's HTML search page, carrying the query's vqd token."""
    q = escape(query)
    qs = quote(query)
    return (
        '<!DOCTYPE html><html lang="en-US" class="no-js has-zcm  no-theme"><head>'
        '<meta name="description" content="DuckDuckGo. Privacy, Simplified.">'
        '<meta http-equiv="content-type" content="text/html; charset=utf-8">'
        f"<title>{q} at DuckDuckGo</title>"
        '<link rel="stylesheet" href="/dist/s.b49dcfb5899df4f917ee.css" type="text/css">'
        '<meta name="robots" content="noindex,nofollow"><meta name="referrer" content="origin">'
        '</head><body class="body--serp"><div class="site-wrapper js-site-wrapper">'
        '<div class="header-wrap js-header-wrap" id="header_wrapper"><form id="search_form" '
        'class="search--adv search--header js-search-form" name="x" action="/ddg/">'
        f'<input type="text" name="q" id="search_form_input" value="{q}">'
        '<input type="hidden" name="iax" value="images"><input type="hidden" name="ia" '
        'value="images"></form></div><div id="links_wrapper" class="serp__results">'
        '<div id="links" class="results js-results"></div></div></div>'
        '<script type="text/javascript">DDG.page = new DDG.Pages.SERP({ showSafeSearch: 0, '
        'instantAnswerAds: false, hostRegion: "use" });</script>'
        f'<script type="text/JavaScript">function nrji() {{nrj(\'/t.js?q={qs}&l=us-en&s=0&dl=en'
        f"&ct=US&ss_mkt=us&sp=0&vqd={vqd}&p_ent=&ex=-1&dfrsp=1');DDG.deep.initialize('/d.js?q="
        f"{qs}&l=us-en&s=0&dl=en&ct=US&vqd={vqd}&p_ent=&ex=-1&sp=0', false);}};"
        'DDG.ready(nrji, 1);</script><script type="text/javascript">DDG.ready(function () {'
        f"DDG.duckbar.load('images', {js_data({'q': query})});}});</script></body></html>"
    )


def no_results_google(query: str) -> str:
    """Google's "did not match any image results" block (both layouts use it)."""
    return (
        '<div class="Gx5Zad xpd EtOod pkphOe"><div class="kCrYT"><div class="BNeawe">'
        f"<div>Your search - <b>{escape(query)}</b> - did not match any image results.</div>"
        '<div style="margin-top:1em">Suggestions:</div><ul><li>Make sure that all words are '
        "spelled correctly.</li><li>Try different keywords.</li><li>Try more general keywords."
        "</li></ul></div></div></div>"
    )


def google_basic_html(
    base: str,
    query: str,
    page: list[Image],
    start: int,
    size: int,
    more: bool,
    thumb_id: Callable[[Image], str],
) -> str:
    """Google's basic-HTML image results (no JavaScript): thumbnails behind ``/url?q=`` links.

    Four result cells per row, each a thumbnail link and a title link to the source page;
    no full-size URL and no size anywhere (see `tv100.tasks.collect.google_basic`).
    """
    q = escape(query)
    qp = quote(query, safe="").replace("%20", "+")
    cells: list[str] = []
    for img in page:
        page_url = base + img.page_path if img.page_path else base + "/"
        ved = token("ved", img.url_path, size=12)
        href = escape(
            f"/url?q={quote(page_url, safe=':/')}&sa=U&ved=2ahUKEwi{ved}&usg=AOvVaw{ved[:16]}"
        )
        thumb = escape(f"{base}/google/images?q=tbn:{thumb_id(img)}&s")
        host = base.split("//", 1)[-1]
        cells.append(
            '<td class="e3goi"><div class="svla5d"><div><div class="lIMUZd"><div>'
            f'<table class="RntSmf"><tr><td><a href="{href}"><div class="kCmkOe">'
            f'<img class="DS1iW" alt="" src="{thumb}"/></div></a></td></tr><tr><td>'
            f'<a href="{href}"><div class="Tj0kfb"><span class="qXLe6d x3G5ab">'
            f'<span class="fYyStc">{escape(img.title)}</span></span><span class="qXLe6d '
            f'F9iS2e"><span class="fYyStc">{escape(host)}</span></span></div></a></td></tr>'
            "</table></div></div></div></div></td>"
        )
    rows = "".join(f"<tr>{''.join(cells[i : i + 4])}</tr>" for i in range(0, len(cells), 4))
    listing = f'<div><table class="GpQGbf">{rows}</table></div>' if cells else ""
    nxt = (
        f'<div class="BmP5tf"><a class="frGj1b" href="/google/search?q={qp}&amp;tbm=isch&amp;'
        f'start={start + size}&amp;sa=N">Next &gt;</a></div>'
        if more
        else ""
    )
    return (
        '<!DOCTYPE html PUBLIC "-//WAPFORUM//DTD XHTML Mobile 1.0//EN" '
        '"http://www.wapforum.org/DTD/xhtml-mobile10.dtd"><html xmlns="http://www.w3.org/1999/'
        'xhtml" lang="en-US"><head><meta content="application/xhtml+xml; charset=UTF-8" '
        'http-equiv="Content-Type"/><meta content="no-cache" name="Cache-Control"/>'
        f"<title>{q} - Google Search</title><style>a{{text-decoration:none;color:inherit}}"
        ".GpQGbf{border-collapse:collapse;width:100%}.e3goi{vertical-align:top;height:180px}"
        '</style></head><body><div class="n692Zd"><div class="BmP5tf"><form class="Pg70bf" '
        'id="sf" action="/google/search"><input name="ie" value="ISO-8859-1" type="hidden"/>'
        f'<input class="noHIxc" value="{q}" name="q" type="text"/><input name="tbm" '
        'value="isch" type="hidden"/><input class="xB0fq" type="submit" value="Search"/>'
        '</form></div></div><div class="KP7LCb"><div class="Pg70bf Uv67qb"><a class="eZt8xd" '
        f'href="/google/search?q={qp}&amp;ie=UTF-8&amp;source=lnms&amp;sa=X">All</a>'
        f'<span class="OXXup">Images</span></div></div>'
        f"{listing or no_results_google(query)}<footer>{nxt}"
        '<div class="EOlPnc"><span class="EYqSq">United States</span> - <a href="/url?q='
        "https://support.google.com/websearch%3Fp%3Dws_settings_location%26hl%3Den&amp;sa=U"
        '&amp;usg=AOvVaw3xQ0o9cWm6RzUeN1b2KsT5">Learn more</a></div></footer></body></html>'
    )
