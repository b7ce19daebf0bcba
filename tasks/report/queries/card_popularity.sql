-- description: IMDb popularity (num_votes) of every candidate series and of the dataset's
--   classes: series, series with a vote count, and the count's minimum, quartiles, maximum
--   and mean.
-- tables: series, images, quality, duplicates, relevance, classes
with grouped as (
  select 1 as position, 'all candidates' as series_group, num_votes from series
  union all
  select 2, 'dataset classes', num_votes from dataset_series
)
select series_group, count(*) as n_series, count(num_votes) as n_with_votes,
       min(num_votes) as min_votes, quantile_cont(num_votes, 0.25) as q1_votes,
       quantile_cont(num_votes, 0.5) as median_votes, quantile_cont(num_votes, 0.75) as q3_votes,
       max(num_votes) as max_votes, avg(num_votes) as mean_votes
from grouped group by position, series_group order by position
