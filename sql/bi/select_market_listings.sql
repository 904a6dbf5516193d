-- The market report's input, read as the BI role: one row per listing of the BI view (no contact data).
SELECT listing_id, district, living_space, number_of_rooms, construction_year, base_rent, quality_flags
FROM {schema}.market_listings;
