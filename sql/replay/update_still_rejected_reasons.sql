-- A line still rejected by the current transform keeps its row; only a changed reason is rewritten
-- (with the raw line as the current settings keep it: NULL when personal data is masked).
UPDATE {schema}.rejected_records
SET reason = s.reason, raw_line = s.raw_line, raw_line_bytes = s.raw_line_bytes,
    flow_run_id = CAST(:flow_run_id AS VARCHAR(64)), rejected_at = CAST(:loaded_at AS TIMESTAMP WITH TIME ZONE)
FROM stage_rejected_records AS s
WHERE rejected_records.source_key = :source_key
  AND rejected_records.source_etag = :source_etag
  AND rejected_records.member = s.member
  AND rejected_records.line_number = s.line_number
  AND rejected_records.reason <> s.reason;
