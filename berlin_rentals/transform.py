"""Turn the lines of one batch into the snowflake's tables. Pure: no I/O, no Prefect.

One pass over the lines; for each listing we keep only its newest version in the file, and
derive the city, address and agency it points at. Rejected lines are kept with their reason.

Memory stays bounded by the Arrow form of the output, not by Python objects: fact rows become Arrow
record batches every `_CHUNK_ROWS` rows, and only (modification, row number) per listing id is kept
to pick each listing's newest version at the end.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pyarrow as pa

from berlin_rentals.archive import SourceLine
from berlin_rentals.batch import (
    MAX_REJECTED_RAW_BYTES,
    MAX_REJECTED_ROWS,
    Batch,
    TransformStats,
    output_variant,
    record_batch,
    staged_table,
)
from berlin_rentals.decode import LineDecoder
from berlin_rentals.fact_row import fact_row
from berlin_rentals.keys import surrogate_key
from berlin_rentals.listing import Listing
from berlin_rentals.masking import Masker
from berlin_rentals.model import arrow_schema, column_names
from berlin_rentals.rejects import RejectedRows
from berlin_rentals.values import (
    RejectedLine,
    as_utc,
    cap_text,
    capped_text,
    listing_id,
    text,
)

# Unknown keys counted by name, at most; the rest under OTHER_UNKNOWN_KEYS (the run's warning names them).
MAX_UNKNOWN_KEYS = 1000
OTHER_UNKNOWN_KEYS = "(other keys)"

# Fact rows held as Python tuples before they become an Arrow record batch.
_CHUNK_ROWS = 2048


class _Accumulator:
    """Rows of one batch, deduplicated by natural key, before they become Arrow tables."""

    def __init__(
        self,
        masker: Masker | None = None,
        chunk_rows: int = _CHUNK_ROWS,
        max_rejected_raw_bytes: int = MAX_REJECTED_RAW_BYTES,
        pseudonyms: Masker | None = None,
        max_rejected_rows: int = MAX_REJECTED_ROWS,
    ) -> None:
        self.masker = masker
        self.pseudonyms = pseudonyms
        self.chunk_rows = chunk_rows
        # listing id -> (modification, row number of its newest version); the order is first seen
        self.facts: dict[int, tuple[datetime, int]] = {}
        self.fact_rows: list[tuple] = []  # the rows not yet in a record batch
        self.fact_batches: list[pa.RecordBatch] = []
        self.fact_count = 0  # rows in the record batches and in fact_rows
        # surrogate keys of natural keys already seen: the same few cities, agencies and addresses recur
        self.keys: dict[tuple, int] = {}
        self.cities: dict[int, tuple] = {}
        self.districts: dict[int, tuple] = {}
        self.addresses: dict[int, tuple] = {}
        self.agencies: dict[int, tuple] = {}
        self.agents: dict[int, tuple] = {}
        self.stats = TransformStats()
        self.decoder = LineDecoder()  # learns this file's unknown keys: one decode a line
        self.rejected = RejectedRows(
            self.stats, masked=bool(masker), max_raw_bytes=max_rejected_raw_bytes, max_rows=max_rejected_rows
        )

    def add(self, line: SourceLine) -> None:
        self.stats.lines_read += 1
        try:
            if line.too_long:
                raise RejectedLine("line_too_long", f"the line is longer than the limit ({len(line.raw)} bytes kept)")
            listing, unknown = self.decoder.decode(line.raw)
            if unknown:
                self._count_unknown(unknown)
            self._add_listing(listing, line)
        except RejectedLine as exc:
            self.rejected.keep(line, exc)

    def _count_unknown(self, unknown: tuple[str, ...]) -> None:
        """Each unknown key by name, up to MAX_UNKNOWN_KEYS names: a file of lines that each carry a new key
        would otherwise grow the counter by a key a line. The rest are counted under one name."""
        counts = self.stats.unknown_fields
        if len(counts) < MAX_UNKNOWN_KEYS:
            counts.update(unknown)
            return
        for key in unknown:
            counts[key if key in counts else OTHER_UNKNOWN_KEYS] += 1

    def _add_listing(self, listing: Listing, line: SourceLine) -> None:
        lid = listing_id(listing.id)
        modified = as_utc(listing.modification or listing.last_modification_date)
        if modified is None:
            raise RejectedLine("no_timestamp", "`modification` is missing: the listing's version cannot be ordered")
        previous = self.facts.get(lid)
        # Newest version wins; on a tie the later line wins, as it was written later.
        if previous is not None:
            self.stats.older_versions_in_file += 1
            if previous[0] > modified:
                return

        city = text(listing.geo_city) or text(listing.address_city)
        country = text(listing.geo_country)
        city_id = self._key("city", city, country)
        postcode = text(listing.postcode)
        quarter = text(listing.geo_quarter) or text(listing.address_quarter)
        street = text(listing.street)
        house_number = text(listing.house_number)
        address_id = self._key("address", city_id, postcode, quarter, street, house_number)
        # The district is the address's quarter: no quarter, no district (NULL, not an "unknown" row).
        district_id = None if quarter is None else self._key("district", city_id, quarter)
        agency_id, agent_id, customer_id, company, salutation, firstname, lastname, email, phones, person, raw_phone = (
            self._contact(listing)
        )

        fact = fact_row(listing, line, lid, modified, address_id, agency_id, agent_id)
        # Only a listing that fully coerced reaches the dimensions. A newer version keeps the
        # listing's place (first seen) and points it at its own row.
        self.facts[lid] = (modified, self.fact_count)
        self.fact_count += 1
        self.fact_rows.append(fact)
        if len(self.fact_rows) >= self.chunk_rows:
            self._flush_facts()
        self.cities.setdefault(city_id, (city_id, cap_text(city, 256), cap_text(country, 256)))
        region = capped_text(listing.geo_region, 256)
        if district_id is not None:
            self.districts.setdefault(
                district_id,
                (district_id, city_id, cap_text(quarter, 256), capped_text(listing.geo_quarter_code, 64), region),
            )
        self.addresses.setdefault(
            address_id,
            (
                address_id,
                city_id,
                cap_text(postcode, 16),
                cap_text(quarter, 256),
                region,
                cap_text(street, 256),
                cap_text(house_number, 64),
                district_id,
            ),
        )
        agency = self.agencies.get(agency_id)
        agent = self.agents.get(agent_id) if agent_id is not None else None
        agency_newer = agency is None or agency[-1] <= modified
        agent_newer = agent_id is not None and (agent is None or agent[-1] <= modified)
        if not (agency_newer or agent_newer):
            return
        contact = (
            salutation,
            cap_text(firstname, 256),
            cap_text(lastname, 256),
            cap_text(email, 512),
            phones[0],
            capped_text(listing.phone_area_code, 16),
            capped_text(listing.phone_country_code, 16),
            phones[1],
            phones[2],
            capped_text(listing.cell_phone_area_code, 16),
            capped_text(listing.cell_phone_country_code, 16),
            phones[3],
        )
        if agency_newer:
            self.agencies[agency_id] = (
                agency_id,
                cap_text(customer_id, 64),
                cap_text(company, 512),
                *contact,
                modified,
            )
        if agent_newer:
            self.agents[agent_id] = (agent_id, agency_id, *contact, *self._pseudonyms(*person, raw_phone), modified)

    def _key(self, *natural: object) -> int:
        """The surrogate key of a natural key, computed once a file."""
        key = self.keys.get(natural)
        if key is None:
            key = self.keys[natural] = surrogate_key(*natural)
        return key

    def _contact(self, listing: Listing) -> tuple:
        """(agency key, agent key or None, customer id, company, salutation, first name, last name, e-mail,
        the four phones, the raw (first, last, e-mail) for the pseudonyms, the raw phone), masked where set."""
        customer_id = text(listing.customer_id)
        company = text(listing.company)
        email = text(listing.email)
        firstname = text(listing.firstname)
        lastname = text(listing.lastname)
        salutation = capped_text(listing.salutation, 32)
        person = (firstname, lastname, email)  # the raw values, for the pseudonyms
        phones = [
            capped_text(v, 64)
            for v in (
                listing.phone_number,
                listing.phone_subscriber,
                listing.cell_phone_number,
                listing.cell_phone_subscriber,
            )
        ]
        raw_phone = phones[0] or phones[2]
        if self.masker is not None:
            mask = self.masker.mask
            firstname, lastname, email = mask(firstname), mask(lastname), mask(email)
            phones = [mask(v) for v in phones]
        if customer_id:
            agency_id = self._key("customer", customer_id)
        else:
            agency_id = self._key("contact", company, firstname, lastname, email)
        # The listing's contact person, one of possibly several of its agency; none when nothing names one.
        agent_id = None
        if salutation or firstname or lastname or email or any(phones):
            agent_id = self._key("agent", agency_id, salutation, firstname, lastname, email)
        return (
            agency_id,
            agent_id,
            customer_id,
            company,
            salutation,
            firstname,
            lastname,
            email,
            phones,
            person,
            raw_phone,
        )

    def _pseudonyms(
        self, firstname: str | None, lastname: str | None, email: str | None, phone: str | None
    ) -> tuple[str | None, str | None, str | None]:
        """Keyed hashes of the raw values as they would be stored (capped): (name, e-mail, phone)."""
        if self.pseudonyms is None:
            return None, None, None
        mask = self.pseudonyms.mask
        name = " ".join(part for part in (cap_text(firstname, 256), cap_text(lastname, 256)) if part) or None
        return mask(name), mask(cap_text(email, 512)), mask(phone)

    def _flush_facts(self) -> None:
        if self.fact_rows:
            self.fact_batches.append(record_batch("fact_flats", self.fact_rows))
            self.fact_rows = []

    def _facts_table(self) -> pa.Table:
        """Each listing's newest version, in the order listings were first seen."""
        self._flush_facts()
        schema = arrow_schema("fact_flats")
        if not self.fact_batches:
            return schema.empty_table()
        table = pa.Table.from_batches(self.fact_batches, schema=schema)
        self.fact_batches = []
        rows = [row for _, row in self.facts.values()]
        if len(rows) != self.fact_count or any(row != n for n, row in enumerate(rows)):
            table = table.take(pa.array(rows, type=pa.int64()))
        return table

    def batch(self, variant: str) -> Batch:
        facts = self._facts_table()
        self.stats.listings = facts.num_rows
        for value in facts.column("quality_flags").to_pylist():
            if value:
                self.stats.flagged += 1
                self.stats.flags_by_code.update(value.split(","))
        snapshots = pa.Table.from_arrays(
            [facts.column(name) for name in column_names("flat_snapshots")], schema=arrow_schema("flat_snapshots")
        )
        tables = {
            "dim_city": staged_table("dim_city", self.cities.values()),
            "dim_district": staged_table("dim_district", self.districts.values()),
            "dim_address": staged_table("dim_address", self.addresses.values()),
            "dim_agency": staged_table("dim_agency", self.agencies.values()),
            "dim_agent": staged_table("dim_agent", self.agents.values()),
            "fact_flats": facts,
            "flat_snapshots": snapshots,
            "rejected_records": staged_table("rejected_records", self.rejected.rows),
        }
        return Batch(tables=tables, stats=self.stats, variant=variant)


def transform_lines(
    lines: Iterable[SourceLine],
    masker: Masker | None = None,
    max_rejected_raw_bytes: int = MAX_REJECTED_RAW_BYTES,
    pseudonyms: Masker | None = None,
    max_line_bytes: int | None = None,
    max_rejected_rows: int = MAX_REJECTED_ROWS,
) -> Batch:
    """All lines of one object version -> its batch of tables; depends on the content, caps and salts alone.

    `masker` (ETL_MASK_PERSONAL_DATA) replaces the contact columns by their keyed hash; `pseudonyms`
    (whenever ETL_MASK_SALT is set) fills dim_agent's *_pseudonym columns, whatever the masking.
    `max_line_bytes`: the cap the lines were read under (archive.iter_lines rejects a longer one), which
    the batch's variant names."""
    caps = dict(max_rejected_raw_bytes=max_rejected_raw_bytes, max_rejected_rows=max_rejected_rows)
    acc = _Accumulator(masker, pseudonyms=pseudonyms, **caps)
    for line in lines:
        acc.add(line)
    return acc.batch(output_variant(masker, pseudonyms, max_line_bytes=max_line_bytes, **caps))
