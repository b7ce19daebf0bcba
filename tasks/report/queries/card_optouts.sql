-- description: What the sites said no to, and was honoured: requests never made because
--   robots.txt disallows them (discover requests, search requests, image downloads), and
--   images not kept because they opt out of AI use (a directive such as noai or noimageai
--   in the image's X-Robots-Tag, or in its source page's header or robots meta tag).
-- tables: discover_fetches, search_pages, images
select * from (
  select 1 as position, 'discover requests' as step, 'robots_disallowed' as status,
         'robots.txt' as directive, count(*) as n
  from discover_fetches where status = 'robots_disallowed'
  union all
  select 2, 'search requests', 'robots_disallowed', 'robots.txt', count(*)
  from search_pages where status = 'robots_disallowed'
  union all
  select 3, 'image downloads', 'robots_disallowed', 'robots.txt', count(*)
  from images where status = 'robots_disallowed'
  union all
  select 4, 'image downloads', 'opted_out',
         case when error_message like 'source page:%' then 'source page: ' else 'image: ' end
           || coalesce(nullif(regexp_extract(error_message, '(\S+)\s*$', 1), ''), 'unknown'),
         count(*)
  from images where status = 'opted_out' group by all
) order by position, n desc, directive
