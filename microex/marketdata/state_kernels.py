"""MarketState's compiled kernels: engine EVENT batches in, market-data records out.

How it works (arrays are MarketState's, see state.py for their shapes; instrument
ids 1..n index them directly, row 0 is unused):
- `apply_events` runs events[start:start+count] in order. An event whose command
  seq is <= min_seq is skipped (already in the state: the stage's start-up
  rebuild). A LEVEL event sets its level's absolute state in the book replica; if
  that changes the book, md_seq += 1 and one MD_UPDATE (kind LEVEL) is written. A
  TRADE event always publishes: md_seq += 1, trade id += 1, one MD_UPDATE (kind
  TRADE), a tape entry, and the trade goes into the running candle of each
  interval (a trade in a later bucket first closes the running candle: one
  CLOSED MD_CANDLE). Other kinds change nothing. At the end of the call, every
  instrument the call touched whose best bid/ask (price or qty) changed gets one
  MD_BBO, in the order they were first touched.
- Candles are bucketed by the event's ts_ns. Engine time may step back a little
  (several gateways stamp commands), so a trade never reopens a closed bucket: it
  goes to max(its bucket, the running one), or after a closed one to the next.
- Capacity: the call stops early, before an event, when `upd` has no slot left or
  `cdl` fewer than 3 (the wrapper sizes them so this never happens). res[] gets
  (events processed, updates, candles, bbo records written).
- Invariants: md_seq counts exactly the MD_UPDATEs written for the instrument;
  the book replica equals the engine's book after the same events; outputs are
  complete records (header included: they go to the wire as they are).
Plain-Python twin: marketdata/reference.py (MarketReference), same records out.
"""

from __future__ import annotations

from numba import njit

from microex.core.records import EventKind, MdKind, MdMsg
from microex.marketdata.book import SET_CHANGED, SET_FULL, side_key, side_set

# instrument row fields (inst[i, ...])
I_MD_SEQ, I_TRADE_NO, I_LAST_TS, I_LAST_ENGINE_SEQ, I_LAST_PRICE, I_TAPE_N, I_TOUCHED = 0, 1, 2, 3, 4, 5, 6
I_BID, I_BID_QTY, I_ASK, I_ASK_QTY = 7, 8, 9, 10  # the last published BBO
I_FIELDS = 11
# trade tape entry fields (tape[i, slot, ...])
T_MD_SEQ, T_TS, T_ENGINE_SEQ, T_PRICE, T_QTY, T_SIDE, T_TRADE_ID = 0, 1, 2, 3, 4, 5, 6
T_FIELDS = 7
# candle fields (candles[i, interval - 1, slot, ...])
C_OPEN_TS, C_OPEN, C_HIGH, C_LOW, C_CLOSE, C_VOLUME, C_QUOTE, C_TRADES, C_MD_SEQ, C_RUNNING, C_DIRTY = range(11)
C_FIELDS = 11
N_INTERVALS = 3
# stats counters
S_SKIPPED, S_UNKNOWN_INSTRUMENT, S_BOOK_FULL, S_SAME_LEVEL = 0, 1, 2, 3
S_FIELDS = 4
# res fields
R_PROCESSED, R_UPDATES, R_CANDLES, R_BBO = 0, 1, 2, 3

EV_TRADE, EV_LEVEL = int(EventKind.TRADE), int(EventKind.LEVEL)
K_LEVEL, K_TRADE = int(MdKind.LEVEL), int(MdKind.TRADE)
M_INCREMENT, M_BBO, M_CANDLE = int(MdMsg.INCREMENT), int(MdMsg.BBO), int(MdMsg.CANDLE)
SEQ_MASK = 0xFFFFFFFF


@njit(cache=True, inline="always")
def write_update(upd, k, md_seq, ts, eseq, price, qty, count, inst, kind, side):
    u = upd[k]
    u["length"] = 64
    u["msg_type"] = M_INCREMENT
    u["seq"] = md_seq & SEQ_MASK
    u["md_seq"] = md_seq
    u["ts_ns"] = ts
    u["engine_seq"] = eseq
    u["price_ticks"] = price
    u["qty_lots"] = qty
    u["count"] = count
    u["instrument"] = inst
    u["kind"] = kind
    u["side"] = side
    u["flags"] = 0


@njit(cache=True)
def write_candle(cdl, k, candles, i, j, slot, flags):
    c = candles[i, j, slot]
    r = cdl[k]
    r["length"] = 88
    r["msg_type"] = M_CANDLE
    r["seq"] = c[C_MD_SEQ] & SEQ_MASK
    r["md_seq"] = c[C_MD_SEQ]
    r["open_ts_ns"] = c[C_OPEN_TS]
    r["open"] = c[C_OPEN]
    r["high"] = c[C_HIGH]
    r["low"] = c[C_LOW]
    r["close"] = c[C_CLOSE]
    r["volume"] = c[C_VOLUME]
    r["quote_volume"] = c[C_QUOTE]
    r["trades"] = c[C_TRADES]
    r["instrument"] = i
    r["interval"] = j + 1
    r["flags"] = flags


@njit(cache=True)
def candle_trade(candles, cn, widths, i, ts, price, qty, md_seq, cdl, nc):
    """Put one trade into the running candle of every interval; returns the new candle count."""
    keep = candles.shape[2]
    for j in range(N_INTERVALS):
        w = widths[j]
        bucket = ts - ts % w
        n = cn[i, j]
        if n > 0:
            cur = candles[i, j, (n - 1) % keep]
            if cur[C_RUNNING] == 1:
                if bucket <= cur[C_OPEN_TS]:
                    cur[C_HIGH] = max(cur[C_HIGH], price)
                    cur[C_LOW] = min(cur[C_LOW], price)
                    cur[C_CLOSE] = price
                    cur[C_VOLUME] += qty
                    cur[C_QUOTE] += price * qty
                    cur[C_TRADES] += 1
                    cur[C_MD_SEQ] = md_seq
                    cur[C_DIRTY] = 1
                    continue
                cur[C_RUNNING] = 0  # a later bucket: close the running candle first
                cur[C_DIRTY] = 0
                write_candle(cdl, nc, candles, i, j, (n - 1) % keep, 1)
                nc += 1
            else:
                bucket = max(bucket, cur[C_OPEN_TS] + w)  # never reopen a closed bucket
        c = candles[i, j, n % keep]
        c[C_OPEN_TS] = bucket
        c[C_OPEN] = price
        c[C_HIGH] = price
        c[C_LOW] = price
        c[C_CLOSE] = price
        c[C_VOLUME] = qty
        c[C_QUOTE] = price * qty
        c[C_TRADES] = 1
        c[C_MD_SEQ] = md_seq
        c[C_RUNNING] = 1
        c[C_DIRTY] = 1
        cn[i, j] = n + 1
    return nc


@njit(cache=True)
def apply_events(ev, start, count, min_seq, keys, qty, cnt, nlev, inst, tape, candles, cn, widths,
                 upd, cdl, bbo, touched, res, stats):
    n_inst = inst.shape[0] - 1
    tape_len = tape.shape[1]
    nu = 0
    nc = 0
    nt = 0  # instruments touched in this call
    done = 0
    for e in range(start, start + count):
        if nu >= upd.shape[0] or nc + N_INTERVALS > cdl.shape[0]:
            break
        done += 1
        x = ev[e]
        kind = x["kind"]
        if kind != EV_LEVEL and kind != EV_TRADE:
            continue
        if x["seq"] <= min_seq:
            stats[S_SKIPPED] += 1
            continue
        i = x["instrument"]
        side = x["side"]
        if i < 1 or i > n_inst or side < 1 or side > 2:
            stats[S_UNKNOWN_INSTRUMENT] += 1
            continue
        row = inst[i]
        ts = x["ts_ns"]
        eseq = x["seq"]
        price = x["price_ticks"]
        q = x["qty_lots"]
        if kind == EV_LEVEL:
            s = side - 1
            n, status = side_set(keys[i, s], qty[i, s], cnt[i, s], nlev[i, s], side_key(side, price),
                                 q, x["level_orders"])
            nlev[i, s] = n
            if status == SET_FULL:
                stats[S_BOOK_FULL] += 1
                continue
            if status != SET_CHANGED:
                stats[S_SAME_LEVEL] += 1
                continue
            row[I_MD_SEQ] += 1
            write_update(upd, nu, row[I_MD_SEQ], ts, eseq, price, q, x["level_orders"], i, K_LEVEL, side)
            nu += 1
        else:
            row[I_MD_SEQ] += 1
            row[I_TRADE_NO] += 1
            md = row[I_MD_SEQ]
            write_update(upd, nu, md, ts, eseq, price, q, row[I_TRADE_NO], i, K_TRADE, side)
            nu += 1
            t = tape[i, row[I_TAPE_N] % tape_len]
            t[T_MD_SEQ] = md
            t[T_TS] = ts
            t[T_ENGINE_SEQ] = eseq
            t[T_PRICE] = price
            t[T_QTY] = q
            t[T_SIDE] = side
            t[T_TRADE_ID] = row[I_TRADE_NO]
            row[I_TAPE_N] += 1
            row[I_LAST_PRICE] = price
            nc = candle_trade(candles, cn, widths, i, ts, price, q, md, cdl, nc)
        row[I_LAST_TS] = ts
        row[I_LAST_ENGINE_SEQ] = eseq
        if row[I_TOUCHED] == 0:
            row[I_TOUCHED] = 1
            touched[nt] = i
            nt += 1
    nb = 0
    for t in range(nt):
        i = touched[t]
        row = inst[i]
        row[I_TOUCHED] = 0
        bid, bq = best(keys, qty, nlev, i, 0)
        ask, aq = best(keys, qty, nlev, i, 1)
        if bid != row[I_BID] or bq != row[I_BID_QTY] or ask != row[I_ASK] or aq != row[I_ASK_QTY]:
            row[I_BID] = bid
            row[I_BID_QTY] = bq
            row[I_ASK] = ask
            row[I_ASK_QTY] = aq
            write_bbo(bbo, nb, row, i)
            nb += 1
    res[R_PROCESSED] = done
    res[R_UPDATES] = nu
    res[R_CANDLES] = nc
    res[R_BBO] = nb


@njit(cache=True, inline="always")
def best(keys, qty, nlev, i, s):
    """(price, qty) of the best level of side s (0 buy, 1 sell); (0, 0) when empty."""
    n = nlev[i, s]
    if n == 0:
        return 0, 0
    k = keys[i, s, n - 1]
    return (k if s == 0 else -k), qty[i, s, n - 1]


@njit(cache=True)
def write_bbo(bbo, k, row, i):
    r = bbo[k]
    r["length"] = 64
    r["msg_type"] = M_BBO
    r["seq"] = row[I_MD_SEQ] & SEQ_MASK
    r["md_seq"] = row[I_MD_SEQ]
    r["ts_ns"] = row[I_LAST_TS]
    r["bid_price"] = row[I_BID]
    r["bid_qty"] = row[I_BID_QTY]
    r["ask_price"] = row[I_ASK]
    r["ask_qty"] = row[I_ASK_QTY]
    r["instrument"] = i


@njit(cache=True)
def close_due(now, grace, candles, cn, widths, cdl):
    """Close every running candle whose bucket ended at least `grace` ns before `now`; one CLOSED
    MD_CANDLE each (instrument, then interval order). Returns how many."""
    keep = candles.shape[2]
    nc = 0
    for i in range(1, candles.shape[0]):
        for j in range(N_INTERVALS):
            n = cn[i, j]
            if n == 0 or nc >= cdl.shape[0]:
                continue
            c = candles[i, j, (n - 1) % keep]
            if c[C_RUNNING] == 1 and c[C_OPEN_TS] + widths[j] + grace <= now:
                c[C_RUNNING] = 0
                c[C_DIRTY] = 0
                write_candle(cdl, nc, candles, i, j, (n - 1) % keep, 1)
                nc += 1
    return nc


@njit(cache=True)
def running_candles(candles, cn, cdl, only_dirty):
    """A running (flags 0) MD_CANDLE for each running candle (changed since the last call, with
    only_dirty); clears the changed marks. Returns how many."""
    keep = candles.shape[2]
    nc = 0
    for i in range(1, candles.shape[0]):
        for j in range(N_INTERVALS):
            n = cn[i, j]
            if n == 0 or nc >= cdl.shape[0]:
                continue
            c = candles[i, j, (n - 1) % keep]
            if c[C_RUNNING] == 1 and (c[C_DIRTY] == 1 or not only_dirty):
                c[C_DIRTY] = 0
                write_candle(cdl, nc, candles, i, j, (n - 1) % keep, 0)
                nc += 1
    return nc


@njit(cache=True)
def compute_tickers(now, day, candles, cn, widths, inst, keys, qty, nlev, out):
    """The rolling ticker of every instrument into out[i - 1]: the 1-minute candles whose bucket
    overlaps (now - day, now], with the last price and the book's best bid/ask."""
    keep = candles.shape[2]
    w = widths[1]
    for i in range(1, inst.shape[0]):
        row = inst[i]
        last = row[I_LAST_PRICE]
        o = last
        hi = last
        lo = last
        vol = 0
        quote = 0
        trades = 0
        n = cn[i, 1]
        for t in range(min(n, keep)):
            c = candles[i, 1, (n - 1 - t) % keep]
            if c[C_OPEN_TS] + w <= now - day:
                break
            if trades == 0:
                hi = c[C_HIGH]
                lo = c[C_LOW]
            else:
                hi = max(hi, c[C_HIGH])
                lo = min(lo, c[C_LOW])
            o = c[C_OPEN]
            vol += c[C_VOLUME]
            quote += c[C_QUOTE]
            trades += c[C_TRADES]
        r = out[i - 1]
        r["length"] = 120
        r["msg_type"] = 38
        r["seq"] = row[I_MD_SEQ] & SEQ_MASK
        r["md_seq"] = row[I_MD_SEQ]
        r["ts_ns"] = now
        r["open"] = o
        r["high"] = hi
        r["low"] = lo
        r["last"] = last
        r["volume"] = vol
        r["quote_volume"] = quote
        r["trades"] = trades
        bid, bq = best(keys, qty, nlev, i, 0)
        ask, aq = best(keys, qty, nlev, i, 1)
        r["bid_price"] = bid
        r["bid_qty"] = bq
        r["ask_price"] = ask
        r["ask_qty"] = aq
        r["instrument"] = i
