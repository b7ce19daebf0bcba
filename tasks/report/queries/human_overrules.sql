-- description: Images a human overruled: the latest review rejected an image the relevance
--   scorer kept, or accepted one it flagged; with the scorer's decision and reason, the
--   reviewer, when, and the image's file (relative to the data root).
-- tables: relevance, reviews, series, images
with latest as (
  select * from reviews
  qualify row_number() over (partition by image_id
                             order by decided_at desc, decision desc) = 1
),
judged as (
  select r.image_id, r.series_id,
         coalesce(r.auto_decision, r.decision) as auto_decision,
         case when r.auto_decision is null then r.reason else r.auto_reason end as auto_reason
  from relevance r
)
select j.image_id, j.series_id, s.title, j.auto_decision, j.auto_reason,
       h.decision as human_decision, h.reviewer, h.decided_at, i.path
from judged j
join latest h on h.image_id = j.image_id
left join series s on s.series_id = j.series_id
left join images i on i.image_id = j.image_id
where (h.decision = 'reject' and j.auto_decision = 'keep')
   or (h.decision = 'accept' and j.auto_decision = 'irrelevant')
order by j.series_id, h.decided_at, j.image_id
