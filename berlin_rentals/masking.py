"""Masking of contact persons' personal data, for warehouses where analysts must not see it.

A keyed hash (HMAC-SHA256 with a secret salt) replaces each value: the same person still hashes to
the same value, so joins and counts work, but without the salt nobody can test a guess. So nothing
derived from the salt leaves the worker: cache keys, staged prefixes, the ledger and the lineage name
it by ETL_MASK_SALT_ID, a name the operator gives it, and a salt a guess could find is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field

# A generated secret: `openssl rand -hex 32` (64 characters) or `python -c "import secrets;
# print(secrets.token_hex(32))"`. 32 hex characters are 128 bits; fewer bytes cannot hold that much.
MIN_SALT_BYTES = 32
MIN_DISTINCT_BYTES = 8  # 32 random hex characters have 8 distinct ones but about once in 10^8
# Words that make a salt a phrase someone chose, which a guess finds: with one, 100 guesses did. A word
# counts only standing as a word (no letter either side), so a generated token holds one by chance
# (1 of 200,000 hex and URL-safe tokens here, refused with a word to see why), where a phrase
# ("a-secret-salt-...") always does.
_PHRASE_WORDS = re.compile(
    rb"(?<![a-z])(salt|secret|passw[a-z]*|changeme|change|example|sample|test|demo|default|berlin|rentals?|"
    rb"immo[a-z]*|qwerty|letmein|password)(?![a-z])",
    re.IGNORECASE,
)
# Goes into staged prefixes and cache keys in clear: a name, never the salt or anything computed from it.
SALT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


def weak_salt(salt: bytes) -> str | None:
    """Why this salt could be found by guessing (None if it could not, as far as can be told)."""
    if len(salt) < MIN_SALT_BYTES:
        return f"it has {len(salt)} bytes, fewer than {MIN_SALT_BYTES}"
    if len(set(salt)) < MIN_DISTINCT_BYTES:
        return f"it has {len(set(salt))} distinct characters"
    if any(salt == salt[:period] * (len(salt) // period) for period in range(1, len(salt) // 2 + 1)):
        return "it is one piece repeated"
    if word := _PHRASE_WORDS.search(salt):
        return f"it contains the word {word.group().decode(errors='replace')!r}"
    return None


# dim_agency and dim_agent columns that identify a person. Company name and customer id describe the agency and stay.
PERSONAL_COLUMNS = (
    "firstname",
    "lastname",
    "email",
    "phone_number",
    "phone_subscriber",
    "cell_phone_number",
    "cell_phone_subscriber",
)


@dataclass(frozen=True)
class Masker:
    salt: bytes = field(repr=False)
    salt_id: str

    def __post_init__(self) -> None:
        if reason := weak_salt(self.salt):
            raise ValueError(
                f"ETL_MASK_SALT is refused: {reason}; a pseudonym and a guessed salt would reveal the person. "
                "Use a generated secret: openssl rand -hex 32"
            )
        if not SALT_ID.fullmatch(self.salt_id) or (len(self.salt_id) >= 6 and self.salt_id.encode() in self.salt):
            raise ValueError(
                f"ETL_MASK_SALT_ID={self.salt_id!r} must be a name for the salt (lower-case letters, digits and "
                "'-', at most 32; e.g. the month it was made, 2026-12), no part of the salt itself"
            )

    def mask(self, value: str | None) -> str | None:
        if value is None:
            return None
        digest = hmac.new(self.salt, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return f"h:{digest[:24]}"
