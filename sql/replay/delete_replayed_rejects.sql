-- The replay transformed every rejected line of this object version (checked under the ledger lock),
-- and stage_rejected_records holds those that are still rejected: every other one was recovered.
DELETE FROM {schema}.rejected_records
WHERE source_key = :source_key
  AND source_etag = :source_etag
  AND NOT EXISTS (
      SELECT 1 FROM stage_rejected_records AS s
      WHERE s.member = rejected_records.member AND s.line_number = rejected_records.line_number
  );
