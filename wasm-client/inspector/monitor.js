// The monitor view: the original design's "monitor" as a page. Every number comes from the
// serving host's `GET /v1/status` (per space and per upstream link) and `GET /metrics` (the
// counters behind the charts), polled once a second; the cloud's side from the cloud's own
// `/v1/status`, which the host fetches for the page (`/inspector/cloud/status`). The page keeps
// only the last few minutes of samples to draw the charts: nothing here is a second record.

const WINDOW_MS = 5 * 60_000;
const POLL_MS = 1000;
const CLOUD_POLL_MS = 2000;

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) e.setAttribute(k, v);
  for (const k of kids.flat()) if (k != null) e.append(k instanceof Node ? k : String(k));
  return e;
};
const dash = (v) => (v == null || v === "" ? "—" : String(v));
const age = (ms) => (ms == null ? "never"
  : ms < 60_000 ? `${(ms / 1000).toFixed(1)} s ago`
    : ms < 3_600_000 ? `${Math.floor(ms / 60_000)} min ago` : `${(ms / 3_600_000).toFixed(1)} h ago`);
const clock = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "—");

/** Prometheus text → { name: value } for the unlabelled samples. */
export function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)\s+(\S+)$/.exec(line.trim());
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

/** Starts polling; `auth()` gives the request headers (the page's token, if any). */
export function startMonitor({ auth, host }) {
  const samples = []; // { t, writes, bytesIn, bytesOut }
  let status = null;
  let cloud = null;
  let error = "";

  async function get(path) {
    const r = await fetch(path, { headers: auth(), cache: "no-store" });
    const body = await r.text();
    if (!r.ok) {
      let msg = body;
      try { const e = JSON.parse(body).error; msg = `${e.code}: ${e.message}`; } catch { /* text */ }
      throw new Error(`${path}: ${msg}`);
    }
    return body;
  }

  async function poll() {
    try {
      const [s, m] = await Promise.all([get("/v1/status"), get("/metrics")]);
      status = JSON.parse(s);
      const x = parseMetrics(m);
      samples.push({
        t: Date.now(),
        writes: (x.sacred_bridge_docs_written_total ?? 0) + (x.sacred_bridge_messages_written_total ?? 0),
        bytesIn: x.sacred_bridge_ws_bytes_in_total ?? 0,
        bytesOut: x.sacred_bridge_ws_bytes_out_total ?? 0,
      });
      while (samples.length && samples[0].t < Date.now() - WINDOW_MS) samples.shift();
      error = "";
    } catch (e) {
      error = `cannot read the host: ${e.message}`;
    }
    if (!$("#monitor-view").hidden) render();
  }

  async function pollCloud() {
    try {
      cloud = { ok: true, status: JSON.parse(await get("/inspector/cloud/status")) };
    } catch (e) {
      cloud = { ok: false, error: e.message };
    }
  }

  poll();
  setInterval(poll, POLL_MS);
  if (host?.cloud_api) {
    pollCloud();
    setInterval(pollCloud, CLOUD_POLL_MS);
  }

  function render() {
    $("#mon-error").textContent = error;
    if (!status) return;
    $("#mon-host").textContent = [
      `${host?.mode ?? status.tier} mode`, `tier ${status.tier}`, `up ${status.uptime_s} s`,
      status.stored ? `${status.stored.docs} documents, ${status.stored.messages} messages stored` : null,
    ].filter(Boolean).join(" · ");
    $("#mon-updated").textContent = `updated ${clock(status.now_ms)}`;
    renderCharts();
    $("#mon-spaces").replaceChildren(...(status.spaces ?? []).map(spaceCard));
    renderCloud();
  }

  function rates(field, scale = 1) {
    const pts = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1], b = samples[i];
      const dt = (b.t - a.t) / 1000;
      if (dt > 0) pts.push({ t: b.t, v: Math.max(0, (b[field] - a[field]) / dt / scale) });
    }
    return pts;
  }

  function renderCharts() {
    const writes = rates("writes");
    const bin = rates("bytesIn", 1024);
    const bout = rates("bytesOut", 1024);
    draw($("#chart-writes"), [["writes", writes]]);
    draw($("#chart-bytes"), [["in", bin], ["out", bout]]);
    const last = (p) => (p.length ? p[p.length - 1].v : null);
    $("#mon-writes-now").textContent = last(writes) == null ? "—" : last(writes).toFixed(1);
    $("#mon-bytes-now").textContent = last(bin) == null ? "—"
      : `${last(bin).toFixed(1)} / ${last(bout).toFixed(1)}`;
    const w = span();
    $("#mon-window").textContent = w >= 120_000 ? `${Math.round(w / 60_000)} minutes` : `${Math.round(w / 1000)} seconds`;
  }

  // The charts span what has been sampled, at least a minute and at most WINDOW_MS.
  const span = () => Math.min(WINDOW_MS, Math.max(60_000, samples.length ? Date.now() - samples[0].t : 0));

  function draw(svg, series) {
    const now = Date.now();
    const width = span();
    const max = Math.max(1, ...series.flatMap(([, p]) => p.map((q) => q.v)));
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren(...series.map(([cls, pts]) => {
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("class", cls);
      line.setAttribute("points", pts.map((p) =>
        `${(300 * (1 - (now - p.t) / width)).toFixed(1)},${(58 - 56 * (p.v / max)).toFixed(1)}`).join(" "));
      return line;
    }));
    // The highest rate drawn, for a glance (and for tests): 0 when nothing moved.
    svg.dataset.peak = String(Math.max(0, ...series.flatMap(([, p]) => p.map((q) => q.v))));
  }

  function link(up) {
    if (!up) return el("p", { class: "msg" }, "no upstream link (this host is not hybrid)");
    const state = up.state === "not_linked" ? "not_linked" : up.up ? "up" : "down";
    const label = state === "not_linked" ? "NOT LINKED" : state === "up" ? "UP" : "DOWN";
    const total = (up.push?.sent ?? 0) + (up.push?.remaining ?? 0);
    return el("div", { class: "link", "data-testid": "link", "data-state": state },
      el("h4", {}, "upstream link ", el("span", { class: `state ${state}`, "data-testid": "link-state" }, label),
        up.reason ? el("span", { class: "msg" }, ` ${up.reason}`) : null),
      el("dl", { class: "kv" },
        el("dt", {}, "up since"), el("dd", {}, up.up ? clock(up.up_since_ms) : "—"),
        el("dt", {}, "pending uploads"), el("dd", { "data-testid": "pending" }, dash(up.pending)),
        el("dt", {}, "lag"), el("dd", { "data-testid": "lag" }, dash(up.lag)),
        el("dt", {}, "last successful sync"), el("dd", { "data-testid": "last-sync" },
          up.last_sync_ms ? `${age(up.last_sync_age_ms)} (${clock(up.last_sync_ms)})` : "never"),
        el("dt", {}, "push"), el("dd", {}, total ? `${up.push.sent} / ${total}` : "idle"),
        el("dt", {}, "pull"), el("dd", {}, up.pull?.remaining
          ? `${up.pull.received} received, ${up.pull.remaining} to come` : `${up.pull?.received ?? 0} received`),
        el("dt", {}, "cloud has of ours"), el("dd", {}, dash(up.acked))));
  }

  function people(presence, tier) {
    const who = (presence ?? []).filter((p) => p.tier === tier);
    return el("div", { class: "side", "data-side": tier }, el("span", { class: `tag ${tier}` }, tier),
      who.length ? who.map((p) => el("div", { class: "who" }, p.name || "(unnamed)", " ",
        el("small", {}, `${p.kind} · since ${clock(p.since)}`)))
        : el("div", { class: "empty" }, "nobody"));
  }

  function spaceCard(sp) {
    const peers = (sp.peers ?? []).filter((p) => !p.upstream);
    return el("section", { class: "panel space-card", "data-space": sp.space },
      el("h3", {}, `space ${sp.space}`, el("span", { class: `tag ${sp.tier}` }, sp.tier),
        el("span", { class: sp.open_conflicts ? "badge hot" : "badge", title: "open conflicts",
          "data-testid": "conflicts" }, `${sp.open_conflicts} conflicts`)),
      el("dl", { class: "kv" },
        el("dt", {}, "documents"), el("dd", { "data-testid": "docs" }, sp.docs),
        el("dt", {}, "sessions"), el("dd", {}, sp.sessions),
        el("dt", {}, "default policy"), el("dd", {}, sp.default_policy,
          sp.default_policy_mismatch ? ` (CONFLICT_STRATEGY here: ${sp.conflict_strategy})` : ""),
        el("dt", {}, "replica"), el("dd", {}, sp.replica)),
      link(sp.upstream),
      peers.length ? el("table", {}, el("thead", {}, el("tr", {},
        ["peer", "tier", "pending", "lag"].map((h) => el("th", {}, h)))),
      el("tbody", {}, peers.map((p) => el("tr", {}, el("td", {}, p.replica), el("td", {}, p.tier),
        el("td", {}, p.pending), el("td", {}, p.lag))))) : null,
      el("h4", {}, "connected"),
      el("div", { class: "sides" }, people(sp.presence, "local"), people(sp.presence, "cloud")));
  }

  function renderCloud() {
    const box = $("#mon-cloud");
    box.hidden = !host?.cloud_api;
    if (box.hidden || !cloud) return;
    const head = el("h2", {}, `cloud ${host.cloud_api} `,
      el("span", { class: `state ${cloud.ok ? "up" : "down"}`, "data-testid": "cloud-state" },
        cloud.ok ? "REACHABLE" : "UNREACHABLE"));
    if (!cloud.ok) return box.replaceChildren(head, el("p", { class: "msg error" }, cloud.error));
    const c = cloud.status;
    box.replaceChildren(head,
      el("p", { class: "msg" }, `tier ${c.tier} · up ${c.uptime_s} s`,
        c.stored ? ` · ${c.stored.spaces} spaces, ${c.stored.docs} documents, ${c.stored.messages} messages` : ""),
      el("table", {}, el("thead", {}, el("tr", {},
        ["space", "documents", "sessions", "open conflicts", "connected there"].map((h) => el("th", {}, h)))),
      el("tbody", {}, (c.spaces ?? []).map((sp) => el("tr", { "data-space": sp.space },
        el("td", {}, sp.space), el("td", { "data-testid": "docs" }, sp.docs), el("td", {}, sp.sessions),
        el("td", {}, sp.open_conflicts),
        el("td", { "data-testid": "who" },
          (sp.presence ?? []).map((p) => p.name || p.kind).join(", ") || "nobody"))))));
  }

  return { render, samples };
}
