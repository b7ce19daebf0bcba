-- description: Per series: images found, downloaded (before cleaning), after cleaning.
-- tables: series, images, quality, duplicates, classes
with counts as (
  select series_id,
         count(*) as n_found,
         count(*) filter (where stage is distinct from 'download') as n_downloaded,
         count(*) filter (where stage is null) as n_clean
  from image_fate group by series_id
), ids as (
  select series_id, title from series
  union all
  select distinct series_id, null from images
  where series_id not in (select series_id from series)
)
select ids.series_id, ids.title,
       coalesce(c.n_found, 0) as n_found,
       coalesce(c.n_downloaded, 0) as n_downloaded,
       coalesce(c.n_clean, 0) as n_clean,
       ids.series_id in (select series_id from dataset_series) as in_dataset
from ids left join counts c using (series_id)
