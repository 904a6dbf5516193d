-- Where a listing's current row came from: the raw object version and the line in it.
SELECT listing_id, source_bucket, source_key, source_etag, source_version_id, source_member, source_line
FROM {schema}.fact_flats
WHERE listing_id = :listing_id;
