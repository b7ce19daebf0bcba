-- description: Long-tail methods side by side (tasks/experiments/longtail.py): test accuracy
--   per model, recipe, method and setting (its knobs less the seed), per tier (top1,
--   balanced, many, medium, few): mean and sample std over seeds, and how many seeds.
-- tables: metrics
with runs as (
  select model_key, recipe, run_id, metric, value,
         json_extract_string(hyperparameters, '$.longtail_method') as method,
         json_extract_string(hyperparameters, '$.longtail_setting') as setting
  from metrics
  where split = 'test'
    and metric in ('top1', 'balanced_accuracy', 'many', 'medium', 'few')
)
select model_key, recipe, method, setting,
       case metric when 'balanced_accuracy' then 'balanced' else metric end as tier,
       avg(value) as mean, stddev_samp(value) as std, count(distinct run_id) as n_seeds
from runs
where method is not null
group by model_key, recipe, method, setting, metric
order by model_key, recipe,
         coalesce(list_position(['ce', 'balanced_sampling', 'logit_adjust_posthoc',
                                 'logit_adjust_loss', 'class_balanced_loss', 'crt'], method),
                  99),
         method, setting,
         list_position(['top1', 'balanced', 'many', 'medium', 'few'], tier)
