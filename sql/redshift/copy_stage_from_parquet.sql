-- {table}, {s3_uri} and {iam_role} are filled by the loader from validated values (COPY takes no
-- bind parameters). Parquet columns map by position onto the staging table built from the same model.
COPY {table}
FROM '{s3_uri}'
IAM_ROLE '{iam_role}'
FORMAT AS PARQUET;
