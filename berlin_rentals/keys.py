"""Deterministic surrogate keys: the same natural key always hashes to the same BIGINT.

Hash keys need no sequence and no lookup, so two loads can run at once and a reload of the
same file produces the same keys.
"""

from __future__ import annotations

from hashlib import blake2b

_SEPARATOR = "\x1f"  # unit separator: cannot occur in the text fields after capping


def surrogate_key(*parts: object) -> int:
    joined = _SEPARATOR.join("" if part is None else str(part) for part in parts)
    digest = blake2b(joined.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
