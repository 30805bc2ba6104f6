// The web inspector: one more browser replica of a space, built only on the public package
// API (open, list, subscribe, onMessage, presence, conflicts, resolve, status,
// subscribeCollections), and the
// monitor view (monitor.js). Embedded in the native host's binary and served at its API
// port's `/`: it dials the WebSocket port of the host that served it (`/inspector/host.json`)
// and connects at once. `?url=&space=&name=&view=` override the form; a token is read from the
// URL fragment (`#token=...`, never sent to a server) or typed into the form, never a query
// (a `token` in the query string is ignored: it would land in server logs and history).
import init, { open } from "/pkg/wasm_client.js";
import { startMonitor } from "/inspector/monitor.js";

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids.flat()) if (k != null) e.append(k instanceof Node ? k : String(k));
  return e;
};
const json = (v) => JSON.stringify(v);
const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "—");

let db = null;
let selected = null;
let renderQueued = false;
const changed = new Set();

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

// Reads are promises (documents live in IndexedDB); renders never overlap, and one asked for
// while another runs follows it.
let rendering = null;
let renderAgain = false;

async function render() {
  if (!db) return;
  if (rendering) {
    renderAgain = true;
    return;
  }
  rendering = (async () => {
    try {
      await renderCollections();
      await renderDocs();
      await renderConflicts();
      renderPresence();
    } catch (e) {
      console.warn("inspector: render failed", e);
    }
  })();
  await rendering;
  rendering = null;
  if (renderAgain) {
    renderAgain = false;
    scheduleRender();
  }
}

async function renderCollections() {
  const names = await db.collections();
  if (selected && !names.includes(selected)) names.push(selected);
  if (!selected && names.length) selected = names[0];
  const counts = await Promise.all(names.map(async (c) => (await db.list(c, undefined, 1000)).length));
  $("#collections").replaceChildren(
    ...names.map((c, i) => {
      const n = counts[i];
      return el("li", { class: c === selected ? "active" : "", "data-collection": c,
        onclick: () => { selected = c; scheduleRender(); } },
        el("span", {}, c), el("span", { class: "n" }, n >= 1000 ? "1000+" : n));
    }),
  );
}

async function renderDocs() {
  $("#docs-title").textContent = selected ? `Documents · ${selected}` : "Documents";
  $("#policy").disabled = !selected;
  if (!selected) return $("#docs tbody").replaceChildren();
  $("#policy").value = db.policy(selected);
  const rows = (await db.list(selected, undefined, 500)).map((d) =>
    el("tr", { class: `doc${changed.has(`${d.collection}/${d.id}`) ? " flash" : ""}`, "data-id": d.id,
      onclick: () => edit(d) },
      el("td", {}, d.id, " ", d.conflict ? el("span", { class: "tag conflict" }, "conflict") : null),
      el("td", {}, el("code", { title: json(d.value) }, json(d.value))),
      el("td", {}, time(d.stamp?.wall))));
  changed.clear();
  $("#docs tbody").replaceChildren(...rows);
}

function edit(d) {
  const f = $("#editor");
  f.id.value = d.id;
  f.value.value = JSON.stringify(d.value, null, 2);
}

let conflictsShown = null;

async function renderConflicts() {
  const all = await db.conflicts();
  // Rebuilt only when the conflicts change: a status tick must not wipe an edit in progress.
  const signature = JSON.stringify(all);
  if (signature === conflictsShown) return;
  conflictsShown = signature;
  $("#conflict-count").textContent = all.length;
  $("#conflict-count").className = all.length ? "badge hot" : "badge";
  if (!all.length) return $("#conflicts").replaceChildren(el("p", { class: "empty" }, "No open conflicts."));
  $("#conflicts").replaceChildren(...all.map(conflictCard));
}

function conflictCard(c) {
  const fields = [...new Set(c.sides.flatMap((s) => Object.keys(s.value ?? {})))].sort();
  const shown = c.sides.find((s) => s.dot.replica === c.shown.replica && s.dot.counter === c.shown.counter) ?? c.sides[0];
  const head = el("tr", {}, el("th", {}, "field"),
    c.sides.map((s, i) => el("th", {}, el("span", { class: `tag ${s.tier}` }, s.tier), ` side ${i + 1} · `,
      s.dot.replica.slice(-4), " · ", time(s.stamp.wall))));
  const body = fields.map((f) => el("tr", {}, el("td", {}, f),
    c.sides.map((s) => el("td", { class: c.fields.includes(f) ? "diff" : "" },
      s.value == null ? "(deleted)" : f in s.value ? json(s.value[f]) : "—"))));
  const editBox = el("textarea", { rows: 4, "data-testid": "resolve-edit" }, JSON.stringify(shown.value ?? {}, null, 2));
  const msg = el("span", { class: "msg" });
  const resolve = async (value) => {
    try {
      await db.resolve(c.collection, c.id, value);
      msg.textContent = "resolved";
    } catch (e) {
      msg.textContent = e.message;
      msg.className = "msg error";
    }
  };
  return el("div", { class: "conflict", "data-key": `${c.collection}/${c.id}` },
    el("h3", {}, `${c.collection} / ${c.id}`),
    el("table", {}, el("thead", {}, head), el("tbody", {}, body)),
    el("div", { class: "keep" },
      c.sides.map((s, i) => el("button", { class: "secondary", "data-testid": `keep-${i}`,
        onclick: () => resolve(s.value) }, `Keep side ${i + 1} (${s.tier})`))),
    editBox,
    el("div", { class: "buttons" },
      el("button", { "data-testid": "save-edit", onclick: () => {
        try { resolve(JSON.parse(editBox.value)); } catch (e) { msg.textContent = `not JSON: ${e.message}`; msg.className = "msg error"; }
      } }, "Save edit"), msg));
}

function renderPresence() {
  // The engine lists each connection with the tier of the replica at its far end; this page's
  // own link is shown as what it is: this (local) browser, linked to that side.
  const me = db.replica;
  const entries = db.presence().map((e) => (e.node === me
    ? { ...e, tier: "local", name: `${e.name || "this page"} (this page, linked to ${e.tier})` } : e));
  const side = (tier) => {
    const who = entries.filter((e) => e.tier === tier);
    return el("div", { class: "side" }, el("span", { class: `tag ${tier}` }, tier),
      who.length ? who.map((e) => el("div", { class: "who" }, e.name, " ", el("small", {}, `${e.kind} · since ${time(e.since)}`)))
        : el("div", { class: "empty" }, "nobody"));
  };
  $("#presence").replaceChildren(side("local"), side("cloud"));
}

function renderStatus(s) {
  const state = !s.online ? "offline" : s.syncing || s.pending ? "syncing" : "synced";
  $("#status").dataset.state = state;
  const parts = [
    s.online ? `online (${s.peerTier ?? "?"})` : "offline",
    s.pending ? `${s.pending} pending` : "synced",
    `last cloud ack ${time(s.lastCloudAck)}`,
  ];
  if (s.incoming) parts.push(`${s.incoming} incoming`);
  if (s.error) parts.push(`⚠ ${s.error}`);
  $("#status-text").textContent = parts.join(" · ");
  renderHolds(s);
}

/** What this store replicates: the whole space, or its collection patterns (and a change
 *  under way, and patterns still being dropped); a partial store can add one. */
function renderHolds(s) {
  const holds = s.collections ? s.collections.join(", ") || "nothing but _config" : "the whole space";
  const parts = [holds];
  if (s.replicating) parts.push(`changing to ${s.replicating.join(", ")}`);
  if (s.forgetting?.length) parts.push(`dropping ${s.forgetting.join(", ")}`);
  $("#holds").textContent = parts.join(" · ");
  $("#replicate").hidden = !s.collections;
}

function addMessage(m, offset) {
  const li = el("li", { "data-offset": offset }, el("time", {}, time(m.stamp.wall)),
    el("span", { class: "ch" }, `#${m.channel}`), json(m.payload));
  $("#messages").prepend(li);
}

async function connect(opts) {
  if (db) await db.close();
  db = null;
  conflictsShown = null;
  try {
    db = await open(opts);
  } catch (e) {
    $("#status-text").textContent = `cannot open: ${e.message}`;
    return;
  }
  db.subscribe("*", (d) => { changed.add(`${d.collection}/${d.id}`); scheduleRender(); });
  db.onConflict(scheduleRender);
  db.onPresence(scheduleRender);
  db.onMessage(addMessage);
  db.onStatus((s) => { renderStatus(s); scheduleRender(); });
  renderStatus(db.status());
  window.inspectorDb = db; // for tests and the console
  render();
}

function formOptions() {
  const f = $("#connect");
  const o = { url: f.url.value.trim(), space: f.space.value.trim(), name: f.name.value.trim() || "inspector" };
  if (f.token.value.trim()) o.token = f.token.value.trim();
  const collections = f.collections.value.split(",").map((c) => c.trim()).filter(Boolean);
  if (collections.length) {
    o.collections = collections;
    // A store of part of a space stays one: it gets its own IndexedDB database.
    o.db = `sacred-bridge-inspector-part-${o.space}`;
  }
  return o;
}

let view = "docs";
let monitor = null;

/** The page's own URL: the form's non-secret fields and the view (the token stays out). */
function rememberInUrl() {
  const f = $("#connect");
  const q = new URLSearchParams({ url: f.url.value.trim(), space: f.space.value.trim(),
    name: f.name.value.trim(), view });
  if (f.collections.value.trim()) q.set("collections", f.collections.value.trim());
  history.replaceState(null, "", `?${q}`);
}

function showView(v) {
  view = v === "monitor" ? "monitor" : "docs";
  $("#docs-view").hidden = view !== "docs";
  $("#monitor-view").hidden = view !== "monitor";
  for (const a of document.querySelectorAll("#views a")) a.classList.toggle("active", a.dataset.view === view);
  if (view === "monitor") monitor?.render();
}

$("#views").addEventListener("click", (e) => {
  const a = e.target.closest("a[data-view]");
  if (!a) return;
  e.preventDefault();
  showView(a.dataset.view);
  rememberInUrl();
});

$("#connect").addEventListener("submit", (e) => {
  e.preventDefault();
  rememberInUrl();
  connect(formOptions());
});

$("#new-collection").addEventListener("submit", (e) => {
  e.preventDefault();
  const c = e.target.collection.value.trim();
  if (c) { selected = c; e.target.reset(); scheduleRender(); }
});

$("#replicate").addEventListener("submit", async (e) => {
  e.preventDefault();
  const pattern = e.target.pattern.value.trim();
  const held = db?.status().collections;
  if (!pattern || !held) return;
  const msg = $("#holds-msg");
  msg.textContent = `adding ${pattern}…`;
  msg.className = "msg";
  try {
    await db.subscribeCollections([...held, pattern]);
    msg.textContent = `replicating ${pattern}`;
    e.target.reset();
    $("#connect").collections.value = db.status().collections.join(", ");
    rememberInUrl();
    scheduleRender();
  } catch (err) {
    msg.textContent = `${err.code}: ${err.message}`;
    msg.className = "msg error";
  }
});

$("#policy").addEventListener("change", async (e) => {
  if (db && selected) await db.setPolicy(selected, e.target.value).catch((err) => alert(err.message));
});

$("#editor").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target;
  const msg = $("#editor-msg");
  try {
    if (!selected) throw new Error("pick or name a collection first");
    await db.put(selected, f.id.value.trim(), JSON.parse(f.value.value));
    msg.textContent = "saved";
    msg.className = "msg";
  } catch (err) {
    msg.textContent = err.message;
    msg.className = "msg error";
  }
});

$("#delete").addEventListener("click", async () => {
  const f = $("#editor");
  if (db && selected && f.id.value.trim()) await db.delete(selected, f.id.value.trim());
});

$("#send").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target;
  let payload = f.payload.value.trim();
  try { payload = JSON.parse(payload); } catch { /* plain text is sent as a string */ }
  await db?.send(f.channel.value.trim(), payload).catch((err) => alert(err.message));
  f.payload.value = "";
});

/** What the serving host says about itself: its WebSocket port, mode and cloud API. */
async function hostInfo() {
  try {
    const r = await fetch("/inspector/host.json", { cache: "no-store" });
    return r.ok ? await r.json() : null;
  } catch {
    return null;
  }
}

const [host] = await Promise.all([hostInfo(), init()]);
const q = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
if (q.has("token")) {
  console.warn("inspector: a token in the query string is ignored; use the form or #token=");
  q.delete("token");
}
// Keep the token out of the address bar and history: drop the fragment (and any query token).
history.replaceState(null, "", `${location.pathname}${q.size ? `?${q}` : ""}`);
const f = $("#connect");
const scheme = location.protocol === "https:" ? "wss" : "ws";
f.url.value = q.get("url") ?? `${scheme}://${location.hostname}:${host?.ws_port ?? 3333}`;
f.space.value = q.get("space") ?? "default";
f.token.value = fragment.get("token") ?? "";
f.name.value = q.get("name") ?? "inspector";
f.collections.value = q.get("collections") ?? "";
// The token leaves the address bar (and the history) once it is in the form.
if (fragment.has("token")) history.replaceState(null, "", location.pathname + location.search);
document.title = "Sacred Bridge inspector";
monitor = startMonitor({
  host,
  auth: () => (f.token.value.trim() ? { authorization: `Bearer ${f.token.value.trim()}` } : {}),
});
showView(q.get("view"));
connect(formOptions());
