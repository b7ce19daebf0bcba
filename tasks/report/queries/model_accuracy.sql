-- description: Per model and recipe: the $metric on $split of the run best on val (zero-shot
--   falls back to the zeroshot table over dataset classes); recipes in $recipes order.
-- tables: metrics, zeroshot, series, images, classes
with t as (
  select run_id, model_key, recipe, value from metrics
  where metric = $metric and split = $split and value is not null
), v as (
  select run_id, max(value) as val from metrics
  where metric = $metric and split = 'val' group by run_id
), ranked as (
  select t.*, count(*) over (partition by model_key, recipe) as n_runs,
         row_number() over (partition by model_key, recipe
                            order by coalesce(v.val, t.value) desc, t.value desc,
                                     t.run_id) as rn
  from t left join v using (run_id)
), from_metrics as (
  select model_key, recipe, value, run_id, n_runs, 'metrics' as source
  from ranked where rn = 1
), from_zeroshot as (
  select model_key, 'zeroshot' as recipe,
         sum(case when $metric = 'top5' then top5 else top1 end * n_images)
           / nullif(sum(n_images), 0) as value,
         null as run_id, 0 as n_runs, 'zeroshot' as source
  from zeroshot
  where $metric in ('top1', 'top5')
    and series_id in (select series_id from dataset_series)
    and model_key not in (select model_key from from_metrics where recipe = 'zeroshot')
  group by model_key
  having sum(n_images) > 0
)
select * from (select * from from_metrics union all select * from from_zeroshot)
order by model_key,
         coalesce(list_position($recipes, recipe), 99),
         recipe
