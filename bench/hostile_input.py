"""What two hostile archives cost the transform: time, rows kept and peak memory (no stack needed).

    python -m bench.hostile_input

- a 2 KB zip of 1,048,576 short bad lines: the rows a file keeps of its rejected lines are bounded
  (ETL_MAX_REJECTED_ROWS), every line is still counted, by reason;
- a 60 MB zip of 600,000 empty members: refused from its end record before its directory is read
  (ETL_MAX_MEMBERS).
Each runs in a child process of its own, so one's peak memory is not the other's.
"""

from __future__ import annotations

import subprocess
import sys

CHILD = r"""
import io, json, resource, sys, time, zipfile
from berlin_rentals.archive import BadArchive, iter_lines
from berlin_rentals.transform import transform_lines

case = sys.argv[1]
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if case == "bad_lines" else zipfile.ZIP_STORED) as z:
    if case == "bad_lines":
        z.writestr("bad.json", b"x\n" * 1_048_576)
    else:
        for i in range(600_000):
            z.writestr(f"m{i}.json", b"")
data = buf.getvalue()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    batch = transform_lines(iter_lines(data, "hostile.zip"))
    outcome = {
        "lines": batch.stats.lines_read,
        "rejected": batch.stats.rejected,
        "rows_kept": batch.tables["rejected_records"].num_rows,
        "by_reason": dict(batch.stats.rejected_by_reason),
    }
except BadArchive as exc:
    outcome = {"refused": str(exc)}
outcome |= {
    "zip_bytes": len(data),
    "seconds": round(time.perf_counter() - started, 3),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "rss_before_mib": round(before / 1024, 1),
}
print(json.dumps(outcome))
"""


def main() -> None:
    for case in ("bad_lines", "members"):
        done = subprocess.run([sys.executable, "-c", CHILD, case], capture_output=True, text=True, check=True)
        print(f"{case:10} {done.stdout.strip()}")


if __name__ == "__main__":
    main()
