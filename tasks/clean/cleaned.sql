-- The clean stage's verdict on every row of `images`: the one definition of "cleaned".
-- The images the later stages use (`tv100.tasks.clean.cleaned.cleaned_images`) are the rows
-- with `removed_by` NULL; the report's `image_fate` adds the class selection on top.
--
-- removed_by: the first check that removes the image, NULL when it passes them all:
--   download    its status is not 'ok';
--   quality     a junk filter flagged it (`quality.is_junk`);
--   duplicates  a `duplicates` row drops it (action 'drop', or no action;
--               'move_to_train' rows keep it).
-- reason: why, in words (the status, the junk reason, '<kind> duplicate, <scope>').
-- Reads images, quality and duplicates (see `tv100.storage.catalog.complete_tables`).
select i.image_id, i.series_id, i.path, i.sha256, i.width, i.height,
  case
    when i.status is distinct from 'ok' then 'download'
    when q.is_junk then 'quality'
    when d.image_id is not null then 'duplicates'
  end as removed_by,
  case
    when i.status is distinct from 'ok' then coalesce(i.status, 'no status')
    when q.is_junk then coalesce(q.reason, 'junk')
    when d.image_id is not null
      then coalesce(d.kind, '?') || ' duplicate, ' || coalesce(d.scope, '?')
  end as reason
from images i
left join (select image_id, bool_or(is_junk) as is_junk,
                  min(reason) filter (where is_junk) as reason
           from quality group by image_id) q on q.image_id = i.image_id
left join (select image_id, min(kind) as kind, min(scope) as scope
           from duplicates where coalesce(action, 'drop') = 'drop'
           group by image_id) d on d.image_id = i.image_id
