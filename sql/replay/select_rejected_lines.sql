-- The rejected lines of one object version: where they are in the object, and why they were refused.
SELECT member, line_number, reason
FROM {schema}.rejected_records
WHERE source_key = :source_key AND source_etag = :source_etag
ORDER BY member, line_number;
