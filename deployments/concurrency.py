"""Create or resize the Prefect global concurrency limit that bounds load transactions; idempotent.

    python -m deployments.concurrency       # `warehouse-load`, ETL_LOAD_CONCURRENCY slots (default 2)

Needs PREFECT_API_URL (and PREFECT_API_KEY on Cloud). `make up` runs it after the server is up; in
production run it once per Prefect server (or `prefect gcl create warehouse-load --limit 2`, and
`prefect gcl update warehouse-load --limit N` to resize).
"""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

from berlin_rentals.config import LoadLimitSettings
from tasks.load import LOAD_LIMIT


def ensure_load_limit(size: int) -> dict:
    if size < 1:
        raise SystemExit(f"ETL_LOAD_CONCURRENCY={size}: at least one load must be able to run")
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(LOAD_LIMIT, size)
        limit = client.read_global_concurrency_limit_by_name(LOAD_LIMIT)
        if not limit.active:  # a disabled limit bounds nothing: loads would warn and run unbounded
            client.update_global_concurrency_limit(LOAD_LIMIT, GlobalConcurrencyLimitUpdate(active=True))
        return {"name": LOAD_LIMIT, "limit": limit.limit, "active": True}


def main() -> None:
    settings = LoadLimitSettings.from_env()
    limit = ensure_load_limit(settings.load_concurrency)
    print(f"global concurrency limit {limit['name']!r}: {limit['limit']} load(s) at once")


if __name__ == "__main__":
    main()
