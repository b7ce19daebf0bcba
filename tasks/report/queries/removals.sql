-- description: Images removed by cleaning, per stage and reason (each image counted once).
-- tables: images, quality, duplicates, relevance, classes
select stage, reason, count(*) as n_images, count(distinct series_id) as n_series
from image_fate where stage is not null
group by stage, reason
order by list_position(['download', 'quality', 'duplicates', 'relevance', 'classes'], stage),
         n_images desc, reason
