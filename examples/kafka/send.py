"""Produce one order to the local broker: ``python send.py ORDER_ID AMOUNT [REGION]``."""

import asyncio
import json
import sys

from aiokafka import AIOKafkaProducer


async def main(order_id: str, amount: float, region: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9092")
    await producer.start()
    try:
        value = json.dumps({"amount": amount, "region": region}).encode()
        sent = await producer.send_and_wait("orders", value, key=order_id.encode())
        print(f"sent {order_id} to orders/{sent.partition}/{sent.offset}")
    finally:
        await producer.stop()


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (2, 3):
        raise SystemExit(__doc__)
    asyncio.run(main(args[0], float(args[1]), args[2] if len(args) == 3 else "eu"))
