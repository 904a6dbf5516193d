SELECT COUNT(*) AS rejected
FROM {schema}.rejected_records
WHERE source_key = :source_key AND source_etag = :source_etag;
