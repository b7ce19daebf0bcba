-- description: Dataset classes per start year.
-- tables: series, images, classes
select start_year, count(*) as n_series
from dataset_series group by 1 order by start_year nulls last
