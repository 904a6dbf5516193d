"""Untrusted text (S3 keys, error messages, values of rejected lines) inside the markdown of artifacts.

Prefect's UI renders a markdown artifact, every artifact's description and every string cell of a
table artifact as markdown. An object key is whatever the uploader chose (`a](javascript:...)`, `<img
onerror=...>`, `|`, a newline), so none may reach that markdown as it is: in prose or a cell it is
escaped (`text`), inside a code span it cannot close the span (`code`). An ordinary key or error reads
exactly as before: only characters that could start markdown or HTML are escaped.
"""

from __future__ import annotations

import re
from typing import Any

# Characters that open a link, an image, HTML, an entity, emphasis, code, strikethrough or a table cell.
_ALWAYS = re.compile(r"([\\`*\[\]<>&|~#!])")
# `_` emphasises only next to whitespace or punctuation: in snake_case or a batch name it stays as it is.
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")
# GFM's extended autolinks (marked's, as Prefect's UI renders them): a bare http(s):// or ftp:// URL, a
# `www.` name or an e-mail address is a live link without any markdown syntax, so escaping the openers
# above does not stop it; an escape inside each (`https\://`, `www\.`, `\@`) does, and reads the same.
_AUTOLINK = re.compile(r"\b(?:(?i:https?|ftp|mailto|xmpp)(?=:)|(?i:www)(?=\.))|(?=@)")
# A cell is rendered as a document of its own: at its start these begin a list or a heading's underline.
_BLOCK_START = re.compile(r"^(\s*)(?:([-+=])|(\d+)([.)]))")


def _block_start(match: re.Match) -> str:
    return match[1] + ("\\" + match[2] if match[2] else match[3] + "\\" + match[4])


def text(value: str) -> str:
    """`value` as literal inline markdown: one line, every markdown and HTML opener backslash-escaped."""
    one_line = _LINE_BREAKS.sub(" ", value)
    escaped = _UNDERSCORE.sub(r"\\_", _ALWAYS.sub(r"\\\1", one_line))
    escaped = _AUTOLINK.sub(lambda m: m[0] + "\\", escaped)
    return _BLOCK_START.sub(_block_start, escaped, count=1)


def code(value: str) -> str:
    """`value` as an inline code span on one line; a backtick in it becomes ' so it cannot end the span."""
    return "`" + _LINE_BREAKS.sub(" ", value).replace("`", "'") + "`"


def cells(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table artifact rows with every string cell escaped (the UI renders string cells as markdown)."""
    return [{column: text(v) if isinstance(v, str) else v for column, v in row.items()} for row in rows]
