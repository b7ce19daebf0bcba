-- description: Per country of origin (first listed; 'unknown' when none): candidate series
--   discovered, the dataset's classes and their images after cleaning, each with its share
--   of the whole; countries with most classes first.
-- tables: series, images, quality, duplicates, relevance, classes
with per_country as (
  select coalesce(s.countries[1], 'unknown') as country,
         count(*) as n_candidates,
         count(*) filter (where c.in_dataset) as n_series,
         cast(coalesce(sum(c.n_clean) filter (where c.in_dataset), 0) as bigint) as n_images
  from series s join series_counts c on c.series_id = s.series_id
  group by 1
)
select country, n_candidates, n_series, n_images,
       n_candidates / nullif(sum(n_candidates) over (), 0) as candidate_share,
       n_series / nullif(sum(n_series) over (), 0) as series_share,
       n_images / nullif(sum(n_images) over (), 0) as image_share
from per_country
order by n_series desc, n_images desc, n_candidates desc, country
