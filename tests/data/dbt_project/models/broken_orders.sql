{{ config(tags=["broken"]) }}
select * from shop.missing_table
