-- description: Human review in one row: decisions recorded, images decided, how many of
--   those the latest decision accepts or rejects, reviewers, first and last decision.
-- tables: reviews
-- An image's latest decision wins; two at the same instant resolve to the reject (as in
-- `relevance_per_class`).
with latest as (
  select image_id, decision from reviews
  qualify row_number() over (partition by image_id
                             order by decided_at desc, decision desc) = 1
)
select (select count(*) from reviews) as n_decisions,
       (select count(*) from latest) as n_images,
       (select count(*) from latest where decision = 'accept') as n_accepted,
       (select count(*) from latest where decision = 'reject') as n_rejected,
       (select count(distinct reviewer) from reviews) as n_reviewers,
       (select min(decided_at) from reviews) as first_decided_at,
       (select max(decided_at) from reviews) as last_decided_at
