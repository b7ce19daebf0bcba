-- description: Per image: the first cleaning stage that removed it and why (NULL: kept).
-- tables: images, quality, duplicates, relevance, classes
-- The clean stage's verdict (`image_cleaning`, tasks/clean/cleaned.sql), then relevance (an
-- image the rank stage found irrelevant, or a human rejected: table `relevance`), then the
-- class selection: an image of a series that is not a kept class (when `classes` exists).
select c.image_id, c.series_id,
  case
    when c.removed_by is not null then c.removed_by
    when r.decision = 'irrelevant' then 'relevance'
    when f.has_classes and k.kept is not true then 'classes'
  end as stage,
  case
    when c.removed_by is not null then c.reason
    when r.decision = 'irrelevant' then coalesce(r.reason, 'irrelevant')
    when f.has_classes and k.kept is not true
      then coalesce(k.reason, case when k.series_id is null
                                   then 'not ranked' else 'class not kept' end)
  end as reason
from image_cleaning c
-- Only images with an irrelevant row matter (min(decision) is then 'irrelevant'); grouping
-- just those is what keeps this view cheap at a million images.
left join (select image_id, min(decision) as decision, min(reason) as reason
           from relevance
           where image_id in (select image_id from relevance where decision = 'irrelevant')
           group by image_id) r on r.image_id = c.image_id
cross join (select exists (select 1 from _tables_present where name = 'classes' and present)
            as has_classes) f
left join (select series_id, bool_or(kept) as kept, min(reason) as reason
           from classes group by series_id) k on k.series_id = c.series_id
