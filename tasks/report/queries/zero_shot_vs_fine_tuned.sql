-- description: Test top-1 per model and recipe (zeroshot, linear, finetune, wiseft), best of runs.
-- tables: metrics
pivot (select model_key, recipe, value from metrics
       where split = 'test' and metric = 'top1')
on recipe in ('zeroshot', 'linear', 'finetune', 'wiseft') using max(value)
group by model_key order by model_key
