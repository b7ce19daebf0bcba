-- description: When each step ran, in pipeline order: rows with a timestamp and the first and
--   last of them (series discovered, discover requests, search requests, search hits, image
--   downloads, human reviews, snapshots).
-- tables: series, discover_fetches, search_pages, search_hits, images, reviews, snapshots
select * from (
  select 1 as position, 'series discovered' as step, count(discovered_at) as n,
         min(discovered_at) as first_at, max(discovered_at) as last_at from series
  union all
  select 2, 'discover requests', count(fetched_at), min(fetched_at), max(fetched_at)
  from discover_fetches
  union all
  select 3, 'search requests', count(fetched_at), min(fetched_at), max(fetched_at)
  from search_pages
  union all
  select 4, 'search hits', count(fetched_at), min(fetched_at), max(fetched_at)
  from search_hits
  union all
  select 5, 'image downloads', count(downloaded_at), min(downloaded_at), max(downloaded_at)
  from images
  union all
  select 6, 'human reviews', count(decided_at), min(decided_at), max(decided_at) from reviews
  union all
  select 7, 'snapshots', count(created_at), min(created_at), max(created_at) from snapshots
) order by position
