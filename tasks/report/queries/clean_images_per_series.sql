-- description: Images per series after cleaning: downloaded, not junk, not a dropped duplicate.
-- tables: images, quality, duplicates
select i.series_id, count(*) as n_clean from images i
where i.status = 'ok'
  and not exists (select 1 from quality q where q.image_id = i.image_id and q.is_junk)
  and not exists (select 1 from duplicates d where d.image_id = i.image_id
                    and coalesce(d.action, 'drop') = 'drop')
group by i.series_id order by n_clean desc, i.series_id
