"""The pipelines the explain tests (integration and end to end) share."""

ORDERS = """
name: orders
params:
  amount: {type: integer, default: 0}
triggers:
  - on: event
    id: big
    type: orders.paid
    when: "event.data.amount > 100"
    params: {amount: "{{ event.data.amount }}"}
  - on: event
    id: shop
    type: "orders.*"
    source: "shop/*"
tasks:
  - {id: note, shell: "echo {{ params.amount }}"}
"""

BILLING = """
name: billing
triggers:
  - {on: event, type: "billing.*"}
tasks:
  - {id: note, shell: "echo billed"}
"""
