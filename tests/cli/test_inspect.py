"""`tv100 inspect KIND FILE`: records of a page of KIND; exit 2 on a page that is not one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tv100.flows.cli import app

runner = CliRunner()
FIXTURES = Path(__file__).parents[1] / "fixtures"


def _inspect(kind: str, path: Path):
    return runner.invoke(app, ["inspect", kind, str(path)])


@pytest.mark.parametrize(
    "kind,name,records",
    [
        ("google", "search/google_basic.html", 5),
        ("google", "search/google_results.html", 4),
        ("bing", "search/bing_results.html", 4),
        ("duckduckgo", "search/ddg_i.json", 3),
        ("imdb-list", "imdb/list_en.html", None),
        ("imdb-title", "imdb/title_next_data.html", 1),
    ],
)
def test_result_pages_print_one_json_line_per_record(kind, name, records):
    out = _inspect(kind, FIXTURES / name)
    assert out.exit_code == 0, out.output
    lines = [json.loads(line) for line in out.output.splitlines()]
    assert lines and (records is None or len(lines) == records)
    if kind == "google" and name.endswith("basic.html"):
        assert all(r["thumbnail_only"] and r["image_url"] == r["thumb_url"] for r in lines)
        assert lines[0]["page_url"] == "https://www.imdb.com/title/tt21234567/"


@pytest.mark.parametrize(
    "kind,name",
    [
        ("google", "search/google_no_results.html"),
        ("bing", "search/bing_no_results.html"),
        ("duckduckgo", "search/ddg_i_empty.json"),
        ("imdb-list", "imdb/list_empty.html"),
    ],
)
def test_a_no_results_page_prints_nothing_and_exits_0(kind, name):
    out = _inspect(kind, FIXTURES / name)
    assert (out.exit_code, out.output) == (0, ""), out.output


@pytest.mark.parametrize(
    "kind,name,says",
    [
        ("google", "search/google_enablejs.html", "blocked (JavaScript challenge: Google's"),
        ("google", "search/google_consent.html", "blocked (consent wall: Google's consent page"),
        ("google", "search/google_sorry.html", "blocked (captcha: Google's unusual-traffic"),
        ("bing", "search/bing_captcha.html", "blocked (captcha: Bing's captcha"),
        ("bing", "search/bing_consent.html", "blocked (consent wall: Bing's cookie consent"),
        ("duckduckgo", "search/ddg_anomaly.html", "blocked (captcha: DuckDuckGo's bot"),
        ("google", "search/bing_results.html", "unknown_layout (no Google image results"),
        ("bing", "search/google_results.html", "unknown_layout (no Bing image tiles"),
        ("duckduckgo", "search/ddg_page.html", "unknown_layout (not DuckDuckGo i.js JSON)"),
        ("duckduckgo", "search/garbage.bin", "unknown_layout (not DuckDuckGo i.js JSON)"),
        ("imdb-list", "imdb/waf_challenge.html", "blocked (a bot-check page)"),
        ("imdb-title", "search/bing_results.html", "unknown_layout (a layout tv100 cannot read)"),
    ],
)
def test_a_page_of_another_kind_exits_2_with_one_line(kind, name, says):
    path = FIXTURES / name
    out = _inspect(kind, path)
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tv100: error: ")
    assert repr(str(path)) in lines[0] and says in lines[0], lines[0]
    assert "Traceback" not in out.output


def test_an_empty_file_is_not_a_result_page(tmp_path):
    empty = tmp_path / "empty.html"
    empty.write_bytes(b"")
    out = _inspect("bing", empty)
    assert out.exit_code == 2 and "unknown_layout (empty page)" in out.output
