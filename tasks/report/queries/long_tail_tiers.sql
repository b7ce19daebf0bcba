-- description: Kept classes per tier after cleaning: many (> 100), medium (20-100), few (< 20).
-- tables: images, quality, duplicates, classes
-- Anti joins, not correlated NOT EXISTS: DuckDB plans those with a DISTINCT over every
-- image id first (seconds at a million images).
with clean as (
  select i.image_id, i.series_id from images i
  anti join (select image_id from quality where is_junk) q on q.image_id = i.image_id
  anti join (select image_id from duplicates where coalesce(action, 'drop') = 'drop') d
    on d.image_id = i.image_id
  where i.status = 'ok'
), n as (
  select c.series_id, count(i.image_id) as n_images
  from classes c left join clean i on i.series_id = c.series_id
  where c.kept group by c.series_id
)
select case when n_images > 100 then 'many' when n_images >= 20 then 'medium'
            else 'few' end as tier,
       count(*) as n_classes, sum(n_images) as n_images
from n group by 1 order by list_position(['many', 'medium', 'few'], tier)
