-- description: Per class of the dataset, noisiest first: images judged for relevance and
--   scored, flagged by the scorer (n_other_series, n_offtopic), human decisions (the latest
--   review of each image, applied over the scorer's as the rank and train stages apply them:
--   all rejects, rejects of images the scorer kept, accepts of images it flagged), the
--   flagged images still irrelevant in the end per reason, the final irrelevant and kept
--   images, and noise_share (final irrelevant / judged).
-- tables: relevance, reviews, series, classes
-- `reviews` may be empty (no human decision yet). An image's latest review wins; two at the
-- same instant (never from `tv100 review`) resolve to the reject. Rows of a table written
-- before `auto_decision` existed carry the scorer's decision in `decision`.
with latest as (
  select image_id, decision from reviews
  qualify row_number() over (partition by image_id
                             order by decided_at desc, decision desc) = 1
),
judged as (
  select r.image_id, r.series_id, r.score,
         coalesce(r.auto_decision, r.decision) as auto_decision,
         case when r.auto_decision is null then r.reason else r.auto_reason end as auto_reason,
         h.decision as human
  from relevance r left join latest h on h.image_id = r.image_id
),
final as (
  select *, case human when 'reject' then 'irrelevant' when 'accept' then 'keep'
                       else auto_decision end as decision
  from judged
),
per_class as (
  select s.series_id, s.title,
    count(f.image_id) as n_images,
    count(f.score) as n_scored,
    count(f.image_id) filter (where f.auto_decision = 'irrelevant'
                              and f.auto_reason = 'other_series') as n_other_series,
    count(f.image_id) filter (where f.auto_decision = 'irrelevant'
                              and f.auto_reason = 'offtopic') as n_offtopic,
    count(f.image_id) filter (where f.human = 'reject') as n_human_rejects,
    count(f.image_id) filter (where f.human = 'reject'
                              and f.auto_decision = 'keep') as n_human_removed,
    count(f.image_id) filter (where f.human = 'accept'
                              and f.auto_decision = 'irrelevant') as n_human_overruled,
    count(f.image_id) filter (where f.decision = 'irrelevant' and f.auto_decision = 'irrelevant'
                              and f.auto_reason = 'other_series') as n_found_other_series,
    count(f.image_id) filter (where f.decision = 'irrelevant' and f.auto_decision = 'irrelevant'
                              and f.auto_reason = 'offtopic') as n_found_offtopic,
    count(f.image_id) filter (where f.decision = 'irrelevant') as n_irrelevant,
    count(f.image_id) filter (where f.decision = 'keep') as n_kept
  from dataset_series s left join final f on f.series_id = s.series_id
  group by s.series_id, s.title
)
select *, n_irrelevant / nullif(n_images, 0) as noise_share
from per_class
order by noise_share desc nulls last, series_id
