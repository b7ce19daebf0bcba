-- description: Duplicate rows per signal (exact, phash, dhash, clip), scope and action.
-- tables: duplicates
select kind, scope, action, count(*) as n from duplicates
group by all order by n desc, kind, scope, action
