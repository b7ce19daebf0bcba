-- description: Series CLIP recognises worst zero-shot, per model (top-1, then mean true prob).
-- tables: zeroshot, series
select z.model_key, z.series_id, s.title, z.n_images, z.top1, z.top5,
       z.mean_true_prob, z.confused_with, z.confused_title
from zeroshot z left join series s using (series_id)
order by z.model_key, z.top1, z.mean_true_prob, z.series_id
