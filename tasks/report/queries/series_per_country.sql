-- description: Series per country of origin (first listed country).
-- tables: series
select coalesce(countries[1], 'unknown') as country, count(*) as n
from series group by 1 order by n desc, country
