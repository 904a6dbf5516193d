-- The rejected lines of one object version: where they are in the object, why they were refused, and
-- whether their raw text was withheld (a load with personal-data masking keeps none).
SELECT member, line_number, reason, CASE WHEN raw_line IS NULL THEN 1 ELSE 0 END AS raw_withheld
FROM {schema}.rejected_records
WHERE source_key = :source_key AND source_etag = :source_etag
ORDER BY member, line_number;
