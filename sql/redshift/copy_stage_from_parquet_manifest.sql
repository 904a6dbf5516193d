-- A batch's COPY: every staged Parquet file of one table that the batch loads, listed in one manifest
-- ({manifest_uri}, written by the loader with each file's content_length, which COPY requires for Parquet).
-- STATUPDATE OFF: a temporary staging table needs no statistics. COMPUPDATE is not among the parameters a
-- COPY from Parquet accepts (it never applies compression encodings), so it is not given.
COPY {table}
FROM '{manifest_uri}'
IAM_ROLE '{iam_role}'
FORMAT AS PARQUET
MANIFEST
STATUPDATE OFF;
