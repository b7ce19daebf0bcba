-- description: Kept classes per tier after cleaning: many (> 100), medium (20-100), few (< 20).
-- tables: images, quality, duplicates, classes
with n as (
  select c.series_id, count(i.image_id) as n_images
  from classes c left join images i on i.series_id = c.series_id
    and i.status = 'ok'
    and not exists (select 1 from quality q where q.image_id = i.image_id and q.is_junk)
    and not exists (select 1 from duplicates d where d.image_id = i.image_id
                      and coalesce(d.action, 'drop') = 'drop')
  where c.kept group by c.series_id
)
select case when n_images > 100 then 'many' when n_images >= 20 then 'medium'
            else 'few' end as tier,
       count(*) as n_classes, sum(n_images) as n_images
from n group by 1 order by list_position(['many', 'medium', 'few'], tier)
