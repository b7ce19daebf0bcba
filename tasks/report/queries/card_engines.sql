-- description: Per image search engine: series searched, requests made and how they ended
--   (result pages, no results, blocked, failed), when (first and last request), hits kept,
--   and image rows and downloads (status ok).
-- tables: search_pages, search_hits, images
with pages as (
  select engine, count(distinct series_id) as n_series, count(*) as n_requests,
         count(*) filter (where status = 'results') as n_result_pages,
         count(*) filter (where status = 'no_results') as n_no_results,
         count(*) filter (where status = 'blocked') as n_blocked,
         count(*) filter (where status not in ('ok', 'results', 'no_results', 'blocked'))
           as n_failed,
         min(fetched_at) as first_fetched_at, max(fetched_at) as last_fetched_at
  from search_pages group by engine
), hits as (
  select engine, count(*) as n_hits from search_hits group by engine
), rows_ as (
  select coalesce(engine, 'unknown') as engine, count(*) as n_images,
         count(*) filter (where status = 'ok') as n_downloaded
  from images group by 1
), engines as (
  select engine from pages union select engine from hits union select engine from rows_
)
select e.engine, coalesce(p.n_series, 0) as n_series, coalesce(p.n_requests, 0) as n_requests,
       coalesce(p.n_result_pages, 0) as n_result_pages,
       coalesce(p.n_no_results, 0) as n_no_results, coalesce(p.n_blocked, 0) as n_blocked,
       coalesce(p.n_failed, 0) as n_failed, p.first_fetched_at, p.last_fetched_at,
       coalesce(h.n_hits, 0) as n_hits, coalesce(r.n_images, 0) as n_images,
       coalesce(r.n_downloaded, 0) as n_downloaded
from engines e
left join pages p on p.engine = e.engine
left join hits h on h.engine = e.engine
left join rows_ r on r.engine = e.engine
order by n_images desc, n_hits desc, e.engine
