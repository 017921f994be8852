// llmux dashboard: the residency event stream (GET /v1/admin/events) drawn as a VRAM bar and
// tables, with the admin actions. Plain script, no framework, no build step, nothing from a CDN.
//
// The admin key: a browser cannot put an Authorization header on a page navigation, and a cookie
// would be sent by the browser on its own (so any site could make it act: CSRF). The key typed
// into the form is kept in this tab's sessionStorage (cleared when the tab closes) and sent as a
// bearer header on every request. EventSource cannot send headers and a key in a URL lands in
// logs and the history, so the stream is read with fetch() and its SSE frames are parsed here.
// Everything from the server is written with textContent, never as HTML.
//
// Remote upstreams (backend: openai) are not in the residency stream: their state comes from a
// health poll and their relays, so the script polls GET /v1/admin/upstreams every few seconds.
"use strict";

const KEY = "llmux.adminKey";
const state = { snapshot: null, models: new Map(), loading: new Map(), draining: new Set(), swaps: [], log: [] };
const IN_VRAM = new Set(["loading", "ready", "serving", "evicting", "unparking"]);  // parked: host RAM only
let stream = null;
let retryMs = 500;
const UPSTREAMS_EVERY_MS = 3000;
let upstreamsTimer = null;
let upstreamsRound = 0;  // a sign-out or a new sign-in makes an older poll's answer stale

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function key() { return sessionStorage.getItem(KEY); }

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { Authorization: `Bearer ${key()}`, ...(options.headers || {}) } });
  if (response.status === 401 || response.status === 403) { signOut("That key is not an admin key."); throw new Error("unauthorised"); }
  return response;
}

async function errorText(response) {
  try { return (await response.json()).error.message; } catch { return `HTTP ${response.status}`; }
}

// ---- sign in / out ------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const typed = $("login-key").value.trim();
  $("login-error").textContent = "";
  const response = await fetch("/v1/admin/models", { headers: { Authorization: `Bearer ${typed}` } });
  if (!response.ok) { $("login-error").textContent = await errorText(response); return; }
  sessionStorage.setItem(KEY, typed);
  $("login-key").value = "";
  start();
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY);
  if (stream) stream.abort();
  stream = null;
  stopUpstreams();
  $("dashboard").hidden = true;
  $("logout").hidden = true;
  $("login-panel").hidden = false;
  $("login-error").textContent = message;
  connection("signed out", "off");
}

function start() {
  $("login-panel").hidden = true;
  $("dashboard").hidden = false;
  $("logout").hidden = false;
  connect();
  refreshUsage();
  stopUpstreams();
  refreshUpstreams(upstreamsRound);
}

function connection(text, kind) {
  $("connection").textContent = text;
  $("connection").className = `pill ${kind}`;
}

// ---- the event stream ---------------------------------------------------------------------

async function connect() {
  stream = new AbortController();
  const mine = stream;
  connection("connecting", "");
  try {
    const response = await api("/v1/admin/events", { signal: mine.signal, headers: { Accept: "text/event-stream" } });
    if (!response.ok) throw new Error(await errorText(response));
    connection("live", "on");
    retryMs = 500;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) apply(JSON.parse(data));  // comment-only frames are keep-alives
      }
    }
  } catch (error) {
    if (mine.signal.aborted || !key()) return;
  }
  if (stream !== mine || !key()) return;
  // The server ends a stream after limits.request_timeout_s, or on restart: reconnect, and the
  // next snapshot brings everything up to date.
  connection("reconnecting", "off");
  setTimeout(() => { if (stream === mine && key()) connect(); }, retryMs);
  retryMs = Math.min(retryMs * 2, 10000);
}

function apply(event) {
  logEvent(event);
  const model = state.models.get(event.model);
  switch (event.type) {
    case "snapshot":
      state.snapshot = event;
      state.models = new Map(event.models.map((m) => [m.id, m]));
      state.loading = new Map(Object.entries(event.loading || {}));
      state.swaps = event.recent_swaps.slice();
      state.draining = new Set((event.swapping ? event.swapping.victims : []).map((v) => v.model)
        .filter((id) => state.models.get(id) && state.models.get(id).state !== "unloaded"));
      break;
    case "state_changed":
      if (!model) break;
      model.state = event.state;
      state.snapshot.used_gb = event.used_gb;
      model.host_gb = event.host_gb;
      if (event.event === "load" || event.event === "unpark") {
        state.loading.set(event.model, { since: event.at, expected_s: event.expected_s });
      } else state.loading.delete(event.model);
      if (event.event === "loaded") {
        if (event.previous === "unparking") model.unparks = (model.unparks || 0) + 1; else model.loads += 1;
        model.last_error = null; model.broken = false;
      }
      if (event.event === "load_failed") { model.last_error = event.error; model.broken = true; }
      if (event.state === "unloaded") state.draining.delete(event.model);
      break;
    case "lease": if (model) model.leases = event.leases; break;
    case "waiting": if (model) model.waiting = event.waiting; state.snapshot.queue_depth = event.queue_depth; break;
    case "swap_started": for (const v of event.victims) state.draining.add(v.model); state.snapshot.swaps = event.swap; break;
    case "swap_finished":
      state.swaps.push(event.record);
      state.swaps = state.swaps.slice(-20);
      for (const v of event.record.victims) state.draining.delete(v.model);
      break;
    case "footprint":
      if (model) { model.vram_gb = event.vram_gb; model.measured = true; }
      state.snapshot.used_gb = event.used_gb;
      break;
    case "pinned": if (model) model.pinned = event.pinned; break;
    default: break;
  }
  render();
}

function logEvent(event) {
  const what = event.type === "snapshot" ? `${event.resync ? "resync " : ""}snapshot: ${event.models.length} models`
    : event.type === "swap_started" ? `swap #${event.swap} started: load ${event.target || "nothing"}, evict ${event.victims.map((v) => v.model).join(", ") || "nothing"}`
    : event.type === "swap_finished" ? `swap #${event.record.swap} ${event.record.outcome} in ${event.record.duration_s} s`
    : [event.type, event.model, event.event, event.state, event.leases, event.waiting].filter((x) => x !== undefined && x !== null).join(" ");
  state.log.unshift(`${new Date(event.at * 1000).toLocaleTimeString()} #${event.seq} ${what}`);
  state.log.length = Math.min(state.log.length, 100);
}

// ---- drawing --------------------------------------------------------------------------------

let pending = false;
function render() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; draw(); });
}

function shown(m) { return state.draining.has(m.id) && m.state !== "evicting" ? "draining" : m.state; }

function draw() {
  const snap = state.snapshot;
  if (!snap) return;
  const models = [...state.models.values()];
  const budget = snap.budget_gb;
  $("vram-text").textContent = `${snap.used_gb.toFixed(2)} of ${budget} GB used`;
  const bar = $("vram-bar");
  bar.replaceChildren(...models.filter((m) => IN_VRAM.has(m.state)).map((m) => {
    const s = shown(m);
    const seg = el("div", { class: `segment ${s}`, "data-model": m.id, "data-state": s,
      title: `${m.id}: ${s}, ${m.vram_gb} GB${m.measured ? " (measured)" : " (estimate)"}` }, `${m.id} ${m.vram_gb} GB`);
    seg.style.width = `${Math.max(0, (m.vram_gb / budget) * 100)}%`;
    return seg;
  }));
  const resident = models.filter((m) => IN_VRAM.has(m.state));
  const free = Math.max(0, budget - snap.used_gb);
  $("vram-list").replaceChildren(...resident.map((m) => el("span", { class: "resident", "data-model": m.id },
    el("span", { class: `swatch ${shown(m)}` }), ` ${m.id} ${m.vram_gb} GB ${shown(m)}`)),
  el("span", { class: "resident muted" }, ` free ${free.toFixed(2)} GB`));
  const parked = models.filter((m) => m.host_gb > 0);
  $("host-list").textContent = snap.host_budget_gb > 0
    ? `host RAM (warm tier): ${parked.reduce((a, m) => a + m.host_gb, 0).toFixed(2)} of ${snap.host_budget_gb} GB` +
      (parked.length ? ` — ${parked.map((m) => `${m.id} ${m.host_gb} GB ${m.state}`).join(", ")}` : " — nothing parked")
    : "";
  $("queue-text").textContent = `${snap.queue_depth} waiting, ${snap.swaps} swaps`;
  $("models").tBodies[0].replaceChildren(...models.map(modelRow));
  $("swaps").tBodies[0].replaceChildren(...state.swaps.slice().reverse().map((s) => el("tr", { "data-swap": s.swap },
    el("td", { class: "num" }, s.swap), el("td", {}, s.target || "—"),
    el("td", {}, s.victims.map((v) => `${v.model} (${v.reason})`).join(", ") || "—"),
    el("td", { title: s.error || "" }, s.outcome), el("td", { class: "num" }, s.duration_s.toFixed(2)),
    el("td", {}, new Date(s.at * 1000).toLocaleTimeString()))));
  $("events").replaceChildren(...state.log.map((line) => el("li", {}, line)));
}

function modelRow(m) {
  const s = shown(m);
  const stateCell = el("td", {}, el("span", { class: `state ${s}`, "data-testid": "state" }, s));
  if (m.pinned) stateCell.append(el("span", { class: "badge" }, "pinned"));
  if (m.broken) stateCell.append(el("span", { class: "badge bad", title: m.last_error || "" }, "broken"));
  const actions = el("td", {},
    button(m, "load", "Load", m.state !== "unloaded" || m.broken),
    button(m, "unload", "Unload", m.state !== "ready" && m.state !== "serving"),
    m.pinned ? button(m, "unpin", "Unpin", false) : button(m, "pin", "Pin", false));
  if (m.broken) actions.append(button(m, "reset", "Reset", false));
  return el("tr", { "data-model": m.id },
    el("td", {}, m.id), el("td", {}, m.type),
    stateCell,
    el("td", { class: "num", title: m.measured ? "measured" : `estimate (configured ${m.estimate_gb} GB)` },
      `${m.vram_gb}${m.measured ? "" : "*"}`),
    el("td", { class: "num" }, m.leases), el("td", { class: "num" }, m.waiting),
    el("td", {}, progress(m)), el("td", { class: "muted" }, m.virtual.join(", ")), actions);
}

function progress(m) {
  const load = state.loading.get(m.id);
  if (!load || (m.state !== "loading" && m.state !== "unparking")) return m.last_error ? el("span", { class: "error" }, m.last_error) : "";
  const elapsed = Math.max(0, Date.now() / 1000 - load.since);
  if (!load.expected_s) return el("span", {}, el("progress", {}), ` ${elapsed.toFixed(1)} s`);
  // Runtimes report no fraction while loading: the estimate is elapsed time over the model's
  // measured average load time.
  const bar = el("progress", { max: load.expected_s, value: Math.min(elapsed, load.expected_s) });
  return el("span", {}, bar, ` ${elapsed.toFixed(1)} / ~${load.expected_s.toFixed(1)} s`);
}

function button(m, action, label, disabled) {
  const b = el("button", { type: "button", disabled, "data-action": action, "data-model": m.id }, label);
  b.addEventListener("click", () => act(b, m.id, action));
  return b;
}

async function act(b, model, action) {
  b.disabled = true;
  $("action-error").textContent = "";
  try {
    const response = await api(`/v1/admin/models/${encodeURIComponent(model)}/${action}`, { method: "POST" });
    if (!response.ok) $("action-error").textContent = `${action} ${model}: ${await errorText(response)}`;
  } catch (error) {
    if (key()) $("action-error").textContent = `${action} ${model}: ${error.message}`;
  }
  render();
}

// ---- remote upstreams (GET /v1/admin/upstreams, polled) -------------------------------------

function stopUpstreams() {
  clearTimeout(upstreamsTimer);
  upstreamsTimer = null;
  upstreamsRound += 1;
}

async function refreshUpstreams(round) {
  try {
    const response = await api("/v1/admin/upstreams");
    if (round !== upstreamsRound) return;
    if (response.status === 404) { $("upstreams-panel").hidden = true; return; }  // a server without the endpoint
    if (!response.ok) throw new Error(await errorText(response));
    const body = await response.json();
    if (round !== upstreamsRound) return;
    drawUpstreams(body.upstreams);
    $("upstreams-error").textContent = "";
  } catch (error) {
    if (round !== upstreamsRound || !key()) return;
    $("upstreams-error").textContent = `upstreams: ${error.message}`;  // the rows keep their last state
  }
  if (round === upstreamsRound && key()) upstreamsTimer = setTimeout(() => refreshUpstreams(round), UPSTREAMS_EVERY_MS);
}

function drawUpstreams(upstreams) {
  $("upstreams-panel").hidden = upstreams.length === 0;  // no remote model configured
  const down = upstreams.filter((u) => u.state === "down").length;
  $("upstreams-text").textContent = `${upstreams.length - down} of ${upstreams.length} up` +
    (upstreams.some((u) => u.state === "unknown") ? " (some not polled yet)" : "");
  $("upstreams").tBodies[0].replaceChildren(...upstreams.map((u) => el("tr", { "data-upstream": u.id, "data-state": u.state },
    el("td", {}, u.id), el("td", {}, u.type),
    el("td", {}, el("span", { class: `state ${u.state}`, "data-testid": "state" }, u.state)),
    el("td", { class: "num", "data-testid": "in-flight" }, u.in_flight),
    el("td", {}, u.url), el("td", { class: "muted" }, u.model),
    el("td", { "data-testid": "last-error" }, u.last_error ? el("span", { class: "error" }, u.last_error) : ""),
    el("td", {}, u.checked_at ? new Date(u.checked_at * 1000).toLocaleTimeString() : "not yet"),
    el("td", { class: "muted" }, u.virtual.join(", ")))));
}

// ---- per-key usage (GET /v1/admin/usage, where the server has a usage store) ---------------

async function refreshUsage() {
  const box = $("usage");
  try {
    const response = await api("/v1/admin/usage?group_by=client,model");  // all days so far, per key and model
    if (response.status === 404) {
      box.replaceChildren(el("p", { class: "muted", "data-testid": "usage-unavailable" },
        "unavailable: this server keeps no per-key usage (GET /v1/admin/usage answered 404)"));
      return;
    }
    if (!response.ok) throw new Error(await errorText(response));
    box.replaceChildren(usageTable(await response.json()));
  } catch (error) {
    if (key()) box.replaceChildren(el("p", { class: "error" }, `usage: ${error.message}`));
    return;
  }
  if (key()) setTimeout(refreshUsage, 15000);
}

function usageTable(body) {
  const rows = Array.isArray(body) ? body : (body.data || body.usage || body.rows || []);
  if (!rows.length) return el("p", { class: "muted" }, "no usage recorded yet");
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v) => el("td", {}, typeof v === "object" && v !== null ? JSON.stringify(v) : (v ?? ""));
  const tbody = el("tbody", {}, ...rows.map((r) => el("tr", {}, ...columns.map((c) => cell(r[c])))));
  const head = el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", {}, c))));
  return el("table", { "data-testid": "usage-table" }, head, tbody);
}

// ---- start ---------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", signIn);
  $("logout").addEventListener("click", () => signOut());
  setInterval(() => { if (state.loading.size) render(); }, 500);  // the load progress moves
  if (key()) start();
});
