-- description: One row of dates and counts for the dataset card.
-- tables: series, images
select
(select count(*) from series) as n_series,
(select min(start_year) from series) as min_start_year,
(select max(start_year) from series) as max_start_year,
(select min(discovered_at) from series) as first_discovered_at,
(select max(discovered_at) from series) as last_discovered_at,
(select count(*) from images) as n_images_found,
(select count(*) from images where status = 'ok') as n_images_downloaded,
(select min(downloaded_at) from images) as first_downloaded_at,
(select max(downloaded_at) from images) as last_downloaded_at,
(select count(distinct regexp_extract(coalesce(final_url, url),
                                      '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]+)', 1))
 from images where status = 'ok') as n_image_hosts,
(select count(*) from clean_images) as n_images_clean,
(select count(*) from dataset_series) as n_classes
