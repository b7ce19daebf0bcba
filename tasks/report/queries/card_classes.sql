-- description: Per class of the dataset, largest first: class index and name (the `classes`
--   title), series title, start year, countries, images per split (train, val, test),
--   images after cleaning and long-tail tier (many above $many, few below $few, else medium).
-- tables: series, images, quality, duplicates, relevance, classes, splits
with per_split as (
  select series_id,
         count(*) filter (where split = 'train') as n_train,
         count(*) filter (where split = 'val') as n_val,
         count(*) filter (where split = 'test') as n_test
  from splits group by series_id
), kept as (
  select series_id, min(class_index) as class_index, min(title) as class_title
  from classes where kept group by series_id
)
select k.class_index, d.series_id, coalesce(k.class_title, d.title) as class_name, d.title,
       d.start_year, array_to_string(coalesce(d.countries, []), ', ') as countries,
       coalesce(p.n_train, 0) as n_train, coalesce(p.n_val, 0) as n_val,
       coalesce(p.n_test, 0) as n_test, c.n_clean as n_images,
       case when c.n_clean > $many then 'many'
            when c.n_clean < $few then 'few' else 'medium' end as tier
from dataset_series d
join series_counts c on c.series_id = d.series_id
left join per_split p on p.series_id = d.series_id
left join kept k on k.series_id = d.series_id
order by n_images desc, d.series_id
