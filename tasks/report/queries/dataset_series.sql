-- description: The dataset's classes: kept classes, else series with clean images, else all.
-- tables: series, images, classes
select s.* from series s
where case
  when exists (select 1 from _tables_present where name = 'classes' and present)
    then s.series_id in (select series_id from classes where kept)
  when exists (select 1 from _tables_present where name = 'images' and present)
    then s.series_id in (select series_id from clean_images)
  else true
end
