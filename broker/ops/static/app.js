// linemq dashboard: polls /api/stats, /api/series, /api/schedules and /api/dlq, looks messages up with
// /api/status, and calls the POST endpoints.
// Every value from the broker goes into the page through textContent or a
// data-* attribute, never as HTML: message texts are arbitrary.
"use strict";

const POLL_MS = 2000;
const DLQ_COUNT = 100;
const TOKEN_KEY = "linemq-token";

const state = { prev: null, prevAt: 0, rates: new Map(), dlqTopic: null, timer: null };

class AuthNeeded extends Error {}

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node[key] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// -- API --------------------------------------------------------------------------

async function api(path, body) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  const init = { headers, cache: "no-store" };
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    showLogin(token ? "That token was refused." : "");
    throw new AuthNeeded();
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || res.status + " " + res.statusText);
  return data;
}

// -- formatting -------------------------------------------------------------------

const fmtInt = (n) => (n === undefined || n === null ? "–" : Number(n).toLocaleString());

function fmtRate(r) {
  if (r === undefined || r === null) return "–";
  return r >= 100 ? Math.round(r).toLocaleString() : r.toFixed(1);
}

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

// Time of day for today's timestamps, date and time for older ones.
function fmtTime(ts) {
  if (typeof ts !== "number") return "–";
  const d = new Date(ts * 1000);
  const pad = (x) => String(x).padStart(2, "0");
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === new Date().toDateString()) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

function fmtDuration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

// Per-second rate of a counter between two polls; null on the first poll or a restart.
function rate(key, now, count) {
  const before = state.prev && state.prev.get(key);
  if (before === undefined || count < before) return null;
  return (count - before) / ((now - state.prevAt) / 1000);
}

// -- rendering --------------------------------------------------------------------

// Update rows in place by key, so buttons are not replaced under the pointer.
// A cell is text, or {node: () => Node, sig: string} rebuilt only when sig changes.
function syncRows(tbody, items, keyOf, cellsOf) {
  const rows = tbody._rows || (tbody._rows = new Map());
  const keep = new Set();
  items.forEach((item, index) => {
    const key = keyOf(item);
    keep.add(key);
    const cells = cellsOf(item);
    let row = rows.get(key);
    if (!row) {
      row = el("tr", { "data-key": key });
      for (const cell of cells) row.append(el("td", { class: cell.cls || "" }));
      rows.set(key, row);
    }
    cells.forEach((cell, i) => {
      const td = row.children[i];
      if (cell.node) {
        if (td.dataset.sig !== cell.sig) {
          td.dataset.sig = cell.sig;
          td.replaceChildren(cell.node());
        }
      } else {
        const text = String(cell.text);
        if (td.textContent !== text) td.textContent = text;
        if (cell.title !== undefined) td.title = cell.title;
        td.className = cell.cls || "";
      }
    });
    if (tbody.children[index] !== row) tbody.insertBefore(row, tbody.children[index] || null);
  });
  for (const [key, row] of rows) {
    if (!keep.has(key)) { row.remove(); rows.delete(key); }
  }
}

function renderBroker(b) {
  const items = [
    ["Uptime", fmtDuration(b.uptime_seconds || 0)],
    ["Connections", fmtInt(b.connections)],
    ["Topics", fmtInt(b.topics)],
    ["Published", fmtInt(b.published)],
    ["Publish/s", fmtRate(state.rates.get("broker:published"))],
    ["Delivered", fmtInt(b.delivered)],
    ["In flight", fmtInt(b.inflight)],
    ["Dead-lettered", fmtInt(b.dead_lettered)],
    ["Failed deliveries", fmtInt(b.failures)],
    ["Subscribers", fmtInt(b.subscribers)],
    ["On disk", b.bytes_on_disk === undefined ? "–" : fmtBytes(b.bytes_on_disk)],
  ];
  $("broker").replaceChildren(...items.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
}

function renderTopics(topics) {
  const names = Object.keys(topics);
  $("topics-empty").hidden = names.length > 0;
  syncRows($("topics").tBodies[0], names, (t) => t, (t) => {
    const f = topics[t];
    return [
      { text: t },
      { text: fmtInt(f.published), cls: "num" },
      { text: fmtRate(state.rates.get("topic:" + t)), cls: "num" },
      { text: f.last_offset ? `${fmtInt(f.first_offset)} – ${fmtInt(f.last_offset)}` : "–", cls: "num" },
      { text: fmtBytes(f.bytes || 0), cls: "num" },
      { text: fmtInt(f.segments), cls: "num" },
      { text: fmtInt(f.subscribers), cls: "num" },
      { text: fmtInt(f.groups), cls: "num" },
    ];
  });
}

// Failed deliveries by kind (durable counts, as STATS gives them).
function failureTitle(g) {
  return `nacks ${fmtInt(g.nacks)}, ack timeouts ${fmtInt(g.ack_timeouts)}, ` +
    `consumer deaths ${fmtInt(g.consumer_deaths)}, terms ${fmtInt(g.terms)}`;
}

// A share as a percentage; null (too few outcomes in the window to say) as a dash.
const fmtShare = (r) => (r === undefined || r === null ? "–" : (r * 100).toFixed(1) + "%");

function renderGroups(groups, window) {
  $("groups-empty").hidden = groups.length > 0;
  const head = $("failure-rate-head");
  head.textContent = `Failure rate (${fmtSpan(window || 0)})`;
  head.title = "Failed deliveries over failures + acks in that window, as /readyz checks it; " +
    "– until a group has 10 outcomes in it";
  syncRows($("groups").tBodies[0], groups, (g) => g.topic + "\n" + g.group, (g) => {
    const paused = Boolean(g.paused);
    return [
      { text: g.topic },
      { text: g.group },
      { text: fmtInt(g.members), cls: "num" },
      { text: fmtInt(g.inflight), cls: "num" },
      { text: fmtInt(g.waiting), cls: "num" },
      { text: fmtInt(g.lag), cls: "num" + (g.lag > 1000 ? " lag-high" : "") },
      { text: fmtRate(state.rates.get("group:" + g.topic + "\n" + g.group)), cls: "num" },
      { text: fmtInt(g.acked), cls: "num" },
      { text: fmtInt(g.dead), cls: "num" },
      { text: fmtInt(g.failures), cls: "num", title: failureTitle(g) },
      { text: fmtInt(g.terms), cls: "num" },
      { text: fmtShare(g.failure_rate), cls: "num" + (g.failure_rate > 0.5 ? " failing" : "") },
      { text: g.filter ? fmtInt(g.filtered) : "–", cls: "num" },
      { text: g.filter ? g.filter.join(" and ") : "–", cls: "filter" },
      { sig: JSON.stringify(g.policy), node: () => policyNode(g.policy), cls: "policy-cell" },
      {
        sig: paused ? "paused" : "running",
        node: () => el("span", { class: "badge " + (paused ? "paused" : "running") },
          paused ? "paused" : "running"),
      },
      {
        sig: paused ? "resume" : "pause",
        node: () => el("button", {
          type: "button",
          class: paused ? "resume" : "pause",
          onclick: () => act(paused ? "/api/groups/resume" : "/api/groups/pause",
            { topic: g.topic, group: g.group },
            () => `${paused ? "resumed" : "paused"} ${g.group} on ${g.topic}`),
        }, paused ? "Resume" : "Pause"),
      },
    ];
  });
}

// A group's effective policy in a few words; its own settings (over the topic's) in bold.
const POLICY_WORDS = {
  max_retries: (v) => `${v} retries`,
  backoff: (v) => {
    const [kind, ...times] = v.split(":");
    return kind === "exponential" ? `backoff ${times.join("–")}` : `backoff ${kind} ${times.join(" ")}`;
  },
  ack_timeout: (v) => `ack ${v}`,
  max_inflight: (v) => `${v} in flight`,
  ordering: (v) => ({ key: "key order", fifo: "FIFO", none: "unordered" })[v] || `ordering ${v}`,
  rate: (v) => (v === "none" ? "" : `rate ${v}`),
  nack_backoff: (v) => (v === "off" ? "NACK now" : ""),
};

function policyNode(policy) {
  if (!policy) return document.createTextNode("–");
  const own = new Set(policy.overrides || []);
  const span = el("span", {
    class: "policy",
    title: Object.entries(policy).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") || "none" : v}`)
      .join(" "),
  });
  const words = Object.entries(POLICY_WORDS)
    .filter(([k]) => policy[k] !== undefined)
    .map(([k, say]) => [k, say(String(policy[k]))])
    .filter(([, text]) => text);
  words.forEach(([k, text], i) => {
    if (i) span.append(" · ");
    span.append(own.has(k) ? el("b", { "data-key": k }, text) : el("span", { "data-key": k }, text));
  });
  return span;
}

function fmtWhen(job) {
  if (job.every) return `every ${job.every}`;
  return `cron ${job.cron}` + (job.tz ? ` (${job.tz})` : " (UTC)");
}

function renderSchedules(jobs) {
  $("schedules-empty").hidden = jobs.length > 0;
  syncRows($("schedules").tBodies[0], jobs, (j) => j.topic + "\n" + j.name, (j) => [
    { text: j.topic },
    { text: j.name },
    { text: fmtWhen(j) },
    { text: fmtTime(j.next) },
    { text: j.last === null ? "never" : fmtTime(j.last) },
    { text: fmtInt(j.fired), cls: "num" },
    { text: fmtBytes(j.bytes || 0), cls: "num" },
    { text: j.options.join(" ") || "–" },
  ]);
}

function renderDlqChoices(topics) {
  const select = $("dlq-topic");
  const bases = Object.keys(topics).filter((t) => t.endsWith(".dlq")).map((t) => t.slice(0, -4));
  if (state.dlqTopic === null && bases.length) state.dlqTopic = bases[0];
  if (state.dlqTopic !== null && !bases.includes(state.dlqTopic)) bases.unshift(state.dlqTopic);
  const wanted = bases.join("\n");
  if (select.dataset.options !== wanted) {
    select.dataset.options = wanted;
    select.replaceChildren(...bases.map((b) => el("option", { value: b }, b)));
  }
  if (state.dlqTopic !== null) select.value = state.dlqTopic;
  const none = state.dlqTopic === null;
  $("replay-all").disabled = none;
  $("purge").disabled = none;
}

function renderLetters(letters) {
  $("letters-empty").hidden = letters.length > 0;
  const topic = state.dlqTopic;
  syncRows($("letters").tBodies[0], letters.slice().reverse(), (d) => String(d.dlq_offset), (d) => {
    const replayed = d.replayed ? `offset ${d.replayed.offset}` : "no";
    return [
      { text: d.dlq_offset, cls: "num" },
      { text: d.id || "–", cls: "id" },
      { text: d.group || "–" },
      { text: fmtInt(d.attempts), cls: "num" },
      { text: d.reason || "–" },
      { text: fmtTime(d.first_delivery_ts) },
      { text: fmtTime(d.last_delivery_ts) },
      { text: fmtTime(d.dead_ts) },
      { text: replayed },
      { text: d.msg === undefined ? "" : d.msg, cls: "msg", title: d.msg === undefined ? "" : d.msg },
      {
        sig: "replay:" + (d.id || d.dlq_id),
        node: () => el("button", {
          type: "button",
          class: "replay",
          "data-id": d.id || d.dlq_id,
          onclick: () => act("/api/dlq/replay", { topic, id: d.id || d.dlq_id },
            replayedText),
        }, "Replay"),
      },
    ];
  });
}

// -- message lookup (STATUS) --------------------------------------------------------

const STATUS_SHOWN = new Set(["group", "state", "attempt", "attempts", "member", "progress", "note"]);

async function lookUp(topic, message) {
  const params = new URLSearchParams({ topic, message });
  try {
    const found = await api("/api/status?" + params);
    $("error").textContent = "";
    $("lookup-summary").textContent =
      `${found.topic} #${found.offset} ${found.id}, published ${fmtTime(found.ts)}`;
    const rows = found.groups.map((g) => {
      const progress = [g.progress === undefined ? "" : g.progress + "%", g.note || ""];
      const detail = Object.entries(g).filter(([k]) => !STATUS_SHOWN.has(k));
      return el("tr", {},
        el("td", {}, g.group),
        el("td", {}, g.state),
        el("td", { class: "num" }, g.attempt || g.attempts || "0"),
        el("td", {}, g.member || ""),
        el("td", {}, progress.join(" ").trim()),
        el("td", {}, detail.map(([k, v]) => `${k}=${k.endsWith("_ts") ? fmtTime(Number(v)) : v}`)
          .join(" ")));
    });
    $("lookup-groups").tBodies[0].replaceChildren(...rows);
    $("lookup-groups").hidden = false;
  } catch (err) {
    $("lookup-groups").hidden = true;
    $("lookup-summary").textContent = "";
    if (!(err instanceof AuthNeeded)) $("error").textContent = String(err.message || err);
  }
}

// -- charts -----------------------------------------------------------------------
// Plain SVG, drawn whole on each poll: 180 points a line, a few lines a chart.

const SVG_NS = "http://www.w3.org/2000/svg";
const CHART = { w: 600, h: 200, left: 52, right: 10, top: 10, bottom: 24 };
const RATE_LINES = [
  ["published", "published"],
  ["delivered", "delivered"],
  ["acked", "acked"],
  ["dead_lettered", "dead-lettered"],
];
const MAX_LAG_LINES = 6;

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// The smallest of 1, 2, 2.5, 5 x 10^n at or above v: round numbers on the y axis.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const exp = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= v) return m * exp;
  return 10 * exp;
}

function fmtSpan(s) {
  if (s >= 3600) return `${+(s / 3600).toFixed(1)} h`;
  if (s >= 60) return `${+(s / 60).toFixed(1)} min`;
  return `${+s.toFixed(1)} s`;
}

function fmtAxis(n) {
  if (n >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${+(n / 1e3).toFixed(1)}k`;
  return String(+n.toFixed(2));
}

// lines: [{name, label, values, cls}], values aligned with times (null: no value).
function drawChart(figure, times, span, lines, fmtValue, emptyText) {
  const { w, h, left, right, top, bottom } = CHART;
  const plotW = w - left - right, plotH = h - top - bottom;
  const end = times.length ? times[times.length - 1] : 0;
  let max = 0;
  for (const line of lines) for (const v of line.values) if (v !== null && v > max) max = v;
  max = niceMax(max);
  const x = (t) => left + ((t - (end - span)) / span) * plotW;
  const y = (v) => top + plotH - (v / max) * plotH;

  const nodes = [];
  for (const frac of [0, 0.5, 1]) {
    const gy = y(max * frac);
    nodes.push(svg("line", { class: "grid", x1: left, x2: w - right, y1: gy, y2: gy }));
    nodes.push(svg("text", { class: "axis", x: left - 6, y: gy + 4, "text-anchor": "end" },
      fmtAxis(max * frac)));
  }
  for (let k = 0; k <= 3; k++) {
    const ago = span * (1 - k / 3);
    nodes.push(svg("text", {
      class: "axis", x: left + (k / 3) * plotW, y: h - 6,
      "text-anchor": k === 0 ? "start" : k === 3 ? "end" : "middle",
    }, ago ? `-${fmtSpan(ago)}` : "now"));
  }
  if (times.length < 2) {
    nodes.push(svg("text", { class: "waiting", x: left + plotW / 2, y: top + plotH / 2,
      "text-anchor": "middle" }, emptyText));
  }
  lines.forEach((line) => {
    let d = "", pen = false;
    line.values.forEach((v, i) => {
      if (v === null || v === undefined || times[i] < end - span) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(times[i]).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (d) {
      nodes.push(svg("path", { class: "line " + line.cls, d, "data-series": line.name },
        svg("title", {}, line.label)));
    }
  });
  figure.querySelector("svg").replaceChildren(...nodes);

  figure.querySelector(".legend").replaceChildren(...lines.map((line) => {
    const last = line.values.length ? line.values[line.values.length - 1] : null;
    return el("li", { "data-series": line.name },
      el("span", { class: "swatch " + line.cls }), line.label + " ",
      el("b", {}, last === null || last === undefined ? "–" : fmtValue(last)));
  }));
}

function renderCharts(series) {
  const span = series.interval * series.samples;
  $("window").textContent = fmtSpan(span);
  const waiting = `collecting samples (one every ${fmtSpan(series.interval)})`;
  const rates = RATE_LINES.map(([name, label], i) => (
    { name, label, values: series.rates[name] || [], cls: "s" + i }));
  drawChart($("rates-chart"), series.times, span, rates, (v) => fmtRate(v) + "/s", waiting);

  // The groups with the most lag in the window; the rest are counted in the legend.
  const peak = (s) => Math.max(0, ...s.values.filter((v) => v !== null));
  const ranked = series.lag.slice().sort((a, b) => peak(b) - peak(a));
  const shown = ranked.slice(0, MAX_LAG_LINES).map((s, i) => ({
    name: s.topic + "\n" + s.group, label: `${s.topic} / ${s.group}`, values: s.values,
    cls: "s" + (i + 4),
  }));
  drawChart($("lag-chart"), series.times, span, shown, fmtInt,
    series.lag.length ? waiting : "no consumer groups");
  if (ranked.length > MAX_LAG_LINES) {
    $("lag-chart").querySelector(".legend").append(
      el("li", { class: "more" }, `+${ranked.length - MAX_LAG_LINES} more groups`));
  }
}

// -- polling and actions ----------------------------------------------------------

async function refresh() {
  try {
    const snap = await api("/api/stats");
    const now = Date.now();
    const counts = new Map([["broker:published", snap.broker.published || 0]]);
    for (const [t, f] of Object.entries(snap.topics)) counts.set("topic:" + t, f.published);
    for (const g of snap.groups) counts.set("group:" + g.topic + "\n" + g.group, g.delivered);
    state.rates = new Map([...counts].map(([k, v]) => [k, rate(k, now, v)]));
    state.prev = counts;
    state.prevAt = now;
    $("user").textContent = snap.user ? "signed in as " + snap.user : "";
    $("logout").hidden = !sessionStorage.getItem(TOKEN_KEY);
    renderBroker(snap.broker);
    renderTopics(snap.topics);
    renderGroups(snap.groups, snap.failure_rate_window);
    renderDlqChoices(snap.topics);
    renderCharts(await api("/api/series"));
    renderSchedules((await api("/api/schedules")).schedules);
    if (state.dlqTopic !== null) {
      const dlq = await api(`/api/dlq?topic=${encodeURIComponent(state.dlqTopic)}&n=${DLQ_COUNT}`);
      if (dlq.topic === state.dlqTopic) renderLetters(dlq.letters);
    } else {
      renderLetters([]);
    }
    $("status").textContent = "live · updated " + new Date(now).toLocaleTimeString();
    $("status").classList.remove("down");
    $("error").textContent = "";
  } catch (err) {
    if (err instanceof AuthNeeded) return;
    $("status").textContent = "disconnected";
    $("status").classList.add("down");
    $("error").textContent = String(err.message || err);
  }
}

// Letters that fail a publish's checks are left in the DLQ; the broker log says why.
function replayedText(r) {
  return `replayed ${r.replayed}` + (r.skipped ? `, skipped ${r.skipped} (see the broker log)` : "");
}

async function act(path, body, describe) {
  try {
    const result = await api(path, body);
    $("flash").textContent = describe(result);
    $("error").textContent = "";
  } catch (err) {
    if (!(err instanceof AuthNeeded)) $("error").textContent = String(err.message || err);
  }
  await refresh();
}

function poll() {
  clearInterval(state.timer);
  state.timer = setInterval(refresh, POLL_MS);
  refresh();
}

function showLogin(message) {
  clearInterval(state.timer);
  $("login").hidden = false;
  $("main").hidden = true;
  $("login-error").textContent = message;
  $("token").focus();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    $("login").hidden = true;
    $("main").hidden = false;
    poll();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  $("lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    lookUp($("lookup-topic").value.trim(), $("lookup-message").value.trim());
  });
  $("dlq-topic").addEventListener("change", (event) => {
    state.dlqTopic = event.target.value;
    $("letters").tBodies[0].replaceChildren();
    $("letters").tBodies[0]._rows = null;
    refresh();
  });
  $("replay-all").addEventListener("click", () => {
    act("/api/dlq/replay", { topic: state.dlqTopic, all: true }, replayedText);
  });
  $("purge").addEventListener("click", () => {
    const topic = state.dlqTopic;
    if (!confirm(`Delete every dead letter of ${topic}? This cannot be undone.`)) return;
    act("/api/dlq/purge", { topic }, (r) => `purged ${r.purged} from ${topic}.dlq`);
  });
  poll();
});
