"""Decode one JSON line into a typed listing (berlin_rentals/listing.py), or say exactly why it cannot be one.

The fast path declares every key the model knows (the unused ones as Raw, which msgspec slices without
parsing) and refuses others; a line it refuses is decoded again leniently, which tells its reject reason
or its unknown keys. LineDecoder learns a file's unknown keys, so its lines take the fast path too.
"""

from __future__ import annotations

import functools

import msgspec

from berlin_rentals.listing import (
    FIELD_SOURCE_KEYS,
    IGNORED_SOURCE_KEYS,
    KNOWN_SOURCE_KEYS,
    TYPED_FIELDS,
    Listing,
)
from berlin_rentals.values import SENTINELS, RejectedLine

_typed_decoders = {name: msgspec.json.Decoder(kind) for name, kind in TYPED_FIELDS.items()}
_LenientListing = msgspec.defstruct(
    "LenientListing",
    [
        (f.name, msgspec.Raw if f.name in TYPED_FIELDS else f.type, msgspec.field(default=None, name=f.encode_name))
        for f in msgspec.structs.fields(Listing)
    ],
    gc=False,
)


class _LenientLine(msgspec.Struct, gc=False):
    ok: bool | None = None
    data: _LenientListing | None = None


# The fast path: every known key declared (the unused ones as Raw, which msgspec slices without
# parsing), unknown ones refused. Almost every line passes; a line that does not is decoded again
# leniently, which also tells its reject reason or its unknown keys. Plain `Raw`, not `Raw | None`:
# msgspec drops Raw from a union, which then refuses every non-null value (JSON null is Raw too).
_KnownListing = msgspec.defstruct(
    "KnownListing",
    [(f"ignored_{i}", msgspec.Raw, msgspec.field(default=None, name=key)) for i, key in enumerate(IGNORED_SOURCE_KEYS)],
    bases=(Listing,),
    rename=FIELD_SOURCE_KEYS,
    forbid_unknown_fields=True,
    gc=False,
)


class _KnownLine(msgspec.Struct, gc=False):
    ok: bool | None = None
    data: _KnownListing | None = None


class _DataKeys(msgspec.Struct, gc=False):
    data: dict[str, msgspec.Raw] | None = None


_decoder = msgspec.json.Decoder(_LenientLine)
_known_decoder = msgspec.json.Decoder(_KnownLine)
_keys_decoder = msgspec.json.Decoder(_DataKeys)


def decode_line(raw: bytes) -> tuple[Listing, tuple[str, ...]]:
    """Decode and check one line: (the listing, the unknown keys of its `data`, ignored but counted).

    Raise RejectedLine with the reason when the line is not a listing.
    """
    try:
        try:
            line, unknown = _known_decoder.decode(raw), ()
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
            line = _decode_leniently(raw)
            unknown = tuple(sorted(set(_keys_decoder.decode(raw).data or ()) - KNOWN_SOURCE_KEYS))
    except RecursionError:  # msgspec's answer to JSON nested past its depth limit, even in a skipped value
        raise RejectedLine("too_deep", "the line nests arrays or objects deeper than a decoder reads") from None
    return _checked(line), unknown


def _checked(line: _KnownLine | _LenientLine) -> Listing:
    if line.ok is not True:
        raise RejectedLine("not_ok", f"`ok` is {line.ok!r}: the scraper marked this record as failed")
    listing = line.data
    if listing is None:
        raise RejectedLine("no_data", "the line has no `data` object")
    if not isinstance(listing, Listing):
        listing = _typed(listing)
    if listing.id is None or listing.id == "":
        raise RejectedLine("no_id", "`data.id` is missing")
    return listing


# A file's lines repeat its unknown keys (every real listing carries `listingType`, a third a portrait
# URL): a LineDecoder declares each one it has met as a field of the fast path, so a line is decoded once
# whatever keys it carries, and tells its unknown keys by which of those fields it filled. A file of a
# new key a line stops learning here and takes the three-decode path for the rest.
MAX_LEARNED_KEYS = 64


class LineDecoder:
    """decode_line for the lines of one file, learning its unknown keys (same results, one decode a line)."""

    def __init__(self) -> None:
        self._decoder = _known_decoder
        self._learned: dict[str, str] = {}  # unknown key -> its field's name in the fast path's struct

    def decode(self, raw: bytes) -> tuple[Listing, tuple[str, ...]]:
        try:
            line = self._decoder.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            listing, unknown = decode_line(raw)
            if unknown:
                self._learn(unknown)
            return listing, unknown
        listing = _checked(line)
        return listing, tuple(key for key, name in self._learned.items() if getattr(listing, name) is not None)

    def _learn(self, unknown: tuple[str, ...]) -> None:
        new = [key for key in unknown if key not in self._learned]
        if not new or len(self._learned) + len(new) > MAX_LEARNED_KEYS:
            return
        keys = tuple(sorted([*self._learned, *new]))  # sorted: the keys come out in decode_line's order
        self._learned = {key: f"unknown_{n}" for n, key in enumerate(keys)}
        self._decoder = _learned_decoder(keys)


@functools.lru_cache(maxsize=128)
def _learned_decoder(keys: tuple[str, ...]) -> msgspec.json.Decoder:
    """The fast path with these unknown keys declared (as fields unknown_<n>, in this order). Cached: building
    one takes about a millisecond, and the files a process reads carry the same few keys."""
    listing = msgspec.defstruct(
        "LearnedListing",
        [(f"unknown_{n}", msgspec.Raw, msgspec.field(default=None, name=key)) for n, key in enumerate(keys)],
        bases=(_KnownListing,),
        forbid_unknown_fields=True,
        gc=False,
    )
    line = msgspec.defstruct("LearnedLine", [("ok", bool | None, None), ("data", listing | None, None)], gc=False)
    return msgspec.json.Decoder(line)


def _typed(loose) -> Listing:
    """The listing of a leniently decoded line: each typed field decoded from its raw JSON, sentinels NULL."""
    values = {}
    for f in msgspec.structs.fields(loose):
        value = getattr(loose, f.name)
        if f.name in TYPED_FIELDS and value is not None:
            try:
                value = _typed_decoders[f.name].decode(value)
            except msgspec.ValidationError as exc:
                plain = msgspec.json.decode(value)
                if not (isinstance(plain, str) and (plain in SENTINELS or not plain.strip())):
                    raise RejectedLine("invalid_value", f"{exc} - at `$.data.{f.encode_name}`") from None
                value = None
        values[f.name] = value
    return Listing(**values)


def _decode_leniently(raw: bytes) -> _LenientLine:
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if message.startswith("Expected `object`") and "- at `$" not in message:
            raise RejectedLine("not_an_object", f"the line is JSON but not an object ({message})") from None
        raise RejectedLine("invalid_value", message) from None
    except msgspec.DecodeError as exc:
        raise RejectedLine("not_json", f"the line is not valid JSON ({exc})") from None
    except UnicodeDecodeError as exc:  # msgspec raises this, not DecodeError, for bad bytes in a string
        raise RejectedLine("not_utf8", f"a text value is not UTF-8 ({exc.reason} at byte {exc.start})") from None
