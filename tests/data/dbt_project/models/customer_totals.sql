{{ config(tags=["daily"]) }}
select customer, sum(amount) as total, '{{ var("day", "no day") }}'::text as day
from {{ ref("stg_orders") }}
group by customer
