-- description: Classes kept for the dataset, and why the others were not.
-- tables: classes
select kept, coalesce(reason, '') as reason, count(*) as n_classes,
       round(avg(accuracy), 4) as mean_accuracy
from classes group by all order by kept desc, n_classes desc, reason
