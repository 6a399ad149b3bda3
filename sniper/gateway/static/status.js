// sniper status page: one EventSource on "events" (relative URL), a full snapshot first, then changes.
// Every value from the bus is written with textContent, never as HTML.
"use strict";

const state = { assets: {}, modules: [], breakers: [], flags: {}, alerts: [], status: {}, connected: false };
let offset = 0; // server clock minus this browser's clock (seconds)
let streamUp = false;

function $(id) { return document.getElementById(id); }

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function now() { return Date.now() / 1000 + offset; }

function age(seconds) {
  if (!(seconds >= 0)) return "-";
  const s = Math.floor(seconds);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
  return Math.floor(s / 86400) + "d" + String(Math.floor(s / 3600) % 24).padStart(2, "0") + "h";
}

function when(ts) {
  if (ts === null || ts === undefined) return "-";
  return new Date(ts * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function clockFrom(msg) {
  if (typeof msg.ts === "number") offset = msg.ts - Date.now() / 1000;
}

function breakersFor(asset, module) {
  return state.breakers.filter((b) => b.module === module && (b.scope === "all" || b.scope === asset));
}

function moduleCell(asset, module, entry) {
  const ms = entry.modules[module];
  const status = ms ? ms.status : "missing";
  const td = el("td", null, "st-" + status);
  td.dataset.asset = asset;
  td.dataset.module = module;
  td.dataset.status = ms ? status : "absent";
  td.appendChild(el("span", ms ? status : "-"));
  if (ms && ms.source && ms.source !== "backend") {
    td.appendChild(el("span", "from " + ms.source, "source"));  // a venue answered (the fallback)
  }
  if (ms && ms.reason && ms.reason !== status) {
    const reason = el("span", ms.reason, "reason");
    reason.title = ms.reason;
    td.appendChild(reason);
  }
  for (const b of breakersFor(asset, module)) {
    const tag = el("span", b.state === "quarantined" ? "quarantined" : "breaker " + b.state, "breaker-tag");
    tag.title = b.module + " " + b.scope + " " + b.state + " until " + when(b.until) + (b.cause ? " (" + b.cause + ")" : "");
    td.appendChild(tag);
  }
  return td;
}

function row(asset) {
  const entry = state.assets[asset];
  const tr = el("tr");
  tr.dataset.asset = asset;
  tr.appendChild(el("th", asset));
  const dir = el("td", entry.direction, "dir-" + entry.direction);
  dir.dataset.field = "direction";
  tr.appendChild(dir);
  const score = el("td", (entry.score >= 0 ? "+" : "") + entry.score.toFixed(3), "num");
  score.dataset.field = "score";
  tr.appendChild(score);
  const conf = el("td", entry.confidence.toFixed(2), "num");
  conf.dataset.field = "confidence";
  tr.appendChild(conf);
  tr.appendChild(el("td", entry.cycle, "num"));
  const ageCell = el("td", age(now() - entry.ts), "num age");
  ageCell.dataset.ts = String(entry.ts);
  ageCell.dataset.field = "age";
  ageCell.title = "signal at " + when(entry.ts);
  tr.appendChild(ageCell);
  const h = entry.health;
  const health = el("td", h ? h.state : "-", h ? "health-" + h.state : "muted");
  health.dataset.field = "health";
  tr.appendChild(health);
  for (const m of state.modules) tr.appendChild(moduleCell(asset, m, entry));
  return tr;
}

function renderHead() {
  const head = $("head");
  while (head.children.length > 7) head.removeChild(head.lastChild);
  for (const m of state.modules) head.appendChild(el("th", m));
}

function renderRows() {
  const body = $("rows");
  body.replaceChildren(...Object.keys(state.assets).sort().map(row));
  $("empty").hidden = Object.keys(state.assets).length > 0;
}

function renderRow(asset) {
  const body = $("rows");
  const fresh = row(asset);
  for (const tr of body.children) {
    if (tr.dataset.asset === asset) { body.replaceChild(fresh, tr); return; }
  }
  renderRows();
}

function renderBreakers() {
  const body = $("breaker-rows");
  body.replaceChildren(...state.breakers.map((b) => {
    const tr = el("tr");
    tr.dataset.module = b.module;
    tr.appendChild(el("td", b.module));
    tr.appendChild(el("td", b.scope));
    tr.appendChild(el("td", b.state));
    tr.appendChild(el("td", when(b.until)));
    const cause = el("td", b.cause || "");
    if (b.detail) cause.title = b.detail;
    tr.appendChild(cause);
    return tr;
  }));
  $("no-breakers").hidden = state.breakers.length > 0;
}

function renderFlags() {
  const list = $("flags");
  list.replaceChildren(...Object.keys(state.flags).sort().map((name) => {
    const on = state.flags[name];
    const li = el("li", name + " " + (on ? "on" : "off"), on ? "on" : "off");
    li.dataset.flag = name;
    return li;
  }));
  const st = state.status || {};
  let note = "";
  if (st.error) note = "status query failing (" + st.error + "): breakers and flags as last known";
  else if (!st.at) note = "no status reply yet";
  $("status-note").textContent = note;
}

function renderAlerts() {
  const list = $("alerts");
  list.replaceChildren(...state.alerts.map((a) => {
    const labels = Object.entries(a.labels || {}).filter(([k]) => k !== "alertname").map(([k, v]) => k + "=" + v).join(" ");
    const li = el("li", a.state + " " + a.name + (labels ? " " + labels : "") + " since " + when(a.starts_at) + (a.summary ? ": " + a.summary : ""), a.state);
    return li;
  }));
  $("no-alerts").hidden = state.alerts.length > 0;
}

function renderLink() {
  const link = $("link");
  const up = streamUp && state.connected;
  link.className = "link " + (up ? "up" : "down");
  link.textContent = !streamUp ? "reconnecting to the gateway…" : state.connected ? "live" : "gateway lost NATS";
  $("source").textContent = state.source === "stream" ? "caught up from " + (state.stream || "the signal stream")
    : state.source === "live" ? "live signals only (no signal stream at start)" : "";
}

function renderAll() {
  renderHead();
  renderRows();
  renderBreakers();
  renderFlags();
  renderAlerts();
  renderLink();
}

function apply(msg) {
  clockFrom(msg);
  switch (msg.type) {
    case "snapshot":
      Object.assign(state, msg);
      renderAll();
      break;
    case "signal": {
      state.assets[msg.asset] = msg.entry;
      const before = state.modules.length;
      state.modules = Array.from(new Set([...state.modules, ...Object.keys(msg.entry.modules)])).sort();
      if (state.modules.length !== before) renderAll(); else renderRow(msg.asset);
      $("empty").hidden = true;
      break;
    }
    case "health":
      if (state.assets[msg.asset]) { state.assets[msg.asset].health = msg.health; renderRow(msg.asset); }
      break;
    case "status":
      state.breakers = msg.breakers; state.flags = msg.flags; state.status = msg.status;
      renderRows(); renderBreakers(); renderFlags();
      break;
    case "alert":
      state.alerts = [msg.alert, ...state.alerts.filter((a) => a.fingerprint !== msg.alert.fingerprint)].slice(0, 50);
      renderAlerts();
      break;
    case "connection":
      state.connected = msg.connected;
      renderLink();
      break;
  }
}

function tick() {
  const t = now();
  for (const cell of document.querySelectorAll("td[data-ts]")) cell.textContent = age(t - Number(cell.dataset.ts));
}

function connect() {
  const source = new EventSource("events");
  source.onopen = () => { streamUp = true; renderLink(); };
  source.onmessage = (event) => {
    streamUp = true;
    try { apply(JSON.parse(event.data)); } catch (err) { console.error("bad event", err); }
  };
  source.onerror = () => { streamUp = false; renderLink(); }; // EventSource reconnects by itself ("retry")
}

document.addEventListener("DOMContentLoaded", () => {
  renderAll();
  connect();
  setInterval(tick, 1000);
});
