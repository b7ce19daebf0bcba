-- description: Snapshots of finished builds, oldest first: id, when, and the counts each
--   recorded (series, images downloaded, cleaned images, kept classes).
-- tables: snapshots
select snapshot_id, created_at, n_series, n_images_ok, n_cleaned, n_kept
from snapshots order by created_at, snapshot_id
