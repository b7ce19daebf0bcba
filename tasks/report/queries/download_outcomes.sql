-- description: Image rows per download status (ok, http_error, timeout, not_image, ...).
-- tables: images
select status, count(*) as n from images group by status order by n desc, status
