-- description: Images found and downloaded per series, most downloaded first.
-- tables: series, images
select s.series_id, s.title, count(i.image_id) as found,
       count(i.image_id) filter (where i.status = 'ok') as downloaded
from series s left join images i using (series_id)
group by all order by downloaded desc, s.series_id
