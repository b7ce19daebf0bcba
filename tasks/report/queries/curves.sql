-- description: Data-efficiency curves: per model, recipe, shots (training images per class;
--   0: all), split and metric, the mean, sample std, min and max over seeds, the seeds run
--   and the mean training images per class; recipes in the train stage's order, all last.
-- tables: curves
select model_key, recipe, shots, split, metric,
       avg(value) as mean, stddev_samp(value) as std,
       min(value) as min, max(value) as max,
       count(distinct seed) as n_seeds, avg(mean_shots) as mean_shots
from curves
where value is not null
group by model_key, recipe, shots, split, metric
order by model_key,
         coalesce(list_position(['zeroshot', 'linear', 'finetune', 'wiseft'], recipe), 99),
         recipe, shots = 0, shots, split, metric
