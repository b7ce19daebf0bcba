-- description: Where the rows came from: series per listing source, images per search engine.
-- tables: series, images
select 'series' as what, coalesce(source, 'unknown') as source, count(*) as n
from series group by all
union all
select 'images', coalesce(engine, 'unknown'), count(*) from images group by all
order by what desc, n desc, source
