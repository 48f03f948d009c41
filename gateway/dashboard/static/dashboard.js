// The gateway's dashboard: follows /dashboard/events and draws tables and SVG sparklines.
// Plain DOM (names from the server are set as text, never as HTML); no library, no network
// request but this origin's event stream.
"use strict";

const MAX_POINTS = 300;
const MIN_SPAN = 60; // points a sparkline spans at least: a young one grows from the right
const history = new Map();

function remember(key, value) {
  let points = history.get(key);
  if (!points) { points = []; history.set(key, points); }
  points.push(value === null || value === undefined ? 0 : value);
  if (points.length > MAX_POINTS) points.shift();
  return points;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined) continue; // a field the viewer may not see (a URL)
    if (name === "class") node.className = value; else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

function sparkline(points, kind) {
  const width = 110, height = 24;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark" + (kind ? " " + kind : ""));
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  if (points.length < 2) return svg;
  const top = Math.max(...points) || 1;
  const step = width / (Math.max(points.length, MIN_SPAN) - 1);
  const start = width - step * (points.length - 1);
  const xy = points.map((v, i) =>
    `${(start + i * step).toFixed(1)},${(height - 1 - (v / top) * (height - 3)).toFixed(1)}`);
  const area = document.createElementNS(SVG, "polygon");
  area.setAttribute("points", `${start.toFixed(1)},${height} ${xy.join(" ")} ${width},${height}`);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", xy.join(" "));
  svg.append(area, line);
  return svg;
}

const dash = "–";
function rate(v) { return v === null || v === undefined ? dash : v >= 100 ? v.toFixed(0) : v.toFixed(1); }
function secs(v) {
  if (v === null || v === undefined) return dash;
  return v < 1 ? `${(v * 1000).toFixed(v < 0.01 ? 2 : 0)} ms` : `${v.toFixed(2)} s`;
}
function pct(v) { return v === null || v === undefined ? dash : `${(v * 100).toFixed(1)} %`; }
function usd(v) { return v === null || v === undefined ? dash : v >= 100 ? `$${v.toFixed(0)}` : `$${v.toFixed(v >= 1 ? 2 : 4)}`; }
function bar(share, hot) {
  const fill = el("span");
  fill.style.width = `${Math.min(Math.max(share || 0, 0), 1) * 100}%`;
  const level = share >= (hot || 0.95) ? " hot" : share >= 0.8 ? " warm" : "";
  return el("span", { class: "bar" + level }, fill);
}
function num(text, cls) { return el("span", { class: "num" + (cls ? " " + cls : "") }, text); }

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function drawGroups(groups) {
  fill(document.querySelector("#groups tbody"), groups.map((g) => {
    const rps = remember(`rps:${g.name}`, g.rps);
    const p99 = remember(`p99:${g.name}`, g.p99_s);
    const errors = g.error_rate ? "bad" : "";
    return el("tr", { "data-group": g.name },
      el("td", { class: "name" }, g.name),
      el("td", {}, num(rate(g.rps), "rps"), sparkline(rps)),
      el("td", { class: "latency" }, `${secs(g.p50_s)} / ${secs(g.p99_s)}`),
      el("td", {}, sparkline(p99)),
      el("td", { class: "ttft" }, `${secs(g.ttft_p50_s)} / ${secs(g.ttft_p99_s)}`),
      el("td", { class: "errors " + errors }, pct(g.error_rate)),
      el("td", { class: "cache" }, pct(g.cache_hit_rate)),
      el("td", { class: "tokens" }, rate(g.tokens_s)),
      el("td", { class: "in-flight" }, String(g.in_flight)));
  }));
}

function drawBackends(backends) {
  fill(document.querySelector("#backends tbody"), backends.map((b) => {
    const flight = remember(`flight:${b.name}`, b.in_flight);
    const kv = b.kv_cache === null ? dash : [bar(b.kv_cache), pct(b.kv_cache)];
    return el("tr", { "data-backend": b.name },
      el("td", { class: "name", title: b.url }, b.name),
      el("td", {}, b.group),
      el("td", {}, el("span", { class: "pill state " + b.state.replace(" ", "-") }, b.state)),
      el("td", {}, num(String(b.in_flight), "in-flight"), sparkline(flight)),
      el("td", { class: "kv" }, ...[kv].flat()),
      el("td", { class: "prefix" }, pct(b.prefix_hit_rate)),
      el("td", {}, rate(b.tokens_s)));
  }));
}

function drawQueues(queues) {
  const box = document.getElementById("queues");
  if (!queues.length) return;
  box.replaceChildren(...queues.map((q) => {
    const bands = Object.entries(q.waiting).sort((a, b) => Number(b[0]) - Number(a[0]));
    const most = Math.max(1, ...bands.map(([, n]) => n));
    const capacity = q.capacity === null ? "no cap" : `${q.admitted} / ${q.capacity} admitted`;
    return el("div", { class: "queue", "data-queue": q.group },
      el("div", { class: "head" },
        el("strong", {}, q.group), el("span", { class: "muted" }, `${q.scheduler} · ${capacity}`),
        q.saturated ? el("span", { class: "pill down" }, "saturated") : el("span", { class: "pill up" }, "flowing")),
      ...(bands.length ? bands.map(([band, n]) => el("div", { class: "band" },
        el("span", { class: "label" }, `priority ${band}`), bar(n / most, 2), `${n} waiting`))
        : [el("div", { class: "band" }, "nothing waiting")]));
  }));
}

function drawTenants(tenants) {
  fill(document.querySelector("#tenants tbody"), tenants.map((t) => {
    const spend = remember(`spend:${t.tenant}`, t.spend_per_min);
    const budgets = t.budgets.length ? t.budgets.map((b) => el("span", { class: "budget" },
      bar(b.used, 1), `${b.window}: ${usd(b.spent_usd)} of ${usd(b.limit_usd)}, ${usd(b.remaining_usd)} left`))
      : [el("span", { class: "muted" }, "no budget")];
    return el("tr", { "data-tenant": t.tenant },
      el("td", { class: "name" }, t.tenant),
      el("td", { class: "spend" }, usd(t.spend_per_min)),
      el("td", {}, sparkline(spend, "spend")),
      el("td", { class: "budgets" }, ...budgets));
  }));
}

function drawAlerts(alerts) {
  const list = document.getElementById("alerts");
  if (!alerts.length) return;
  list.replaceChildren(...alerts.map((a) => {
    const when = new Date(a.at * 1000).toLocaleTimeString();
    const who = a.tenant ? `tenant ${a.tenant}` : a.key_id ? `key ${a.key_id}` : a.scope;
    return el("li", { class: "alert" + (a.threshold >= 1 ? " full" : "") },
      el("span", { class: "when" }, when),
      el("span", { class: "level" }, `${Math.round(a.threshold * 100)} %`),
      `${who} · window ${a.window}: ${usd(a.spent_usd)} of ${usd(a.limit_usd)}`);
  }));
}

function drawNodes(nodes) {
  const box = document.getElementById("nodes");
  if (!nodes.length) return;
  box.className = "nodes";
  box.replaceChildren(...nodes.map((n) => el("div", { class: "node", "data-node": n.node },
    el("div", { class: "head" }, el("strong", {}, n.node),
      n.reachable ? el("span", { class: "muted" }, `${n.engines} engines · ${usd(n.usd_per_hour)}/h`)
        : el("span", { class: "pill down" }, "unreachable")),
    ...n.gpus.map((g) => {
      const util = remember(`gpu:${n.node}:${g.index}`, g.utilization_pct);
      const memory = g.memory_total_mib ? g.memory_used_mib / g.memory_total_mib : 0;
      const extra = [g.temperature_c === null ? null : `${g.temperature_c.toFixed(0)} °C`,
        g.power_w === null ? null : `${g.power_w.toFixed(0)} W`].filter(Boolean).join(" · ");
      return el("div", { class: "gpu" }, el("span", { class: "muted" }, `#${g.index}`),
        el("span", {}, `${g.utilization_pct === null ? dash : g.utilization_pct.toFixed(0) + " %"} util`,
          sparkline(util, "util"), " ", bar(memory), `${(g.memory_used_mib / 1024).toFixed(1)} / ${(g.memory_total_mib / 1024).toFixed(0)} GiB`),
        el("span", { class: "muted" }, extra));
    }))));
}

function draw(view) {
  const fleet = document.getElementById("fleet");
  fleet.textContent = view.fleet.shared ? `fleet: ${view.fleet.replicas} replicas` : "this replica only";
  fleet.className = "badge" + (view.fleet.shared ? " fleet" : "");
  drawGroups(view.groups);
  drawBackends(view.backends);
  drawQueues(view.queues);
  drawTenants(view.tenants);
  drawAlerts(view.alerts);
  drawNodes(view.nodes);
  document.getElementById("updated").textContent =
    `updated ${new Date(view.at * 1000).toLocaleTimeString()} · every ${view.interval_s} s`;
  document.body.dataset.seq = String(view.seq);
}

// Live while updates keep coming; a stream the server ends is reopened by the browser at once
// (resuming after the last update it saw), so only silence counts as lost.
const status = document.getElementById("status");
let lastUpdate = 0;
let interval = 1;
const events = new EventSource("/dashboard/events");
events.addEventListener("update", (event) => {
  const view = JSON.parse(event.data);
  lastUpdate = Date.now();
  interval = view.interval_s;
  status.className = "status live";
  draw(view);
});
setInterval(() => {
  if (lastUpdate && Date.now() - lastUpdate > Math.max(5, 4 * interval) * 1000) {
    status.className = "status lost";
    document.getElementById("updated").textContent =
      `no update since ${new Date(lastUpdate).toLocaleTimeString()}`;
  }
}, 1000);
