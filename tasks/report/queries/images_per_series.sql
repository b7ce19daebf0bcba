-- description: Images per series before and after cleaning, most after cleaning first.
-- tables: series, images, quality, duplicates, classes
select series_id, title, n_found, n_downloaded, n_clean, in_dataset
from series_counts
order by n_clean desc, n_downloaded desc, series_id
