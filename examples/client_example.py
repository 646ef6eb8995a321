"""The client SDK in a few lines: place, modify and cancel a bid, then cross two accounts and print the fills.

Against a running venue (`microex serve`, binary port 127.0.0.1:9001, demo keys in
<data dir>/demo-keys.json):

    python examples/client_example.py [microex-data/demo-keys.json] [--host H] [--port P]

or self-contained, against an in-process venue (no risk checks):

    python examples/client_example.py --in-process

Prices are integer ticks and quantities integer lots. The defaults fit the demo
venue's BTCUSDT (instrument 1; a tick is 0.01 USDT per BTC, a lot 0.001 BTC;
reference price 6,000,000 ticks = 60,000 USDT, limit prices within 10% of it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json

from microex.client import Client, ExecReport, Liquidity, MsgType, Side, Tif, reason_name


def show(who: str):
    def on_report(r: ExecReport) -> None:
        if r.kind == MsgType.EXEC_FILL:
            role = "maker" if r.liquidity == Liquidity.MAKER else "taker"
            print(f"  {who}: FILL order {r.client_order_id} {Side(r.side).name} {r.qty_lots} lots "
                  f"@ {r.price_ticks} ({role}), {r.leaves_lots} left")
        elif r.kind in (MsgType.EXEC_REJECTED, MsgType.EXEC_CANCELLED):
            print(f"  {who}: {r.kind.name} order {r.client_order_id}: {reason_name(r.reason)}")
    return on_report


async def demo(host: str, port: int, keys: list[bytes], instrument: int, price: int) -> None:
    alice = await Client.connect(host, port, keys[0], on_report=show("alice"), cancel_on_disconnect=True)
    bob = await Client.connect(host, port, keys[1], on_report=show("bob"), cancel_on_disconnect=True)
    print(f"logged in: alice account {alice.account}, bob account {bob.account}")

    bid = await alice.place(instrument, Side.BUY, price - 600, 5)  # rests below the market
    print(f"placed   {bid.kind.name} order {bid.client_order_id}: {bid.leaves_lots} lots @ {bid.price_ticks}")
    mod = await alice.modify(bid.client_order_id, price - 500, 3)
    print(f"modified {mod.kind.name}: {mod.leaves_lots} lots @ {mod.price_ticks}")
    can = await alice.cancel(bid.client_order_id)
    print(f"cancel   {can.kind.name}: {can.qty_lots} lots removed")

    print("crossing: alice sells 4 lots, bob buys 2 + 2 (the second IOC)")
    ask = await alice.place(instrument, Side.SELL, price, 4)
    for tif in (Tif.GTC, Tif.IOC):
        ack = await bob.place(instrument, Side.BUY, price, 2, tif=tif)
        if ack.kind == MsgType.EXEC_REJECTED:
            print(f"  bob's order rejected: {reason_name(ack.reason)}")
    await asyncio.sleep(0.1)  # the maker's fills travel on alice's connection
    print(f"alice's open orders: {alice.orders or 'none'} (ask {ask.client_order_id} fully filled)")
    await alice.close()
    await bob.close()


async def in_process(instrument: int, price: int) -> None:
    from microex.gateway.inprocess import InProcessVenue  # the venue side: only for the self-contained run

    keys = [b"demo-key-alice", b"demo-key-bob"]
    async with InProcessVenue(api_keys={keys[0]: 1, keys[1]: 2}) as venue:
        await demo(venue.host, venue.port, keys, instrument, price)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("keys", nargs="?", default="microex-data/demo-keys.json", help="demo-keys.json of the venue")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9001)
    ap.add_argument("--instrument", type=int, default=1)
    ap.add_argument("--price", type=int, default=6_000_000, help="a price near the market, ticks")
    ap.add_argument("--in-process", action="store_true", help="start a venue in this process instead")
    args = ap.parse_args()
    if args.in_process:
        asyncio.run(in_process(args.instrument, args.price))
        return
    with open(args.keys) as f:
        keys = [k["api_key"].encode() for k in json.load(f)[:2]]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(demo(args.host, args.port, keys, args.instrument, args.price))


if __name__ == "__main__":
    main()
