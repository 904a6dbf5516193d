"""What a line's unknown keys cost the decode, side by side in one run, on the same generated records.

    make bench-decode          # no stack needed: python -m bench.decode

Two files of the same records (bench/generate.py, one seed): with the keys real batches carry that the
model does not read, at their real shares (every line has at least `listingType`), and with the model's
keys only. Each is decoded line by line three ways, interleaved over `--rounds` rounds (best round counts):
  decode_line   the fast path, and for a line it refuses (any unknown key) two more decodes and a typed
                decode of each field: the way every line went before LineDecoder
  LineDecoder   the transform's decoder: learns the file's unknown keys, then one decode a line
  transform     the whole transform of the file's lines (decode, rows, Arrow tables)
and the cost of the unknown keys is each way's time on the real-shaped lines over its time on the others.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.generate import RecordFactory
from berlin_rentals.archive import SourceLine
from berlin_rentals.decode import LineDecoder, decode_line
from berlin_rentals.transform import transform_lines

RESULTS = Path(__file__).resolve().parent / "results"


def lines_of(records: int, *, unknown_keys: bool) -> list[bytes]:
    factory = RecordFactory(seed=7, unknown_keys=unknown_keys)
    hour = datetime(2019, 2, 1, tzinfo=UTC)
    return [json.dumps(factory.record(500_000_000 + n, hour), ensure_ascii=False).encode() for n in range(records)]


def by_decode_line(lines: list[bytes]) -> int:
    return sum(1 for raw in lines if decode_line(raw)[1])


def by_line_decoder(lines: list[bytes]) -> int:
    decode = LineDecoder().decode
    return sum(1 for raw in lines if decode(raw)[1])


def by_transform(lines: list[bytes]) -> int:
    batch = transform_lines(SourceLine("bench.json", n, raw) for n, raw in enumerate(lines, 1))
    assert batch.stats.rejected == 0, batch.stats.rejected_by_reason
    return sum(batch.stats.unknown_fields.values())


WAYS: dict[str, Callable[[list[bytes]], int]] = {
    "decode_line": by_decode_line,
    "LineDecoder": by_line_decoder,
    "transform": by_transform,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    files = {"real": lines_of(args.records, unknown_keys=True), "known": lines_of(args.records, unknown_keys=False)}
    print(f"{args.records:,} records a file, {sum(map(len, files['real'])) / args.records / 1e3:.1f} KB a line")
    best: dict[tuple[str, str], float] = {}
    found: dict[tuple[str, str], int] = {}
    for _ in range(args.rounds):
        for way, run in WAYS.items():
            for shape, lines in files.items():
                started = time.perf_counter()
                found[way, shape] = run(lines)
                elapsed = time.perf_counter() - started
                best[way, shape] = min(best.get((way, shape), elapsed), elapsed)
    us = {key: seconds / args.records * 1e6 for key, seconds in best.items()}
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "records": args.records,
        "rounds": args.rounds,
        "us_per_line": {f"{way} {shape}": round(value, 2) for (way, shape), value in us.items()},
        "unknown_keys_cost": {way: round(us[way, "real"] / us[way, "known"], 3) for way in WAYS},
        "line_decoder_vs_decode_line_on_real_lines": round(us["decode_line", "real"] / us["LineDecoder", "real"], 2),
    }
    print(f"\n{'way':12} {'real-shaped':>14} {'known keys':>14} {'unknown keys cost':>18}")
    for way in WAYS:
        print(
            f"{way:12} {us[way, 'real']:11.1f} us {us[way, 'known']:11.1f} us "
            f"{results['unknown_keys_cost'][way]:17.2f}x"
        )
    print(
        f"\nLineDecoder is {results['line_decoder_vs_decode_line_on_real_lines']:.2f}x decode_line's speed on the "
        f"real-shaped lines; lines with unknown keys found: {found['LineDecoder', 'real']:,} of {args.records:,} "
        f"(decode_line: {found['decode_line', 'real']:,}; keys counted by the transform: {found['transform', 'real']:,})"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "decode.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {RESULTS / 'decode.json'}")


if __name__ == "__main__":
    main()
