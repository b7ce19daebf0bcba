-- description: Search-engine noise: per engine, then all engines together (engine NULL), the
--   cleaned images judged for relevance (all candidate series), those scored, those the
--   scorer flagged, those irrelevant in the end (the latest human review applied) and the
--   irrelevant share.
-- tables: relevance, reviews, images
with latest as (
  select image_id, decision from reviews
  qualify row_number() over (partition by image_id
                             order by decided_at desc, decision desc) = 1
), judged as (
  select coalesce(i.engine, 'unknown') as engine, r.score,
         coalesce(r.auto_decision, r.decision) as auto_decision, h.decision as human
  from relevance r
  left join images i on i.image_id = r.image_id
  left join latest h on h.image_id = r.image_id
), final as (
  select *, case human when 'reject' then 'irrelevant' when 'accept' then 'keep'
                       else auto_decision end as decision
  from judged
)
select engine, count(*) as n_judged, count(score) as n_scored,
       count(*) filter (where auto_decision = 'irrelevant') as n_flagged,
       count(*) filter (where decision = 'irrelevant') as n_irrelevant,
       count(*) filter (where decision = 'irrelevant') / nullif(count(*), 0)
         as irrelevant_share
from final
group by grouping sets ((engine), ())
order by grouping(engine), engine
