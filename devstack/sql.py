"""`make sql`: an SQL prompt on the local warehouse, with the warehouse schema on the search path.

    python -m devstack.sql [--root DIR]            interactive: psql from pgserver's binaries
    python -m devstack.sql -c "select ..." [-c ..] run the statements, print the results, exit
    python -m devstack.sql --python [...]          a small prompt over psycopg instead of psql
    python -m devstack.sql --ready NAME [--listing ID]   one of the ready queries below (--ready list)
    python -m devstack.sql --as bi|dwh [...]       as the BI role (its views on the path) or the DWH role

The connection comes from the stack's env file (`WAREHOUSE_PSQL_URL`, a plain libpq URL any PostgreSQL
tool accepts), or, without one, from an exported WAREHOUSE_PSQL_URL or WAREHOUSE_URL. A password in
the URL is handed to psql in PGPASSWORD, never on its command line. pgserver's psql is built without
readline (no line editing or history); with `rlwrap` installed the prompt gets both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from decimal import Decimal
from pathlib import Path

from berlin_rentals.config import PLAIN_IDENTIFIER
from devstack.postgres import _pg_bin
from devstack.processes import DEFAULT_ROOT

DEMO_LISTING = 56906504  # the sample batch's listing that `make demo` follows

# Ready queries (the README shows them too). Table names are unqualified: the prompt puts the warehouse
# schema on the search path. A value is a bind parameter (psycopg's %(name)s), never pasted in.
READY = {
    # every object version the ledger touched today (loaded, failed, parked), with its load's counts
    "ledger-today": """
SELECT key, status, records_read AS records, rejected_count AS rejected, flagged_count AS flagged,
       fact_inserted AS new, fact_updated AS updated, fact_stale AS older, attempts,
       to_char(coalesce(finished_at, started_at), 'HH24:MI:SS') AS at,
       round(extract(epoch FROM finished_at - started_at)::numeric, 2) AS load_s, left(error, 80) AS error
FROM load_ledger
WHERE coalesce(finished_at, started_at) >= current_date
ORDER BY coalesce(finished_at, started_at)""",
    # a reason is '<member> line <n>: <code>: <detail>': grouped by the code
    "rejects-by-reason": """
SELECT coalesce(substring(reason FROM ' line [0-9]+: ([a-z0-9_]+): '), reason) AS reason,
       count(*) AS lines, count(DISTINCT source_key) AS files, max(rejected_at) AS last_seen
FROM rejected_records
GROUP BY 1
ORDER BY lines DESC, reason""",
    # every version of one listing the warehouse has seen, oldest batch first, with the rent's change
    "rent-history": """
SELECT batch_hour, last_modified_at, base_rent,
       base_rent - lag(base_rent) OVER (ORDER BY batch_hour, last_modified_at) AS change,
       total_rent, living_space, number_of_rooms, quality_flags, source_key
FROM flat_snapshots
WHERE listing_id = %(listing_id)s
ORDER BY batch_hour, last_modified_at""",
}


# `--as`: the audience's URL in the env file, and the schema its prompt starts in.
AUDIENCES = {"dwh": ("WAREHOUSE_DWH_URL", "WAREHOUSE_SCHEMA"), "bi": ("WAREHOUSE_BI_URL", "WAREHOUSE_BI_SCHEMA")}


def _default_schema(key: str, settings: dict[str, str]) -> str:
    from berlin_rentals.config import Settings, bi_schema_for

    schema = settings.get("WAREHOUSE_SCHEMA") or Settings.warehouse_schema
    return bi_schema_for(schema) if key == "WAREHOUSE_BI_SCHEMA" else schema


def connection(root: Path | None = None, audience: str | None = None) -> tuple[str, str | None, str | None]:
    """(libpq URL without password, password, schema) of the stack at root (default: ETL_ENV_FILE; else
    the environment when it has WAREHOUSE_URL; else .local/env); as the audience's role (`dwh`, `bi`)
    when one is given."""
    from berlin_rentals.config import read_env_file

    env_file = root / "env" if root else Path(os.environ.get("ETL_ENV_FILE") or DEFAULT_ROOT / "env")
    # A shell that sourced an env file (the README's `source .local/env`) means that stack, as every other
    # command it runs does: not this checkout's .local/env, which may be another, stopped stack's.
    sourced = root is None and not os.environ.get("ETL_ENV_FILE") and os.environ.get("WAREHOUSE_URL")
    settings = read_env_file(env_file) if env_file.exists() and not sourced else dict(os.environ)
    url_key, schema_key = AUDIENCES[audience] if audience else ("WAREHOUSE_PSQL_URL", "WAREHOUSE_SCHEMA")
    url = settings.get(url_key) or (None if audience else settings.get("WAREHOUSE_URL"))
    if not url:
        missing = url_key if audience else "WAREHOUSE_URL"
        raise SystemExit(f"no warehouse: {env_file} not found and {missing} not set (run `make up` first)")
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    # postgresql+psycopg:// (SQLAlchemy's) and redshift+redshift_connector:// are libpq's postgresql://.
    plain = sa.engine.URL.create(
        "postgresql",
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    )
    return (
        plain.render_as_string(hide_password=False),
        parsed.password,
        settings.get(schema_key) or _default_schema(schema_key, settings),
    )


def _pg_options(schema: str | None) -> str | None:
    return f"-c search_path={schema},public" if schema and PLAIN_IDENTIFIER.fullmatch(schema) else None


def run_psql(psql: Path, url: str, password: str | None, schema: str | None, commands: list[str]) -> int:
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password
    if options := _pg_options(schema):
        env["PGOPTIONS"] = " ".join(filter(None, [env.get("PGOPTIONS"), options]))
    args = [str(psql), url]
    if commands:
        # -X: no ~/.psqlrc, so the output is the same wherever it runs; stop at the first error.
        args += ["-X", "-v", "ON_ERROR_STOP=1"]
        for command in commands:
            args += ["-c", command]
    else:
        rlwrap = shutil.which("rlwrap")
        if rlwrap and sys.stdin.isatty():
            args = [rlwrap, "-a", "-H", str(Path.home() / ".psql_history"), *args]
    sys.stdout.flush()
    os.execve(args[0], args, env)
    return 127  # not reached


# ---- the small prompt, when psql is not there -------------------------------------------------


def _print_result(cursor) -> None:
    if cursor.description is None:
        print(cursor.statusmessage)
        return
    names = [column.name for column in cursor.description]
    values = cursor.fetchall()
    rows = [["" if value is None else str(value) for value in row] for row in values]
    numeric = [
        all(isinstance(row[i], int | float | Decimal) for row in values if row[i] is not None)
        for i in range(len(names))
    ]
    widths = [max([len(name)] + [len(row[i]) for row in rows]) for i, name in enumerate(names)]
    print(" | ".join(name.ljust(width) for name, width in zip(names, widths, strict=True)))
    print("-+-".join("-" * width for width in widths))
    for row in rows:
        print(
            " | ".join(
                value.rjust(width) if right else value.ljust(width)
                for value, width, right in zip(row, widths, numeric, strict=True)
            )
        )
    print(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")


def _execute(conn, statement: str, params: dict | None = None) -> bool:
    import psycopg

    try:
        with conn.cursor() as cursor:
            cursor.execute(statement, params)
            _print_result(cursor)
            while cursor.nextset():
                _print_result(cursor)
        return True
    except psycopg.Error as error:
        print(f"ERROR: {str(error).strip()}", file=sys.stderr)
        return False


def run_python(
    url: str, password: str | None, schema: str | None, commands: list[str], params: dict | None = None
) -> int:
    import psycopg

    with psycopg.connect(url, password=password, options=_pg_options(schema) or "", autocommit=True) as conn:
        if commands:
            return 0 if all(_execute(conn, command, params) for command in commands) else 1
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass
        print(f"{url} (schema {schema}); end a statement with ';', \\q to quit")
        buffer: list[str] = []
        while True:
            try:
                line = input("sql> " if not buffer else "...> ")
            except EOFError:
                print()
                return 0
            except KeyboardInterrupt:
                print()
                buffer.clear()
                continue
            if not buffer and line.strip() in ("\\q", "quit", "exit"):
                return 0
            buffer.append(line)
            if line.rstrip().endswith(";"):
                _execute(conn, "\n".join(buffer))
                buffer.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--command", action="append", default=[], help="run this SQL and exit (repeatable)")
    parser.add_argument("--root", type=Path, help=f"the stack whose env file to read (default {DEFAULT_ROOT})")
    parser.add_argument("--python", action="store_true", help="use the small psycopg prompt, not psql")
    parser.add_argument("--ready", metavar="NAME", help=f"run a ready query: {', '.join(READY)} (or list)")
    parser.add_argument("--listing", type=int, default=DEMO_LISTING, help="the listing of rent-history")
    parser.add_argument(
        "--as", dest="audience", choices=sorted(AUDIENCES), help="log in as the BI or the DWH role (make up's)"
    )
    args = parser.parse_args(argv)
    if args.ready == "list":
        for name, query in READY.items():
            print(f"-- {name}{query};\n")
        return 0
    if args.ready and args.ready not in READY:
        parser.error(f"no ready query {args.ready!r}; there are {', '.join(READY)}")
    url, password, schema = connection(args.root, args.audience)
    if args.ready:  # through psycopg: its listing id is a bind parameter
        return run_python(url, password, schema, [READY[args.ready]], {"listing_id": args.listing})
    psql = _pg_bin() / "psql"
    if not args.python and psql.exists():
        return run_psql(psql, url, password, schema, args.command)
    return run_python(url, password, schema, args.command)


if __name__ == "__main__":
    sys.exit(main())
