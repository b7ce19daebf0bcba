-- description: Classes sorted by images (descending) with share, cumulative share and tier.
-- tables: series, images, quality, duplicates, classes
with d as (
  select series_id, title,
         case when $stage = 'before' then n_downloaded else n_clean end as n_images
  from series_counts
  where case when $stage = 'before' then n_downloaded > 0 else in_dataset end
)
select row_number() over w as rank, series_id, title, n_images,
       n_images / nullif(sum(n_images) over (), 0) as share,
       sum(n_images) over w / nullif(sum(n_images) over (), 0) as cumulative_share,
       case when n_images > $many then 'many'
            when n_images < $few then 'few' else 'medium' end as tier
from d
window w as (order by n_images desc, series_id)
order by rank
