-- description: The rank step in one row: candidate series ranked, classes kept (K), how the
--   models' accuracies combine (aggregate), the models in the order given, the prompt
--   templates, the candidates each image was classified among, and the accuracy of the
--   easiest kept class and of the hardest class dropped as too easy.
-- tables: classes, rank_models, zeroshot
select
  (select count(*) from classes) as n_candidates,
  (select count(*) from classes where kept) as n_kept,
  (select string_agg(distinct aggregate, ', ' order by aggregate) from classes) as aggregate,
  coalesce((select list(model order by position) from rank_models),
           (select models from classes order by series_id limit 1)) as models,
  (select templates from zeroshot order by model_key, series_id limit 1) as templates,
  (select max(n_classes) from zeroshot) as n_classified_among,
  (select max(accuracy) from classes where kept) as max_kept_accuracy,
  (select min(accuracy) from classes where not kept and reason = 'too_easy')
    as min_too_easy_accuracy
