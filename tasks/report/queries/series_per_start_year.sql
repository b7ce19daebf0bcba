-- description: Series per start year and kind.
-- tables: series
select start_year, kind, count(*) as n from series group by all order by all
