-- description: The downloaded images (status ok) per source format, most first: images and
--   the largest longer side stored (pixels; images are stored re-encoded as JPEG).
-- tables: images
select coalesce(format, 'unknown') as format, count(*) as n_images,
       max(greatest(width, height)) as max_side
from images where status = 'ok'
group by 1 order by n_images desc, format
