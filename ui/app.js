// Carbonio Monitoring web UI: dashboards (Grafana JSON rendered with uPlot),
// the log explorer, alerts, targets and status. Plain JavaScript, no build
// step: everything the browser needs is embedded in the binary.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const h = (tag, attrs = {}, ...kids) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid != null && kid !== false) el.append(kid.nodeType ? kid : String(kid));
  }
  return el;
};

let session = null; // {user, role, csrf}
let refreshTimer = null;
const charts = [];

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, params = {}, method = "GET") {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => qs.append(k, x));
    else if (v != null) qs.append(k, v);
  }
  const opts = { method, credentials: "same-origin", headers: { "X-Requested-With": "carbonio-ui" } };
  let url = path;
  if (method === "GET") { if ([...qs].length) url += "?" + qs; }
  else {
    opts.body = qs;
    opts.headers["X-CSRF-Token"] = session ? session.csrf : "";
  }
  const resp = await fetch(url, opts);
  if (resp.status === 401) { session = null; render(); throw new ApiError(401, "session expired"); }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok || body.status === "error") throw new ApiError(resp.status, body.error || resp.statusText);
  return body.data !== undefined ? body.data : body;
}

// ---------------------------------------------------------------- time

const RANGES = ["5m", "15m", "1h", "6h", "12h", "24h", "2d", "7d", "30d"];
const UNITS = { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7, w: 6.048e8 };

function durMs(s) {
  const m = /^(\d+)([smhdw])$/.exec(s);
  return m ? Number(m[1]) * UNITS[m[2]] : NaN;
}

// "now", "now-1h" or epoch milliseconds.
function timeMs(s) {
  if (s === "now" || s == null) return Date.now();
  const m = /^now-(\d+[smhdw])$/.exec(s);
  if (m) return Date.now() - durMs(m[1]);
  const n = Number(s);
  return Number.isFinite(n) ? n : Date.parse(s);
}

function fmtTime(ms, withDate = true) {
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  const t = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  return withDate ? `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${t}` : t;
}

function toLocalInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 6e4);
  return d.toISOString().slice(0, 16);
}

// The range and refresh controls shared by dashboards and the explorer.
function timePicker(state, onChange) {
  const sel = h("select", { "aria-label": "time range", id: "range" },
    RANGES.map((r) => h("option", { value: r, selected: state.from === "now-" + r && state.to === "now" }, "Last " + r)),
    h("option", { value: "abs", selected: !String(state.from).startsWith("now") }, "Absolute…"));
  const from = h("input", { type: "datetime-local", value: toLocalInput(timeMs(state.from)), "aria-label": "from" });
  const to = h("input", { type: "datetime-local", value: toLocalInput(timeMs(state.to)), "aria-label": "to" });
  const abs = h("span", { hidden: sel.value !== "abs" }, from, " to ", to,
    h("button", { class: "plain", onclick: () => onChange({ from: String(Date.parse(from.value)), to: String(Date.parse(to.value)) }) }, "Apply"));
  sel.onchange = () => {
    if (sel.value === "abs") { abs.hidden = false; return; }
    onChange({ from: "now-" + sel.value, to: "now" });
  };
  const refresh = h("select", { "aria-label": "auto refresh", id: "refresh" },
    ["off", "10s", "30s", "1m", "5m"].map((r) => h("option", { value: r, selected: state.refresh === r }, r === "off" ? "No refresh" : "Every " + r)));
  refresh.onchange = () => onChange({ refresh: refresh.value });
  return h("span", {}, sel, abs, " ", refresh);
}

function armRefresh(state, redraw) {
  clearInterval(refreshTimer);
  const ms = durMs(state.refresh || "off");
  if (ms > 0) refreshTimer = setInterval(redraw, ms);
}

// ---------------------------------------------------------------- routing

function route() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  return { path: path || "/", params: Object.fromEntries(new URLSearchParams(query || "")) };
}

function go(path, params) {
  const qs = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v != null && v !== ""));
  const hash = "#" + path + ([...qs].length ? "?" + qs : "");
  if (location.hash === hash) render(); else location.hash = hash;
}

window.addEventListener("hashchange", () => render());

async function render() {
  clearInterval(refreshTimer);
  charts.splice(0).forEach((c) => c.destroy());
  if (tail) { tail.close(); tail = null; }
  const app = $("#app");
  if (!session) {
    try { session = await (await fetch("/api/v1/session", { credentials: "same-origin", headers: { "X-Requested-With": "carbonio-ui" } })).json().then((b) => b.data || null); }
    catch { session = null; }
  }
  if (!session) { app.replaceChildren(loginView()); return; }
  const { path, params } = route();
  const page = path.split("/")[1] || "dashboards";
  app.replaceChildren(topBar(page), h("div", { id: "page" }));
  const el = $("#page");
  try {
    if (page === "d") await dashboardView(el, path.split("/")[2], params);
    else if (page === "logs") await logsView(el, params);
    else if (page === "alerts") await alertsView(el);
    else if (page === "targets") await targetsView(el);
    else if (page === "status") await statusView(el);
    else await dashboardList(el);
  } catch (e) {
    if (e.status !== 401) el.append(h("p", { class: "err pad" }, String(e.message || e)));
  }
}

function topBar(page) {
  const link = (name, href, label) => h("a", { href, class: page === name ? "on" : null }, label);
  return h("header", { class: "top" },
    h("span", { class: "brand" }, "Carbonio Monitoring"),
    h("nav", {},
      link("dashboards", "#/", "Dashboards"), link("logs", "#/logs", "Logs"),
      link("alerts", "#/alerts", "Alerts"), link("targets", "#/targets", "Targets"),
      link("status", "#/status", "Status")),
    h("span", { class: "user" }, `${session.user} (${session.role})`,
      h("button", { id: "logout", onclick: logout }, "Log out")));
}

// ---------------------------------------------------------------- login

function loginView() {
  const msg = h("p", { class: "err", id: "login-error" });
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "login" },
    h("h1", {}, "Carbonio Monitoring"),
    h("label", { for: "username" }, "User"), user,
    h("label", { for: "password" }, "Password"), pass,
    h("button", { type: "submit", id: "login" }, "Log in"), msg);
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    msg.textContent = "";
    const resp = await fetch("/login", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Requested-With": "carbonio-ui" },
      body: JSON.stringify({ username: user.value, password: pass.value }),
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) { msg.textContent = body.error || resp.statusText; return; }
    session = body.data;
    render();
  };
  return form;
}

async function logout() {
  await fetch("/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": session.csrf, "X-Requested-With": "carbonio-ui" } });
  session = null;
  // One render: through the hash change, or directly when already there.
  if (location.hash !== "#/") location.hash = "#/";
  else render();
}

// ---------------------------------------------------------------- units

function fmtValue(v, unit, decimals) {
  if (v == null || Number.isNaN(v)) return "–";
  const d = decimals != null ? decimals : Number.isInteger(v) || Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  const scaled = (x, steps, names, base) => {
    let i = 0;
    while (Math.abs(x) >= base && i < names.length - 1) { x /= base; i++; }
    return x.toFixed(i ? 1 : d) + " " + names[i];
  };
  switch (unit) {
    case "percentunit": return (v * 100).toFixed(1) + "%";
    case "percent": return v.toFixed(1) + "%";
    case "bytes": case "decbytes": return scaled(v, 0, ["B", "KiB", "MiB", "GiB", "TiB", "PiB"], 1024);
    case "kbytes": return scaled(v * 1024, 0, ["B", "KiB", "MiB", "GiB", "TiB"], 1024);
    case "s": return v < 1 ? (v * 1000).toFixed(1) + " ms" : v < 120 ? v.toFixed(1) + " s" : v < 7200 ? (v / 60).toFixed(1) + " min" : v < 172800 ? (v / 3600).toFixed(1) + " h" : (v / 86400).toFixed(1) + " d";
    case "ms": return v < 1000 ? v.toFixed(1) + " ms" : (v / 1000).toFixed(2) + " s";
    case "reqps": return scaled(v, 0, ["req/s", "K req/s", "M req/s"], 1000);
    case "ops": return scaled(v, 0, ["ops/s", "K ops/s", "M ops/s"], 1000);
    default: return Math.abs(v) >= 1e4 ? scaled(v, 0, ["", "K", "M", "G", "T"], 1000).trim() : v.toFixed(d);
  }
}

function thresholdColor(v, fc) {
  const steps = (fc && fc.thresholds && fc.thresholds.steps) || [];
  let color = null;
  for (const s of steps) if (s.value == null || v >= s.value) color = s.color;
  const named = { green: "#2e7d32", red: "#c62828", orange: "#ef6c00", yellow: "#f9a825", blue: "#1565c0" };
  return named[color] || color || "#1d2530";
}

// ---------------------------------------------------------------- dashboards

async function dashboardList(el) {
  const list = await api("/api/v1/dashboards");
  el.append(h("div", { class: "bar" }, h("h1", {}, "Dashboards")),
    h("main", {}, h("div", { class: "cards" }, list.map((d) =>
      h("div", { class: "card" }, h("h2", {}, h("a", { href: `#/d/${d.uid}` }, d.title)),
        h("div", { class: "muted" }, d.description || ""),
        h("div", { class: "muted" }, `${d.panels} panels`))))));
}

const PALETTE = ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#c62828", "#00838f", "#9e9d24", "#ad1457", "#4e342e", "#37474f"];

function interpolate(expr, vars, stepS) {
  const rate = Math.max(4 * 15, stepS + 15);
  let out = expr.replace(/\$__rate_interval/g, rate + "s").replace(/\$__interval/g, stepS + "s");
  for (const [name, value] of Object.entries(vars)) {
    out = out.replace(new RegExp(`\\$\\{${name}(?::\\w+)?\\}|\\[\\[${name}\\]\\]|\\$${name}\\b`, "g"), value);
  }
  return out;
}

function legend(fmt, metric) {
  if (!fmt) {
    const name = metric.__name__ || "";
    const labels = Object.entries(metric).filter(([k]) => k !== "__name__").map(([k, v]) => `${k}="${v}"`);
    return labels.length ? `${name}{${labels.join(", ")}}` : name || "value";
  }
  return fmt.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, k) => metric[k] || "");
}

async function variableOptions(v, range) {
  const q = (v.query && (v.query.query || v.query)) || "";
  const m = /^label_values\((?:(.*),\s*)?(\w+)\)$/.exec(String(q).trim());
  if (!m) return [];
  const params = { start: range.start / 1000, end: range.end / 1000 };
  if (m[1]) params["match[]"] = m[1];
  return api(`/api/v1/label/${m[2]}/values`, params);
}

async function dashboardView(el, uid, params) {
  const dash = await api(`/api/v1/dashboards/${encodeURIComponent(uid)}`);
  const state = { from: params.from || (dash.time && dash.time.from) || "now-1h", to: params.to || "now", refresh: params.refresh || "off" };
  const range = { start: timeMs(state.from), end: timeMs(state.to) };
  const vars = {};
  const varBar = h("span", {});
  const setState = (change) => go(`/d/${uid}`, { ...params, ...state, ...change });
  for (const v of (dash.templating && dash.templating.list) || []) {
    if (v.type !== "query") continue;
    const options = await variableOptions(v, range).catch(() => []);
    const chosen = params["var-" + v.name] || (v.includeAll ? "$__all" : options[0] || "");
    vars[v.name] = chosen === "$__all" ? ".*" : chosen.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const sel = h("select", { "aria-label": v.name, "data-var": v.name },
      v.includeAll ? h("option", { value: "$__all", selected: chosen === "$__all" }, "All") : null,
      options.map((o) => h("option", { value: o, selected: o === chosen }, o)));
    sel.onchange = () => setState({ ["var-" + v.name]: sel.value });
    varBar.append(h("label", { class: "muted" }, " " + (v.label || v.name) + " "), sel);
  }
  el.append(h("div", { class: "bar" }, h("h1", {}, dash.title), varBar, h("span", { class: "grow" }),
    timePicker(state, setState)));
  const grid = h("div", { class: "grid" });
  el.append(h("main", {}, grid));
  const draws = [];
  for (const p of dash.panels || []) {
    const g = p.gridPos || { x: 0, y: 0, w: 12, h: 8 };
    const body = h("div", { class: "pb" });
    const panel = h("section", { class: "panel" + (p.type === "row" ? " row" : ""), "data-panel": p.title || "",
      style: `grid-column: ${g.x + 1} / span ${g.w}; grid-row: ${g.y + 1} / span ${g.h};` },
      h("div", { class: "ph", title: p.description || "" }, p.title || ""), body);
    grid.append(panel);
    if (p.type !== "row") draws.push(drawPanel(p, body, vars));
  }
  const redraw = () => {
    const r = { start: timeMs(state.from), end: timeMs(state.to) };
    return Promise.all(draws.map((d) => d(r).catch((e) => {
      // A panel's error stays in its panel.
      return e;
    })));
  };
  window.__panelsDone = false;
  let started = performance.now();
  await Promise.all(draws.map((d) => d(range).catch(() => null)));
  window.__panelsDone = performance.now() - started;
  armRefresh(state, redraw);
}

function drawPanel(p, body, vars) {
  return async (range) => {
    const fc = (p.fieldConfig && p.fieldConfig.defaults) || {};
    const unit = fc.unit;
    const width = Math.max(body.clientWidth - 4, 100);
    const step = Math.max(Math.round((range.end - range.start) / 1000 / Math.max(width / 3, 50)), 15);
    const targets = (p.targets || []).filter((t) => t.expr && !t.hide);
    try {
      if (p.type === "timeseries" || p.type === "graph") {
        // Evaluation times whole seconds, counted back from the end so the
        // newest point is now and every series lines up.
        const end = Math.floor(range.end / 1000);
        const start = end - Math.floor((end - range.start / 1000) / step) * step;
        const results = await Promise.all(targets.map((t) => api("/api/v1/query_range", {
          query: interpolate(t.expr, vars, step), start, end, step,
        }).then((d) => d.result.map((s) => ({ name: legend(t.legendFormat, s.metric), values: s.values })))));
        drawChart(body, results.flat(), start, end, step, unit, fc);
      } else if (p.type === "table") {
        const results = await Promise.all(targets.map((t) => api("/api/v1/query", { query: interpolate(t.expr, vars, step), time: range.end / 1000 })));
        drawTable(body, results.flatMap((r) => r.result || []), unit);
      } else if (["stat", "gauge", "bargauge"].includes(p.type)) {
        const results = await Promise.all(targets.map((t) => api("/api/v1/query", { query: interpolate(t.expr, vars, step), time: range.end / 1000 })
          .then((d) => (d.resultType === "scalar" ? [{ metric: {}, value: d.result }] : d.result).map((s) => ({ name: legend(t.legendFormat, s.metric), value: Number(s.value[1]) })))));
        const values = results.flat();
        if (p.type === "bargauge") drawBars(body, values, unit, fc);
        else if (p.type === "gauge") drawGauges(body, values, unit, fc);
        else drawStats(body, values, unit, fc);
      } else if (p.type === "logs") {
        // The target is a log search, not PromQL.
        const limit = (p.options && p.options.limit) || 50;
        const pages = await Promise.all(targets.map((t) => api("/api/v1/logs/query", {
          query: interpolate(t.expr, vars, step), start: range.start / 1000, end: range.end / 1000, limit,
        })));
        drawLogLines(body, pages.flatMap((d) => d.lines).slice(0, limit));
      } else {
        body.replaceChildren(h("p", { class: "muted" }, `panel type ${p.type} is not shown here`));
      }
    } catch (e) {
      if (e.status === 401) throw e;
      body.replaceChildren(h("p", { class: "err" }, String(e.message || e)));
    }
  };
}

function noData(body) { body.replaceChildren(h("p", { class: "muted", "data-empty": "" }, "No data")); }

function drawChart(body, series, start, end, step, unit, fc) {
  for (const c of charts.filter((c) => c.root.parentNode === body)) { c.destroy(); charts.splice(charts.indexOf(c), 1); }
  if (!series.length) return noData(body);
  const xs = [];
  for (let t = start; t <= end; t += step) xs.push(t);
  const index = new Map(xs.map((t, i) => [t, i]));
  const data = [xs];
  for (const s of series.slice(0, 40)) {
    const ys = new Array(xs.length).fill(null);
    for (const [t, v] of s.values) { const i = index.get(Math.round(t)); if (i != null) ys[i] = Number(v); }
    data.push(ys);
  }
  body.replaceChildren();
  const shown = Math.min(series.length, 40);
  // Room for the legend: one line per four series.
  const legendHeight = 22 * Math.ceil(shown / 4);
  const opts = {
    width: Math.max(body.clientWidth - 16, 100), height: Math.max(body.clientHeight - legendHeight - 12, 60),
    series: [{}, ...series.slice(0, 40).map((s, i) => ({ label: s.name, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false,
      fill: PALETTE[i % PALETTE.length] + "18", value: (u, v) => fmtValue(v, unit) }))],
    axes: [{}, { values: (u, vals) => vals.map((v) => fmtValue(v, unit)), size: 64 }],
    scales: { y: { range: (u, lo, hi) => [fc.min != null ? fc.min : Math.min(0, lo), fc.max != null ? fc.max : hi || 1] } },
    legend: { show: true, live: false },
    cursor: { drag: { x: false, y: false } },
  };
  charts.push(new uPlot(opts, data, body));
  // Time to first chart since navigation start (the browser tests report it).
  if (!window.__firstChart) window.__firstChart = Math.round(performance.now());
}

function drawStats(body, values, unit, fc) {
  if (!values.length) return noData(body);
  body.replaceChildren(h("div", { class: "stat" }, values.slice(0, 12).map((v) =>
    h("div", {}, h("div", { class: "v", style: `color: ${thresholdColor(v.value, fc)}` }, fmtValue(v.value, unit)),
      values.length > 1 ? h("div", { class: "l" }, v.name) : null))));
}

function drawGauges(body, values, unit, fc) {
  if (!values.length) return noData(body);
  const min = fc.min != null ? fc.min : 0, max = fc.max != null ? fc.max : unit === "percentunit" ? 1 : 100;
  body.replaceChildren(h("div", { class: "stat" }, values.slice(0, 6).map((v) => {
    const frac = Math.max(0, Math.min(1, (v.value - min) / (max - min || 1)));
    const a = Math.PI * (1 - frac), x = 60 + 50 * Math.cos(a), y = 60 - 50 * Math.sin(a);
    const svg = `<svg width="120" height="70" viewBox="0 0 120 70"><path d="M10 60 A50 50 0 0 1 110 60" stroke="#e3e8ee" stroke-width="10" fill="none"/>` +
      `<path d="M10 60 A50 50 0 0 1 ${x.toFixed(1)} ${y.toFixed(1)}" stroke="${thresholdColor(v.value, fc)}" stroke-width="10" fill="none"/></svg>`;
    const g = h("div", {}); g.innerHTML = svg;
    return h("div", {}, g, h("div", { class: "v", style: "font-size:18px;text-align:center" }, fmtValue(v.value, unit)), h("div", { class: "l" }, v.name));
  })));
}

function drawBars(body, values, unit, fc) {
  if (!values.length) return noData(body);
  const max = fc.max != null ? fc.max : Math.max(...values.map((v) => v.value), 1e-9);
  const min = fc.min != null ? fc.min : 0;
  body.replaceChildren(h("div", { class: "bars" }, values.sort((a, b) => b.value - a.value).slice(0, 30).map((v) =>
    h("div", { class: "b" }, h("span", { title: v.name }, v.name),
      h("div", { class: "track" }, h("div", { class: "fill", style: `width:${Math.max(0, Math.min(100, 100 * (v.value - min) / (max - min || 1)))}%;background:${thresholdColor(v.value, fc)}` })),
      h("span", {}, fmtValue(v.value, unit))))));
}

function drawLogLines(body, lines) {
  if (!lines.length) return noData(body);
  body.replaceChildren(h("table", { class: "t lines" }, h("tbody", {}, lines.map((l) => h("tr", {},
    h("td", { style: "white-space:nowrap" }, fmtTime(Date.parse(l.timestamp))), h("td", {}, l.host), h("td", {}, l.app),
    h("td", { class: "sev" + l.severity }, l.severity_name || ""),
    h("td", { class: "msg" }, l.message.length > 300 ? l.message.slice(0, 300) + " …" : l.message))))));
}

function drawTable(body, rows, unit) {
  if (!rows.length) return noData(body);
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r.metric)))].filter((c) => c !== "__name__").sort();
  body.replaceChildren(h("table", { class: "t" },
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)), h("th", {}, "value"))),
    h("tbody", {}, rows.slice(0, 500).map((r) => h("tr", {}, cols.map((c) => h("td", {}, r.metric[c] || "")),
      h("td", {}, fmtValue(Number(r.value[1]), unit)))))));
}

// ---------------------------------------------------------------- logs

let tail = null;
const SEVERITIES = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
const PAGE = 100;
const SHOWN_CHARS = 2000;

function quoteValue(v) { return /^[\w.@\/-]+$/.test(v) ? v : JSON.stringify(v); }

async function logsView(el, params) {
  const state = { q: params.q || "", from: params.from || "now-1h", to: params.to || "now", live: params.live === "1", refresh: params.refresh || "off" };
  const setState = (change) => go("/logs", { ...state, live: state.live ? "1" : null, ...change });
  const input = h("input", { id: "logq", value: state.q, placeholder: 'host:mbox1 app:postfix/* "status=deferred"', "aria-label": "log search" });
  const caret = h("div", { class: "caret", id: "logq-error" });
  const form = h("form", { class: "q" }, input, h("button", { type: "submit", id: "run" }, "Search"));
  form.onsubmit = (ev) => { ev.preventDefault(); setState({ q: input.value }); };
  const live = h("input", { type: "checkbox", id: "live", checked: state.live });
  live.onchange = () => setState({ live: live.checked ? "1" : null });
  const range = { start: timeMs(state.from), end: timeMs(state.to) };
  const win = { query: state.q, start: (range.start / 1000).toFixed(3), end: (range.end / 1000).toFixed(3) };
  const exportLink = (fmt) => h("a", { href: "/api/v1/logs/query?" + new URLSearchParams({ ...win, format: fmt }), download: `logs.${fmt}` }, fmt.toUpperCase());
  el.append(h("div", { class: "bar" }, h("h1", {}, "Logs"), form, timePicker(state, setState),
    h("label", {}, live, " Live tail"), h("span", { class: "muted" }, "Export ", exportLink("ndjson"), " ", exportLink("csv"))),
  h("div", { class: "bar", style: "padding-top:0;padding-bottom:4px" }, caret));
  const facets = h("aside", { class: "facets" });
  const hist = h("div", { class: "card", id: "histogram", style: "height:150px;padding:6px" });
  const table = h("tbody", {});
  const more = h("button", { id: "more", hidden: true }, "Load more");
  const count = h("span", { class: "muted" });
  el.append(h("main", {}, h("div", { class: "explore" }, facets, h("div", {}, hist,
    h("div", { class: "card", style: "margin-top:12px;padding:0" }, h("table", { class: "t lines" },
      h("thead", {}, h("tr", {}, h("th", { style: "width:165px" }, "time"), h("th", {}, "host"), h("th", {}, "app"), h("th", {}, "severity"), h("th", {}, "message"))), table)),
    h("p", {}, more, " ", count)))));
  const addFilter = (field, value) => setState({ q: `${state.q} ${field}:${quoteValue(String(value))}`.trim() });
  try {
    await Promise.all([
      drawHistogram(hist, state, range, setState),
      drawFacets(facets, win, addFilter),
      loadPage(table, more, count, win, null, addFilter),
    ]);
  } catch (e) {
    if (e.status === 401) throw e;
    showSearchError(caret, e.message);
    return;
  }
  if (state.live) startTail(table, state.q, range.end, addFilter);
  else armRefresh(state, () => render());
}

function showSearchError(caret, message) {
  const m = /at position (\d+)/.exec(message);
  caret.textContent = m ? " ".repeat(Number(m[1])) + "^ " + message : message;
}

async function drawHistogram(el, state, range, setState) {
  const d = await api("/api/v1/logs/histogram", { query: state.q, start: range.start / 1000, end: range.end / 1000 });
  const xs = d.buckets.map((b) => b[0]), ys = d.buckets.map((b) => b[1]);
  el.replaceChildren();
  if (!xs.length) { el.append(h("p", { class: "muted" }, "No lines in this range")); return; }
  const opts = {
    width: Math.max(el.clientWidth - 12, 200), height: 130,
    series: [{}, { label: "lines", stroke: "#1565c0", fill: "#1565c055", paths: uPlot.paths.bars({ size: [0.9, 40] }) }],
    scales: { x: { time: true, range: () => [range.start / 1000, range.end / 1000] } },
    axes: [{}, { size: 50 }], legend: { show: false },
    cursor: { drag: { x: true, y: false } },
    hooks: { setSelect: [(u) => {
      if (u.select.width < 3) return;
      const from = u.posToVal(u.select.left, "x"), to = u.posToVal(u.select.left + u.select.width, "x");
      setState({ from: String(Math.round(from * 1000)), to: String(Math.round(to * 1000)) });
    }] },
  };
  charts.push(new uPlot(opts, [xs, ys], el));
}

async function drawFacets(el, win, addFilter) {
  const lists = await Promise.all(["host", "app", "severity"].map((field) =>
    api("/api/v1/logs/fields", { ...win, field, limit: 8 }).then((d) => [field, d.values])));
  el.replaceChildren(...lists.map(([field, values]) => h("div", { class: "card", "data-facet": field }, h("h3", {}, field),
    values.length ? values.map((v) => h("a", { href: "#", onclick: (e) => { e.preventDefault(); addFilter(field, v.value); } },
      h("span", {}, field === "severity" ? SEVERITIES[v.value] || String(v.value) : String(v.value || "–")),
      h("span", { class: "muted" }, v.count))) : h("span", { class: "muted" }, "none"))));
}

async function loadPage(table, more, count, win, cursor, addFilter) {
  more.disabled = true;
  const d = await api("/api/v1/logs/query", { ...win, limit: PAGE, cursor });
  for (const line of d.lines) table.append(...lineRows(line, addFilter));
  count.textContent = `${table.querySelectorAll("tr.line").length} lines shown`;
  more.hidden = !d.next_cursor;
  more.disabled = false;
  more.onclick = () => loadPage(table, more, count, win, d.next_cursor, addFilter);
}

function lineRows(line, addFilter, extraClass = "") {
  const msg = line.message.length > SHOWN_CHARS ? line.message.slice(0, SHOWN_CHARS) + ` … (${line.message.length} characters)` : line.message;
  const row = h("tr", { class: "line " + extraClass },
    h("td", {}, fmtTime(Date.parse(line.timestamp))), h("td", {}, line.host), h("td", {}, line.app),
    h("td", { class: "sev" + line.severity }, line.severity_name || ""), h("td", { class: "msg" }, msg));
  const detail = h("tr", { class: "detail", hidden: true }, h("td", { colspan: 5 }));
  row.onclick = () => {
    if (!detail.hidden) { detail.hidden = true; return; }
    detail.hidden = false;
    const fields = ["host", "app", "procid", "msgid", "severity", "facility", "source"];
    const kv = h("div", { class: "kv" }, fields.filter((f) => line[f] !== "" && line[f] != null).map((f) => {
      const shown = f === "severity" ? line.severity_name : f === "facility" ? line.facility_name : line[f];
      return h("a", { href: "#", title: "add a filter", onclick: (e) => { e.preventDefault(); e.stopPropagation(); addFilter(f, shown); } }, `${f}: ${shown}`);
    }));
    let sd = "";
    try { sd = line.structured_data ? JSON.stringify(JSON.parse(line.structured_data), null, 2) : ""; } catch { sd = line.structured_data; }
    const full = h("pre", {}, line.message);
    const ctx = h("div", {});
    detail.firstChild.replaceChildren(kv, full, sd ? h("pre", {}, sd) : null,
      h("button", { class: "plain", onclick: (e) => { e.stopPropagation(); showContext(ctx, line, addFilter); } }, "Show context"), ctx);
  };
  return [row, detail];
}

// The lines just before and after `line` from the same host and app.
async function showContext(el, line, addFilter, n = 10) {
  const q = `host:${quoteValue(line.host)} app:${quoteValue(line.app)}`;
  const t = Date.parse(line.timestamp) / 1000;
  const [before, after] = await Promise.all([
    api("/api/v1/logs/query", { query: q, start: t - 3600, end: t, limit: n + 1 }),
    api("/api/v1/logs/query", { query: q, start: t + 0.000001, end: t + 3600, limit: 1000 }),
  ]);
  const body = h("tbody", {});
  const shownAfter = after.lines.slice(-n);
  for (const l of shownAfter) body.append(...lineRows(l, addFilter, "ctx"));
  for (const l of before.lines) body.append(...lineRows(l, addFilter, l.timestamp === line.timestamp && l.message === line.message ? "" : "ctx"));
  el.replaceChildren(h("table", { class: "t lines" }, body),
    h("button", { class: "plain", onclick: (e) => { e.stopPropagation(); showContext(el, line, addFilter, n * 3); } }, "Load more context"));
}

// New lines from the end of the range shown, newest on top.
function startTail(table, q, fromMs, addFilter) {
  window.__tailOpen = false;
  tail = new EventSource("/api/v1/logs/tail?" + new URLSearchParams({ query: q, start: (fromMs / 1000).toFixed(3) }));
  tail.onopen = () => { window.__tailOpen = true; };
  tail.onmessage = (ev) => {
    const line = JSON.parse(ev.data);
    const [row, detail] = lineRows(line, addFilter);
    table.prepend(row, detail);
    while (table.children.length > 2000) table.lastChild.remove();
  };
}

// ---------------------------------------------------------------- alerts, targets, status

function labelPills(labels) {
  return Object.entries(labels || {}).filter(([k]) => k !== "alertname").map(([k, v]) => h("span", { class: "pill" }, `${k}=${v}`));
}

async function alertsView(el) {
  const d = await api("/api/v1/alerts");
  const alerts = d.alerts.sort((a, b) => (a.state === b.state ? 0 : a.state === "firing" ? -1 : 1));
  el.append(h("div", { class: "bar" }, h("h1", {}, "Alerts"), h("span", { class: "muted" }, `${alerts.filter((a) => a.state === "firing").length} firing, ${alerts.filter((a) => a.state === "pending").length} pending`)),
    h("main", {}, h("div", { class: "card" }, alerts.length ? h("table", { class: "t", id: "alerts" },
      h("thead", {}, h("tr", {}, ["state", "alert", "labels", "summary", "since", "value"].map((c) => h("th", {}, c)))),
      h("tbody", {}, alerts.map((a) => h("tr", {}, h("td", { class: a.state }, a.state), h("td", {}, a.labels.alertname),
        h("td", {}, labelPills(a.labels)), h("td", {}, (a.annotations && (a.annotations.summary || a.annotations.description)) || ""),
        h("td", {}, a.activeAt ? fmtTime(Date.parse(a.activeAt)) : ""), h("td", {}, a.value))))) : h("p", { class: "muted" }, "No alert is firing or pending."))));
}

async function targetsView(el) {
  const d = await api("/api/v1/targets");
  const jobs = {};
  for (const t of d.activeTargets) (jobs[t.scrapePool] = jobs[t.scrapePool] || []).push(t);
  el.append(h("div", { class: "bar" }, h("h1", {}, "Targets")),
    h("main", {}, Object.keys(jobs).length ? Object.entries(jobs).sort().map(([job, ts]) => h("div", { class: "card", style: "margin-bottom:12px", "data-job": job },
      h("h2", {}, `${job} (${ts.filter((t) => t.health === "up").length}/${ts.length} up)`),
      h("table", { class: "t" }, h("thead", {}, h("tr", {}, ["endpoint", "health", "labels", "last scrape", "duration", "error"].map((c) => h("th", {}, c)))),
        h("tbody", {}, ts.map((t) => h("tr", {}, h("td", {}, t.scrapeUrl), h("td", { class: t.health }, t.health), h("td", {}, labelPills(t.labels)),
          h("td", {}, t.lastScrape ? fmtTime(Date.parse(t.lastScrape)) : ""), h("td", {}, t.lastScrapeDuration != null ? fmtValue(t.lastScrapeDuration, "s") : ""),
          h("td", { class: "err" }, t.lastError || ""))))))) : h("p", { class: "muted" }, "No scrape target.")));
}

async function statusView(el) {
  const [build, config, status] = await Promise.all([
    api("/api/v1/status/buildinfo"), api("/api/v1/status/config").catch(() => ({ yaml: "" })), api("/api/v1/status/storage").catch(() => null),
  ]);
  const rows = (obj) => h("table", { class: "t" }, h("tbody", {}, Object.entries(obj).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, String(v))))));
  const storage = status ? rows(status) : h("p", { class: "muted" }, "Storage figures come from the collector (`run`).");
  el.append(h("div", { class: "bar" }, h("h1", {}, "Status")),
    h("main", {}, h("div", { class: "cards" }, h("div", { class: "card", id: "build" }, h("h2", {}, "Build"), rows(build)),
      h("div", { class: "card", id: "storage" }, h("h2", {}, "Storage and ingest"), storage)),
      h("h2", {}, "Configuration"), h("pre", { class: "cfg" }, config.yaml || "")));
}

render();
