{{ config(tags=["daily"]) }}
select id, customer, amount from {{ source("shop", "orders") }}
