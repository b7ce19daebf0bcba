-- description: Images the junk filters flagged, per reason (comma-joined failed checks).
-- tables: quality
select reason, count(*) as n from quality where is_junk
group by reason order by n desc, reason
