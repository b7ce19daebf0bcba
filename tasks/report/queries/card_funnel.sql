-- description: The filters in pipeline order, each with the images it removed and the images
--   left after it: found (image rows), download (status not ok), quality (junk), exact and
--   near duplicates, relevance (irrelevant), too few images (class not kept for lack of
--   images or relevant images) and class selection (too easy, or not ranked).
-- tables: images, quality, duplicates, relevance, classes
-- Each image is counted once, at the first filter that removed it (`image_fate`).
with fate as (
  select image_id,
    case
      when stage = 'duplicates' and reason like 'exact duplicate%' then 'exact_duplicates'
      when stage = 'duplicates' then 'near_duplicates'
      when stage = 'classes' and reason in ('too_few_images', 'too_few_relevant')
        then 'too_few_images'
      else stage
    end as step
  from image_fate
), steps (position, step) as (
  values (0, 'found'), (1, 'download'), (2, 'quality'), (3, 'exact_duplicates'),
         (4, 'near_duplicates'), (5, 'relevance'), (6, 'too_few_images'), (7, 'classes')
)
select s.position, s.step, count(f.image_id) as n_removed,
       cast((select count(*) from fate) - sum(count(f.image_id)) over (order by s.position)
            as bigint) as n_left
from steps s left join fate f on f.step = s.step
group by s.position, s.step
order by s.position
