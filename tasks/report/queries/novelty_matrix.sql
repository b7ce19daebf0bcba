-- description: Zero-shot top-1 of each candidate series by each model it was ranked with,
--   one row per (series, model), beside the series' consensus: n_models that classified
--   it, n_unseen of them at or below the seen threshold (the `classes` table's with
--   aggregate all or vote, else max(2 / n_classes, 0.1)), its mean, min and max top-1, and
--   the selection (kept, reason, rank, aggregate); the series most models find unseen
--   first, then the lowest mean top-1.
-- tables: zeroshot, classes
with z as (
    select z.series_id, z.model_key, z.title, z.n_images, z.top1,
           coalesce(c.seen_threshold, greatest(2.0 / z.n_classes, 0.1)) as seen_threshold
    from zeroshot z left join classes c using (series_id)
),
consensus as (
    select series_id,
           count(top1) as n_models,
           count(top1) filter (where top1 <= seen_threshold) as n_unseen,
           avg(top1) as mean_top1, min(top1) as min_top1, max(top1) as max_top1
    from z group by series_id
)
select z.series_id, coalesce(c.title, z.title) as title, z.model_key, z.n_images, z.top1,
       z.top1 <= z.seen_threshold as unseen, z.seen_threshold,
       s.n_models, s.n_unseen, s.mean_top1, s.min_top1, s.max_top1,
       coalesce(c.kept, false) as kept, c.reason, c.rank, c.class_index, c.aggregate
from z join consensus s using (series_id) left join classes c using (series_id)
order by s.n_unseen desc, s.mean_top1 nulls last, z.series_id, z.model_key
