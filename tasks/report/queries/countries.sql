-- description: Dataset classes per country of origin (first listed country), largest first.
-- tables: series, images, classes
select coalesce(countries[1], 'unknown') as country, count(*) as n_series,
       count(*) / sum(count(*)) over () as share
from dataset_series group by 1 order by n_series desc, country
