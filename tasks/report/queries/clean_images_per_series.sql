-- description: Images per series after cleaning: downloaded, not junk, not a dropped duplicate.
-- tables: images, quality, duplicates
-- Anti joins, not correlated NOT EXISTS: DuckDB plans those with a DISTINCT over every
-- image id first (seconds at a million images).
select i.series_id, count(*) as n_clean from images i
anti join (select image_id from quality where is_junk) q on q.image_id = i.image_id
anti join (select image_id from duplicates where coalesce(action, 'drop') = 'drop') d
  on d.image_id = i.image_id
where i.status = 'ok'
group by i.series_id order by n_clean desc, i.series_id
