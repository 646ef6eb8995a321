// microex dashboard: one static page, no build step. It reads the venue's Binance-compatible
// REST API and WebSocket streams (same origin) and /api/microex/health for the venue's own
// counters. The local book follows Binance's documented procedure: buffer the diff stream,
// take a REST snapshot, drop diffs with u <= lastUpdateId, then each diff's U must be the
// previous u + 1 (else resynchronise).
"use strict";

const state = {
  symbol: null, ws: null, book: null, lastU: 0, buffered: [], syncing: false,
  trades: [], candles: [], health: [], prevHealth: null, dirty: true,
};
window.__microex = { bookUpdates: 0, trades: 0, healthPolls: 0 };  // for tests and the curious

const $ = (id) => document.getElementById(id);
const fmt = (x, d = 2) => Number(x).toLocaleString(undefined, { minimumFractionDigits: d, maximumFractionDigits: d });

async function getJSON(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

async function start() {
  const info = await getJSON("/api/v3/exchangeInfo");
  const sel = $("symbol");
  for (const s of info.symbols) sel.add(new Option(s.symbol, s.symbol));
  sel.onchange = () => select(sel.value);
  await select(info.symbols[0].symbol);
  setInterval(pollHealth, 1000);
  pollHealth();
  requestAnimationFrame(frame);
}

async function select(symbol) {
  state.symbol = symbol;
  state.book = null; state.buffered = []; state.trades = []; state.candles = [];
  if (state.ws) state.ws.close();
  const s = symbol.toLowerCase();
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/stream?streams=${s}@depth@100ms/${s}@trade/${s}@kline_1m`);
  state.ws = ws;
  ws.onopen = () => { $("status").textContent = `live: ${symbol}`; resync(); };
  ws.onclose = () => { if (state.ws === ws) { $("status").textContent = "disconnected, retrying…"; setTimeout(() => select(symbol), 1000); } };
  ws.onmessage = (m) => onMessage(JSON.parse(m.data));
  const klines = await getJSON(`/api/v3/klines?symbol=${symbol}&interval=1m&limit=120`);
  state.candles = klines.map((k) => ({ t: k[0], o: +k[1], h: +k[2], l: +k[3], c: +k[4], v: +k[5] }));
  const trades = await getJSON(`/api/v3/trades?symbol=${symbol}&limit=40`);
  state.trades = trades.reverse().map((t) => ({ time: t.time, p: t.price, q: t.qty, buy: !t.isBuyerMaker }));
  state.dirty = true;
}

async function resync() {
  state.syncing = true;
  const snap = await getJSON(`/api/v3/depth?symbol=${state.symbol}&limit=1000`);
  const book = { bids: new Map(), asks: new Map() };
  for (const [p, q] of snap.bids) book.bids.set(p, q);
  for (const [p, q] of snap.asks) book.asks.set(p, q);
  state.book = book; state.lastU = snap.lastUpdateId; state.syncing = false;
  const pending = state.buffered; state.buffered = [];
  for (const d of pending) applyDiff(d);
  state.dirty = true;
}

function applyDiff(d) {
  if (!state.book || state.syncing) { state.buffered.push(d); return; }
  if (d.u <= state.lastU) return;  // already in the snapshot
  if (d.U > state.lastU + 1) { state.book = null; state.buffered = [d]; resync(); return; }  // a gap
  for (const [p, q] of d.b) (+q === 0) ? state.book.bids.delete(p) : state.book.bids.set(p, q);
  for (const [p, q] of d.a) (+q === 0) ? state.book.asks.delete(p) : state.book.asks.set(p, q);
  state.lastU = d.u;
  window.__microex.bookUpdates += 1;
  state.dirty = true;
}

function onMessage(msg) {
  const { stream, data } = msg;
  if (!data || !stream || !stream.startsWith(state.symbol.toLowerCase())) return;
  if (stream.includes("@depth")) applyDiff(data);
  else if (stream.endsWith("@trade")) {
    state.trades.unshift({ time: data.T, p: data.p, q: data.q, buy: !data.m });
    state.trades.length = Math.min(state.trades.length, 40);
    window.__microex.trades += 1;
    state.dirty = true;
  } else if (stream.includes("@kline")) {
    const k = data.k, c = { t: k.t, o: +k.o, h: +k.h, l: +k.l, c: +k.c, v: +k.v };
    const last = state.candles[state.candles.length - 1];
    if (last && last.t === c.t) state.candles[state.candles.length - 1] = c; else state.candles.push(c);
    if (state.candles.length > 120) state.candles.shift();
    state.dirty = true;
  }
}

async function pollHealth() {
  try {
    const h = await getJSON("/api/microex/health");
    h.at = performance.now();
    const prev = state.prevHealth;
    if (prev) {
      const dt = (h.at - prev.at) / 1000;
      const acks = h.gateways.reduce((a, g) => a.map((x, i) => x + g.order_to_ack_buckets[i]), h.gateways[0].order_to_ack_buckets.map(() => 0));
      const prevAcks = prev.gateways.reduce((a, g) => a.map((x, i) => x + g.order_to_ack_buckets[i]), prev.gateways[0].order_to_ack_buckets.map(() => 0));
      const delta = acks.map((x, i) => x - prevAcks[i]);
      state.health.push({
        orders: (h.commands - prev.commands) / dt, events: (h.events - prev.events) / dt,
        p50: pct(delta, h.bucket_bounds_us, 0.5), p99: pct(delta, h.bucket_bounds_us, 0.99),
        fill: Math.max(0, ...h.rings.map((r) => r.fill / r.capacity)),
      });
      if (state.health.length > 120) state.health.shift();
      const last = state.health[state.health.length - 1];
      $("k-orders").textContent = fmt(last.orders, 0);
      $("k-events").textContent = fmt(last.events, 0);
      $("k-p50").textContent = last.p50 == null ? "–" : `≤${last.p50} µs`;
      $("k-p99").textContent = last.p99 == null ? "–" : `≤${last.p99} µs`;
      const lag = h.durable_seq ? h.last_seq - h.durable_seq : null;
      $("health-text").textContent = `seq ${h.last_seq.toLocaleString()} · journal ${(h.journal_bytes / 1e6).toFixed(1)} MB` +
        (lag === null ? " · fsync off" : ` · journal lag ${lag} commands`) +
        ` · rings ${h.rings.map((r) => `${r.name} ${r.fill}/${r.capacity}`).join(", ")}` +
        ` · sessions ${h.gateways.reduce((a, g) => a + g.sessions, 0)}`;
      state.dirty = true;
    }
    state.prevHealth = h;
    window.__microex.healthPolls += 1;
  } catch (e) { $("health-text").textContent = `health: ${e.message}`; }
}

// upper bound (µs) of the bucket holding quantile q of a histogram delta
function pct(counts, bounds, q) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) return null;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i];
    if (seen >= q * total) return i < bounds.length ? bounds[i] : Infinity;
  }
  return null;
}

function frame() {
  if (state.dirty) { state.dirty = false; drawLadder(); drawTape(); drawCandles(); drawDepth(); drawHealth(); }
  requestAnimationFrame(frame);
}

function sortedLevels() {
  if (!state.book) return { bids: [], asks: [] };
  const bids = [...state.book.bids].map(([p, q]) => [+p, +q, p, q]).sort((a, b) => b[0] - a[0]);
  const asks = [...state.book.asks].map(([p, q]) => [+p, +q, p, q]).sort((a, b) => a[0] - b[0]);
  return { bids, asks };
}

function drawLadder() {
  const { bids, asks } = sortedLevels();
  const rows = [];
  for (const a of asks.slice(0, 12).reverse()) rows.push(`<tr><td></td><td class="price">${a[2]}</td><td class="ask">${a[3]}</td></tr>`);
  for (const b of bids.slice(0, 12)) rows.push(`<tr><td class="bid">${b[3]}</td><td class="price">${b[2]}</td><td></td></tr>`);
  $("ladder").tBodies[0].innerHTML = rows.join("");
}

function drawTape() {
  $("tape").tBodies[0].innerHTML = state.trades.slice(0, 25).map((t) =>
    `<tr class="${t.buy ? "buy" : "sell"}"><td>${new Date(t.time).toLocaleTimeString()}</td><td>${t.p}</td><td>${t.q}</td></tr>`).join("");
  if (state.trades.length) $("last-price").textContent = `last ${state.trades[0].p}`;
}

function ctx2d(id) {
  const c = $(id), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  g.font = "11px system-ui"; g.fillStyle = "#6b7a8c";
  return [c, g];
}

function drawCandles() {
  const [c, g] = ctx2d("candles");
  const cs = state.candles;
  if (!cs.length) return;
  const lo = Math.min(...cs.map((k) => k.l)), hi = Math.max(...cs.map((k) => k.h));
  const pad = 40, w = (c.width - pad) / Math.max(cs.length, 60);
  const y = (p) => hi === lo ? c.height / 2 : 10 + (c.height - 20) * (hi - p) / (hi - lo);
  cs.forEach((k, i) => {
    const x = i * w + w / 2;
    g.strokeStyle = g.fillStyle = k.c >= k.o ? "#a3be8c" : "#bf616a";
    g.beginPath(); g.moveTo(x, y(k.h)); g.lineTo(x, y(k.l)); g.stroke();
    g.fillRect(x - w * 0.35, Math.min(y(k.o), y(k.c)), w * 0.7, Math.max(1, Math.abs(y(k.o) - y(k.c))));
  });
  g.fillStyle = "#6b7a8c";
  g.fillText(hi.toString(), c.width - pad + 2, 14); g.fillText(lo.toString(), c.width - pad + 2, c.height - 4);
}

function drawDepth() {
  const [c, g] = ctx2d("depth");
  const { bids, asks } = sortedLevels();
  if (!bids.length && !asks.length) { g.fillText("empty book", 10, 20); return; }
  const b = bids.slice(0, 50), a = asks.slice(0, 50);
  const cum = (lv) => { let s = 0; return lv.map(([p, q]) => [p, (s += q)]); };
  const cb = cum(b), ca = cum(a);
  const prices = [...cb, ...ca].map((x) => x[0]);
  const lo = Math.min(...prices), hi = Math.max(...prices), top = Math.max(1e-12, ...[...cb, ...ca].map((x) => x[1]));
  const x = (p) => hi === lo ? c.width / 2 : (c.width - 10) * (p - lo) / (hi - lo) + 5;
  const y = (v) => c.height - 5 - (c.height - 15) * v / top;
  for (const [pts, color] of [[cb, "#a3be8c"], [ca, "#bf616a"]]) {
    if (!pts.length) continue;
    g.strokeStyle = color; g.fillStyle = color + "33";
    g.beginPath(); g.moveTo(x(pts[0][0]), c.height - 5);
    for (const [p, v] of pts) g.lineTo(x(p), y(v));
    g.lineTo(x(pts[pts.length - 1][0]), c.height - 5); g.closePath(); g.fill(); g.stroke();
  }
}

function drawHealth() {
  const [c, g] = ctx2d("health");
  const hs = state.health;
  if (hs.length < 2) { g.fillText("collecting…", 10, 20); return; }
  const series = [["orders/s", (h) => h.orders, "#88c0d0"], ["events/s", (h) => h.events, "#b48ead"]];
  const top = Math.max(1, ...hs.map((h) => Math.max(h.orders, h.events)));
  const x = (i) => 40 + (c.width - 50) * i / 119;
  series.forEach(([name, f, color], j) => {
    g.strokeStyle = color; g.beginPath();
    hs.forEach((h, i) => { const yy = c.height - 20 - (c.height - 40) * f(h) / top; i ? g.lineTo(x(i), yy) : g.moveTo(x(i), yy); });
    g.stroke(); g.fillStyle = color; g.fillText(name, 45 + j * 80, 12);
  });
  const lat = hs.filter((h) => h.p99 != null && isFinite(h.p99));
  if (lat.length) {
    const ltop = Math.max(...lat.map((h) => h.p99));
    g.strokeStyle = "#ebcb8b"; g.beginPath();
    hs.forEach((h, i) => { if (h.p99 == null || !isFinite(h.p99)) return; const yy = c.height - 20 - (c.height - 40) * h.p99 / ltop; g.lineTo(x(i), yy); });
    g.stroke(); g.fillStyle = "#ebcb8b"; g.fillText(`order→ack p99 (max ${ltop} µs)`, 210, 12);
  }
  g.fillStyle = "#6b7a8c"; g.fillText(fmt(top, 0), 2, 24);
}

start().catch((e) => { $("status").textContent = `error: ${e.message}`; });
