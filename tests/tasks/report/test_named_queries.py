"""The report's SQL files: every file registered, metadata parsed, parameters found."""

from __future__ import annotations

import pytest

from tv100.tasks.report.named_queries import (
    EXAMPLE_QUERIES,
    HELPER_VIEWS,
    load_query,
    parse_query,
    query_files,
    query_names,
)


def test_every_sql_file_is_registered_once_and_loads():
    names = query_names()
    assert len(names) == len(set(names))
    assert sorted(names) == query_files()
    for name in names:
        q = load_query(name)
        assert q.name == name and q.description and q.tables and q.sql, name
        assert not q.sql.startswith("--"), name  # metadata is not part of the query
        assert q.example == (name in EXAMPLE_QUERIES)


def test_parameters_come_from_the_query_not_its_description():
    q = load_query("model_accuracy")
    assert "$metric" in q.description
    assert q.params == {"metric", "split", "recipes"}
    assert load_query("class_distribution").params == {"stage", "many", "few"}
    assert not any(load_query(v).params for v in HELPER_VIEWS)


def test_parse_query_reads_continued_descriptions_and_rejects_incomplete_files():
    q = parse_query(
        "x",
        "-- description: first half\n--   second half.\n-- tables: a, b\n"
        "-- a plain comment\nselect 1\n",
    )
    assert q.description == "first half second half."
    assert q.tables == ("a", "b") and q.sql == "select 1" and not q.example
    with pytest.raises(ValueError, match="x.sql lacks tables"):
        parse_query("x", "-- description: d\nselect 1")
    with pytest.raises(ValueError, match="lacks sql"):
        parse_query("x", "-- description: d\n-- tables: a\n")
    with pytest.raises(KeyError, match="unknown query 'nope'"):
        load_query("nope")
