-- description: What each kept class is mistaken for, per model: the series its images are
--   most often predicted as (zeroshot.confusions, up to three, most frequent first; a table
--   ranked before they were recorded: confused_with), each with its share of the class's
--   images and whether it is itself kept; by class_index, model, position.
-- tables: zeroshot, classes
with kept as (select series_id, title, class_index from classes where kept),
mistakes as (
    select z.model_key, z.series_id, z.top1, z.n_images,
           coalesce(z.confusions, case when z.confused_with is not null then
               [{'series_id': z.confused_with, 'title': z.confused_title,
                 'share': z.confused_share}] end) as confusions
    from zeroshot z join kept using (series_id)
),
flat as (
    select model_key, series_id, top1, n_images,
           unnest(confusions) as c, unnest(range(1, len(confusions) + 1)) as position
    from mistakes
)
select f.series_id, k.title, k.class_index, f.model_key, f.top1, f.n_images, f.position,
       f.c.series_id as confused_with, coalesce(f.c.title, o.title) as confused_title,
       f.c.share as share, coalesce(o.kept, false) as confused_kept
from flat f join kept k using (series_id) left join classes o on o.series_id = f.c.series_id
order by k.class_index, f.model_key, f.position
