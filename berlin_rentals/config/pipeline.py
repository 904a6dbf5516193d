"""The pipeline's settings (flows/, tasks/ and the core they call): `Settings.from_env()`.

`make up` writes the local stack's values to `.local/env`; in production the worker's task definition
sets them (credentials come from the IAM role, never from here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from berlin_rentals.batch import MAX_REJECTED_RAW_BYTES, MAX_REJECTED_ROWS
from berlin_rentals.config.components import (
    AwsSettings,
    RawZone,
    StagingZone,
    max_line_bytes,
    max_member_bytes,
    max_members,
    reject_alert_ratio,
    results_block,
    staging_retention_days,
    warehouse_schema,
    warehouse_url,
)
from berlin_rentals.config.env import (
    ConfigError,
    flag,
    identifier,
    integer,
    positive,
    prefix,
    ratio,
    seconds_list,
    text,
    var,
)

DEFAULT_RETRY_DELAYS = (2.0, 8.0, 30.0)


@dataclass(frozen=True, kw_only=True)
class Settings(AwsSettings, RawZone, StagingZone):
    component: ClassVar[str] = "pipeline"
    readers: ClassVar[str] = "flows/, tasks/, berlin_rentals/"
    unset_hint: ClassVar[str] = " (run `make up` and source .local/env)"

    warehouse_url: str = warehouse_url()
    warehouse_schema: str = warehouse_schema()
    # The two audiences (berlin_rentals/warehouse/access.py): the DWH role reads warehouse_schema as it is,
    # the BI role only the views of warehouse_bi_schema, with the contact persons pseudonymised. Unset,
    # the BI schema is the warehouse schema's name + "_bi": two warehouses never share (and repoint) one.
    warehouse_bi_schema: str = var(
        "WAREHOUSE_BI_SCHEMA", identifier(), "berlin_rentals_bi", doc_default="WAREHOUSE_SCHEMA + `_bi`"
    )
    warehouse_dwh_role: str = var("WAREHOUSE_DWH_ROLE", identifier(), "berlin_rentals_dwh")
    warehouse_bi_role: str = var("WAREHOUSE_BI_ROLE", identifier(), "berlin_rentals_bi")
    # The BI role's login: the market report reads the BI views with it; unused by the load.
    warehouse_bi_url: str | None = var("WAREHOUSE_BI_URL", text(), None, secret=True, doc_default="unset")
    # Redshift COPY reads the staged Parquet with this role; unused on PostgreSQL.
    redshift_iam_role_arn: str | None = var("REDSHIFT_IAM_ROLE_ARN", text(), None, doc_default="unset")
    max_member_bytes: int = max_member_bytes()
    max_members: int = max_members()
    max_line_bytes: int = max_line_bytes()
    # All members of a file together may inflate to this many times the object's size (past a 16 MiB
    # floor; real batches compress about 9:1) and to max_file_bytes at most: zip bombs of one long line.
    max_inflate_ratio: float = var("ETL_MAX_INFLATE_RATIO", positive(), 100.0)
    max_file_bytes: int = var("ETL_MAX_FILE_BYTES", integer(1), 4 * 1024**3)
    # Raw text kept for one file's rejected lines, in all; past it they keep their row without the text.
    max_rejected_raw_bytes: int = var("ETL_MAX_REJECTED_RAW_BYTES", integer(1), MAX_REJECTED_RAW_BYTES)
    # Rejected lines one file keeps as rows of rejected_records; past it they are counted (exactly, by
    # reason, in the ledger), not kept: a tiny zip of a million short bad lines stays a thousand rows.
    max_rejected_rows: int = var("ETL_MAX_REJECTED_ROWS", integer(1), MAX_REJECTED_ROWS)
    # After this many failed attempts a file is parked until someone releases it.
    max_attempts: int = var("ETL_MAX_ATTEMPTS", integer(1), 3)
    # An attempt still unfinished after this long is taken for dead (its process killed) and counts; a
    # younger one may be a run still working on the same version, which must not park it.
    attempt_stale_seconds: int = var("ETL_ATTEMPT_STALE_SECONDS", integer(0), 1800)
    # Seconds before each retry of an I/O step (the last one repeats); read when a flow run's process
    # imports the tasks (tasks/common.py, `retry_delays()`).
    retry_delays: tuple[float, ...] = var("ETL_RETRY_DELAYS", seconds_list(), DEFAULT_RETRY_DELAYS)
    # Contact persons' names, e-mail and phone numbers replaced by a salted hash (see masking.py).
    mask_personal_data: bool = var("ETL_MASK_PERSONAL_DATA", flag(), False)
    # The secret of that hash; whenever it is set (masking on or off) dim_agent also gets pseudonyms.
    mask_salt: str | None = var("ETL_MASK_SALT", text(), None, secret=True, doc_default="unset")
    # The salt's name in cache keys, staged prefixes and lineage (required with a salt; change it with the
    # salt, or files whose cached result is still kept load with the old salt's pseudonyms).
    mask_salt_id: str | None = var("ETL_MASK_SALT_ID", text(), None, doc_default="unset")
    staging_retention_days: int = staging_retention_days()
    results_block: str = results_block()
    reject_alert_ratio: float = reject_alert_ratio()
    # Above this rejected share a file is parked instead of loaded (as COPY's MAXERROR): by default a file
    # more than half garbage is parked, not loaded; 1 never parks; force=true loads a parked one anyway.
    max_reject_ratio: float | None = var("ETL_MAX_REJECT_RATIO", ratio(), 0.5)
    # The market report's charts, in the staging bucket; they do not expire with the staged data.
    reports_prefix: str = var("ETL_REPORTS_PREFIX", prefix(), "reports/")
    # The catch-up loads the files it ingests in batches of at most this many files, or (whichever comes
    # first) records read, each batch one warehouse transaction (berlin_rentals/warehouse/load.py);
    # 1: each file its own load, as an event-driven run does.
    batch_max_files: int = var("ETL_BATCH_MAX_FILES", integer(1), 24)
    batch_max_records: int = var("ETL_BATCH_MAX_RECORDS", integer(1), 50_000)
    # A catch-up with more files than this to ingest fans them out as runs of its own deployment (each on
    # the work pool: in production its own ECS task), this many files a run.
    fanout_files: int = var("ETL_FANOUT_FILES", integer(1), 500)
    fanout_run_files: int = var("ETL_FANOUT_RUN_FILES", integer(1), 240)

    def __post_init__(self) -> None:
        super().__post_init__()
        # The BI role's whole boundary is "this schema and no other": one schema for both would erase it.
        if self.warehouse_bi_schema == self.warehouse_schema:
            raise ConfigError(f"WAREHOUSE_BI_SCHEMA must differ from WAREHOUSE_SCHEMA ({self.warehouse_schema!r})")
        if self.warehouse_bi_role == self.warehouse_dwh_role:
            raise ConfigError(f"WAREHOUSE_BI_ROLE must differ from WAREHOUSE_DWH_ROLE ({self.warehouse_dwh_role!r})")

    @classmethod
    def read(cls, env: Mapping[str, str]) -> dict[str, Any]:
        values = super().read(env)
        # Unset, the BI schema follows the warehouse schema (see warehouse_bi_schema).
        values.setdefault("warehouse_bi_schema", bi_schema_for(values.get("warehouse_schema", cls.warehouse_schema)))
        return values

    def bi_url(self) -> str:
        """The BI role's login: what the market report reads with, so it sees no more than an analyst."""
        if not self.warehouse_bi_url:
            raise ConfigError("WAREHOUSE_BI_URL is not set: the market report reads the BI views as the BI role")
        return self.warehouse_bi_url

    def masker(self):
        """The Masker when masking is on; a missing salt is a configuration error, not silent clear text."""
        if not self.mask_personal_data:
            return None
        if not self.mask_salt:
            raise ConfigError("ETL_MASK_PERSONAL_DATA is on but ETL_MASK_SALT is not set")
        return self.pseudonymizer()

    def pseudonymizer(self):
        """The Masker of dim_agent's pseudonym columns: whenever ETL_MASK_SALT is set, None without it."""
        if not self.mask_salt:
            return None
        if not self.mask_salt_id:
            raise ConfigError(
                "ETL_MASK_SALT is set but ETL_MASK_SALT_ID is not: name the salt (e.g. 2026-12); the name, "
                "never the salt, marks cached results and staged prefixes"
            )
        from berlin_rentals.masking import Masker

        try:
            return Masker(self.mask_salt.encode(), self.mask_salt_id)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def bi_schema_for(warehouse_schema: str) -> str:
    """The BI schema of a warehouse schema when WAREHOUSE_BI_SCHEMA is not set."""
    return f"{warehouse_schema}_bi"


def retry_delays(environ: Mapping[str, str] | None = None) -> list[float]:
    """ETL_RETRY_DELAYS alone, parsed as Settings parses it: the tasks' retry table reads it at import,
    where the rest of the settings (WAREHOUSE_URL) are not needed."""
    return list(Settings.read_one("retry_delays", environ))
