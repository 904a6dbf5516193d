"""Masking of contact persons' personal data, for warehouses where analysts must not see it.

A keyed hash (HMAC-SHA256 with a secret salt) replaces each value: the same person still hashes to
the same value, so joins and counts work, but without the salt nobody can test a guess.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

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
    salt: bytes

    def __post_init__(self) -> None:
        if len(self.salt) < 16:
            raise ValueError("ETL_MASK_SALT must be at least 16 bytes of secret")

    def mask(self, value: str | None) -> str | None:
        if value is None:
            return None
        digest = hmac.new(self.salt, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return f"h:{digest[:24]}"

    @property
    def fingerprint(self) -> str:
        """Identifies the salt in cache keys without revealing it."""
        return hmac.new(self.salt, b"berlin-rentals-cache-key", hashlib.sha256).hexdigest()[:12]
