"""Realistic hourly batches for benchmarks, grown from the real sample in shared/data.

Every record keeps a real record's full key set and quirks (string booleans, sentinels, free-text
deposit, kilobyte ad links, lists), the keys real batches carry that the model does not read (at their
real shares, UNKNOWN_KEY_SHARES), and gets its own listing id, rents, address, agency, modification
time and shuffled texts, so the JSON is as large (~23 KB a record) and about as compressible as
production's. Writes the zip to disk in a streaming way, so 50,000 records need little memory.

    python -m bench.generate --records 5000 --files 1 --out /tmp/batches
"""

from __future__ import annotations

import argparse
import json
import random
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from berlin_rentals.synthetic import batch_name, read_sample_records

POSTCODES = [
    f"{n:05d}"
    for n in (
        10115,
        10117,
        10119,
        10178,
        10243,
        10245,
        10247,
        10249,
        10315,
        10317,
        10365,
        10405,
        10407,
        10409,
        10435,
        10437,
        10551,
        10553,
        10585,
        10623,
        10707,
        10777,
        10827,
        10961,
        10997,
        12043,
        12047,
        12099,
        12163,
        12205,
        12277,
        12347,
        12459,
        12555,
        12619,
        12681,
        13051,
        13086,
        13187,
        13347,
        13403,
        13581,
        13629,
        14050,
        14163,
        14193,
    )
]
STREETS = [
    "Karl-Marx-Straße",
    "Sonnenallee",
    "Kantstraße",
    "Greifswalder Straße",
    "Prenzlauer Allee",
    "Turmstraße",
    "Hermannstraße",
    "Frankfurter Allee",
    "Schönhauser Allee",
    "Müllerstraße",
    "Bergmannstraße",
    "Belßstraße",
    "Wattstraße",
    "Ostpreußendamm",
    "Görschstr.",
    "Kastanienallee",
    "Oranienstraße",
    "Danziger Straße",
]
FIRSTNAMES = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hannes", "Ida", "Jonas", "Klara", "Lena"]
LASTNAMES = ["Adler", "Becker", "Dietz", "Engel", "Fischer", "Jung", "Keller", "Maier", "Neumann", "Otto", "Schulz"]
ROOMS = [1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4, 5]


def _money(value: float) -> int | float:
    value = round(value, 2)
    return int(value) if value == int(value) else value


def _shuffled_text(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    rng.shuffle(words)
    return " ".join(words)


# The `data` keys real batches carry that the model does not read, with the share of listings that carry
# each and a value of its kind (../shared/data/README.md, 77 real listings): every real line takes the
# unknown-key path, so a benchmark without them measures a path production never takes.
UNKNOWN_KEY_SHARES = (
    ("listingType", 1.00, "XL"),
    ("contactDetails_portraitUrl", 0.31, "https://pictures.immobilienscout24.de/listings/portrait-{n}.jpg"),
    ("propertyDeveloper", 0.22, "true"),
    ("showcasePlacementColor", 0.20, "3A4655"),
    ("realEstateProjectId", 0.12, 117_000_000),
    ("realEstateProjectLink_xlink_href", 0.12, "https://www.immobilienscout24.de/neubau/projekt/{n}"),
    ("contactDetails_title", 0.07, "Kffr"),
    ("realEstate_constructionYearUnknown", 0.01, "true"),
)


class RecordFactory:
    """`unknown_keys`: give each record the unknown keys at their real shares (False: the model's keys only)."""

    def __init__(self, seed: int = 0, agencies: int = 400, *, unknown_keys: bool = True):
        self.templates = read_sample_records()
        self.unknown_keys = unknown_keys
        self.rng = random.Random(seed)
        self.agencies = [
            (f"001.{self.rng.randint(100000, 9999999)}", self.rng.choice(FIRSTNAMES), self.rng.choice(LASTNAMES))
            for _ in range(agencies)
        ]

    def record(self, listing_id: int, hour: datetime) -> dict:
        rng = self.rng
        data = dict(rng.choice(self.templates)["data"])
        base = rng.uniform(250, 3000)
        service, heating = rng.uniform(40, 400), rng.choice([0, rng.uniform(20, 150)])
        space = rng.uniform(18, 220)
        modified = hour - timedelta(seconds=rng.randint(60, 3600), milliseconds=rng.randint(0, 999))
        customer, first, last = rng.choice(self.agencies)
        data.update(
            {
                "id": str(listing_id),
                "realEstate_id": str(listing_id),
                "realEstate_externalId": str(listing_id),
                "contactDetails_id": str(listing_id),
                "realEstate_baseRent": _money(base),
                "realEstate_serviceCharge": _money(service),
                "realEstate_totalRent": _money(base + service + heating),
                "realEstate_calculatedTotalRent": _money(base + service + heating),
                "realEstate_livingSpace": _money(space),
                "realEstate_numberOfRooms": rng.choice(ROOMS),
                "realEstate_address_postcode": rng.choice(POSTCODES),
                "modification": modified.strftime("%Y-%m-%dT%H:%M:%S.") + f"{modified.microsecond // 1000:03d}Z",
                "companyWideCustomerId": customer,
                "contactDetails_firstname": first,
                "contactDetails_lastname": last,
                "contactDetails_email": f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@example.org",
                "realEstate_balcony": rng.choice(["true", "false"]),
                "realEstate_lift": rng.choice(["true", "false"]),
                "realEstate_constructionYear": rng.randint(1880, 2020),
                "realEstate_descriptionNote": _shuffled_text(data.get("realEstate_descriptionNote", ""), rng),
                "realEstate_furnishingNote": _shuffled_text(data.get("realEstate_furnishingNote", ""), rng),
            }
        )
        if heating:
            data["realEstate_heatingCosts"] = _money(heating)
        if "realEstate_address_street" in data:
            data["realEstate_address_street"] = rng.choice(STREETS)
            data["realEstate_address_houseNumber"] = str(rng.randint(1, 180))
        for link in ("adLinkForJSONP_xlink_href", "adLinkForXMLData_xlink_href"):
            if link in data:  # keep the kilobytes, vary the numbers inside them
                data[link] = data[link].replace("obj_", f"obj_{listing_id}_", 1)
        if self.unknown_keys:
            for key, share, value in UNKNOWN_KEY_SHARES:
                if rng.random() < share:
                    data[key] = value.format(n=listing_id) if isinstance(value, str) else value + listing_id % 1000
        return {"ok": True, "data": data}


def write_batch(
    path: Path, records: int, hour: datetime, *, first_id: int, seed: int, unknown_keys: bool = True
) -> Path:
    factory = RecordFactory(seed, unknown_keys=unknown_keys)
    member = batch_name(hour) + ".json"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open(member, "w", force_zip64=True) as out:
            for n in range(records):
                out.write(json.dumps(factory.record(first_id + n, hour), ensure_ascii=False).encode() + b"\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=5000, help="records per file")
    parser.add_argument("--files", type=int, default=1, help="consecutive hourly files")
    parser.add_argument("--start", default="2019-02-01T00", help="first batch hour, UTC (YYYY-MM-DDTHH)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = datetime.strptime(args.start, "%Y-%m-%dT%H").replace(tzinfo=UTC)
    for n in range(args.files):
        hour = start + timedelta(hours=n)
        path = write_batch(
            args.out / f"{batch_name(hour)}.zip", args.records, hour, first_id=200_000_000 + n * args.records, seed=n
        )
        print(path)


if __name__ == "__main__":
    main()
