-- description: Images and classes per split (train, val, test).
-- tables: splits
select split, count(*) as n_images, count(distinct series_id) as n_classes
from splits group by split
order by list_position(['train', 'val', 'test'], split), split
