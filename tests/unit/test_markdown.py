"""Crafted S3 keys and error texts in artifacts' markdown: rendered by a CommonMark parser (markdown-it,
with GFM's tables and strikethrough, as Prefect's UI renders), they stay literal text."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from markdown_it import MarkdownIt

from berlin_rentals.batch import TransformStats
from berlin_rentals.catch_up import LedgerEntry, RawObject, gaps_markdown, report_table, summarise
from berlin_rentals.catch_up import Plan as CatchUpPlan
from berlin_rentals.ingest_result import IngestResult, closing_sentence
from berlin_rentals.lineage import lineage_row, rejected_rows, summary_markdown
from berlin_rentals.markdown import cells, code, text
from berlin_rentals.replay import ReplayOutcome, replay_markdown
from berlin_rentals.source import SourceObject
from berlin_rentals.staging import StagedBatch
from berlin_rentals.warehouse.load import LoadReport

PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
# What a key or an error may carry to break out of its place: links, images, HTML, a table, code
# spans, emphasis, a heading or a list of its own, entities, line breaks.
CRAFTED = [
    "raw/x](javascript:alert(1)).zip",
    "raw/[click](javascript:alert(1))",
    "raw/![img](http://evil.example/x.png)",
    "raw/<script>alert(1)</script>.zip",
    "raw/<img src=x onerror=alert(1)>",
    "raw/a|b|c\n|---|---|\n|x|y|",
    "raw/`code` and ``two``.zip",
    "raw/**bold** _em_ __strong__ ~~gone~~ *x*",
    "raw/line one\nline two\r\n# heading\n- item\n1. ordered\n> quote",
    "raw/&lt;amp&amp; \\escaped\\_ \u2028 next",
    "- list at the start",
    "# heading at the start",
    "12) ordered at the start",
    "<http://autolink.example>",
    # GFM's extended autolinks, live in the UI's renderer (marked) with no markdown syntax at all
    "raw/https://evil.example/steal?x=1 and HTTP://EVIL.EXAMPLE",
    "raw/www.evil.example/x.zip",
    "raw/mallory@evil.example.zip",
    "ftp://evil.example mailto:mallory@evil.example",
]
UNSAFE_TOKENS = {"link_open", "image", "html_inline", "html_block", "table_open"}
ORDINARY = "raw/immobilienscout24_berlin_20190113_19.zip"


def _blocks(markdown: str) -> list[str]:
    return [token.type for token in PARSER.parse(markdown)]


def _inline(markdown: str) -> list:
    return [child for token in PARSER.parse(markdown) if token.type == "inline" for child in token.children]


def _one_line(value: str) -> str:
    return re.sub(r"[\r\n\u2028]+", " ", value)


def _literal(markdown: str) -> str:
    """The text a reader sees of one paragraph (text and code spans, nothing else)."""
    return "".join(child.content for child in _inline(markdown))


@pytest.mark.parametrize("value", CRAFTED)
def test_escaped_text_renders_as_one_paragraph_of_exactly_that_text(value):
    escaped = text(value)
    assert _blocks(escaped) == ["paragraph_open", "inline", "paragraph_close"], escaped
    assert {child.type for child in _inline(escaped)} <= {"text"}, escaped
    assert " ".join(_literal(escaped).split()) == " ".join(_one_line(value).split())


@pytest.mark.parametrize("value", CRAFTED)
def test_a_code_span_holds_the_whole_value_and_nothing_closes_it_early(value):
    span = code(value)
    children = _inline("see " + span + " here")
    assert [child.type for child in children] == ["text", "code_inline", "text"], span
    assert children[1].content.strip() == _one_line(value).replace("`", "'").strip()


def test_the_openers_of_extended_autolinks_are_escaped_and_only_those():
    """CommonMark's parser here has no extended autolinks; the UI's (marked, gfm) has: each opener holds an
    escape, which marked reads as a literal character, not as the start of a URL or an address."""
    assert text("https://evil.example/x www.evil.example a@evil.example") == (
        "https\\://evil.example/x www\\.evil.example a\\@evil.example"
    )
    assert text("s3://rentals-raw/raw/a.zip is not http") == "s3://rentals-raw/raw/a.zip is not http"


def test_ordinary_keys_and_errors_read_as_before():
    for value in (
        "raw/immobilienscout24_berlin_20190113_15.zip",
        "s3://rentals-raw/raw/2019/01/13/immobilienscout24_berlin_20190113_15.zip",
        "BadArchive: not a zip archive (File is not a zip file)",
        "fact_flats 11, dim_city 1",
    ):
        assert text(value) == value
        assert code(value) == f"`{value}`"


def _unsafe(markdown: str) -> list[str]:
    tokens = PARSER.parse(markdown)
    found = [t.type for t in tokens if t.type in UNSAFE_TOKENS]
    found += [c.type for t in tokens if t.children for c in t.children if c.type in UNSAFE_TOKENS]
    return found


def _shape(markdown: str) -> list[str]:
    """The document's structure: its blocks and every inline token but plain text."""
    shape = []
    for token in PARSER.parse(markdown):
        shape.append(token.type)
        shape += [child.type for child in token.children or () if child.type not in ("text", "softbreak")]
    return shape


def _source(key: str) -> SourceObject:
    return SourceObject("rentals-raw", key, "0" * 32, 1234, datetime(2019, 1, 13, 19, 5, tzinfo=UTC))


def _ingest_results(key: str) -> list[IngestResult]:
    source = _source(key)
    error = f"BadArchive: {key} is not a zip: <b>{key}</b>"
    failed = IngestResult("failed", "rentals-raw", key, source.etag, source=source, ledger="parked", error=error)
    loaded = IngestResult(
        "loaded",
        "rentals-raw",
        key,
        source.etag,
        source=source,
        stats=TransformStats(lines_read=2, listings=1, rejected=1, rejected_by_reason=Counter({"not_json": 1})),
        staged=StagedBatch("rentals-staging", f"clean/v1/{key}/", {"fact_flats": 1}),
        report=LoadReport("loaded", fact_inserted=1),
        step_seconds={"load": 0.1},
    )
    return [failed, loaded]


@pytest.mark.parametrize("key", CRAFTED)
def test_the_ingest_summary_of_a_crafted_key_and_error_is_shaped_as_an_ordinary_ones(key):
    for result, ordinary in zip(_ingest_results(key), _ingest_results(ORDINARY), strict=True):
        markdown = summary_markdown(result, closing_sentence(result))
        assert _unsafe(markdown) == [], markdown
        # The same headings, list items, bold and code spans as the summary of an ordinary key: none of the key's.
        assert _shape(markdown) == _shape(summary_markdown(ordinary, closing_sentence(ordinary))), markdown
        spans = [c.content for c in _inline(markdown) if c.type == "code_inline"]
        assert "s3://rentals-raw/" + _one_line(key).replace("`", "'") in spans, markdown


@pytest.mark.parametrize("key", CRAFTED)
def test_the_catch_up_gaps_of_a_parked_crafted_key_have_no_markup_of_theirs(key):
    since, until = datetime(2031, 5, 1, tzinfo=UTC), datetime(2031, 5, 1, 2, tzinfo=UTC)
    parked = RawObject(key, "e" * 32, 3, since)
    ledger = {(parked.key, parked.etag): LedgerEntry("parked", 2, f"BadArchive: [{key}](javascript:x) <i>no</i>")}
    report = summarise(since, until, [parked], CatchUpPlan(), [], ledger)
    markdown = gaps_markdown(since, until, [parked], ledger, report)
    assert _unsafe(markdown) == [], markdown
    plain = RawObject(ORDINARY, parked.etag, 3, since)
    plain_ledger = {(plain.key, plain.etag): LedgerEntry("parked", 2, "BadArchive: not a zip archive")}
    ordinary = gaps_markdown(
        since, until, [plain], plain_ledger, summarise(since, until, [plain], CatchUpPlan(), [], plain_ledger)
    )
    assert _shape(markdown) == _shape(ordinary), markdown
    assert _one_line(key).replace("`", "'") in [c.content for c in _inline(markdown) if c.type == "code_inline"]
    for row in cells(report_table(report)):
        for value in row.values():
            if isinstance(value, str):
                assert _unsafe(value) == [] and _blocks(value)[:1] in ([], ["paragraph_open"]), value


def _replayed(key: str) -> ReplayOutcome:
    return ReplayOutcome(
        "replayed",
        bucket="rentals-raw",
        key=key,
        etag="0" * 32,
        lines_replayed=1,
        still_rejected=1,
        still_rejected_by_reason={"not_json": 1},
        staged_prefix=f"s3://rentals-staging/replay/{key}/",
    )


@pytest.mark.parametrize("key", CRAFTED)
def test_the_replay_summary_of_a_crafted_key_is_shaped_as_an_ordinary_ones(key):
    markdown = replay_markdown(_replayed(key))
    assert _unsafe(markdown) == [], markdown
    assert _shape(markdown) == _shape(replay_markdown(_replayed(ORDINARY))), markdown


@pytest.mark.parametrize("key", CRAFTED)
def test_every_string_cell_of_a_table_artifact_renders_as_its_literal_text(key):
    """Prefect's UI renders each string cell of a table artifact as a markdown document of its own."""
    source = _source(key)
    result = IngestResult(
        "failed",
        "rentals-raw",
        key,
        source.etag,
        source=source,
        staged=StagedBatch("rentals-staging", f"clean/v1/{key}/", {"fact_flats": 1}),
        ledger="parked",
        error=f"ValueError: {key}",
    )
    rejected = pa.table(
        {
            "member": [key],
            "line_number": [3],
            "reason": [f"{key} line 3: invalid_value: bad value - at `$.data.realEstate_baseRent`"],
            "raw_line": ['{"data": {"realEstate_baseRent": "' + key.replace("\n", " ").replace("\\", "/") + '"}}'],
        }
    )
    rows = [lineage_row(result), *rejected_rows(rejected)]
    for plain, shown in zip(rows, cells(rows), strict=True):
        for column, value in plain.items():
            if not isinstance(value, str):
                assert shown[column] == value
                continue
            assert _blocks(shown[column]) == ["paragraph_open", "inline", "paragraph_close"], shown[column]
            assert {child.type for child in _inline(shown[column])} <= {"text"}, (column, shown[column])
            assert " ".join(_literal(shown[column]).split()) == " ".join(_one_line(value).split())
