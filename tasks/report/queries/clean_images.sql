-- description: Images after cleaning: downloaded, not junk, not a dropped duplicate, kept class.
-- tables: images, quality, duplicates, classes
select image_id, series_id from image_fate where stage is null
