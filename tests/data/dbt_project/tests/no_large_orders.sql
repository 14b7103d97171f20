{{ config(tags=["strict"]) }}
-- Fails on the test data: order 2 is over 15.
select * from {{ ref("stg_orders") }} where amount > 15
