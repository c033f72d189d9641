/* Flame dashboard: jobs, one job's TAG / tasks / live events / metric curves. Vanilla JS. */
"use strict";

const STORE = { token: "flame.token", user: "flame.user" };
const POLL_MS = 3000;
const MAX_EVENTS = 500;
const TERMINAL = new Set(["completed", "failed", "terminated"]);
const STATE_ORDER = ["failed", "terminated", "stopping", "running", "deploying", "applying",
  "starting", "ready", "completed"];
const STATE_COLORS = {
  ready: "#98a2b3", starting: "#7cb3f0", applying: "#7cb3f0", deploying: "#5b8def",
  running: "#2e90fa", stopping: "#f79009", completed: "#12b76a", failed: "#f04438",
  terminated: "#b54708",
};
const PALETTE = ["#2e90fa", "#e4572e", "#12b76a", "#7a5af8", "#f79009", "#ee46bc", "#15b79e",
  "#667085"];

class AuthError extends Error {}

/* --- credentials ------------------------------------------------------------------------- */

function credentials() {
  return { token: localStorage.getItem(STORE.token) || "", user: localStorage.getItem(STORE.user) || "" };
}

function saveCredentials(token, user) {
  localStorage.setItem(STORE.token, token);
  localStorage.setItem(STORE.user, user);
}

/** `#token=...&user=...` (as `flame up` prints): keep them, then drop them from the address. */
function takeFragmentCredentials() {
  const hash = location.hash.replace(/^#\/?/, "");
  if (!/(^|&)token=/.test(hash)) return;
  const params = new URLSearchParams(hash);
  const token = params.get("token") || "";
  const user = params.get("user") || credentials().user || "admin";
  if (token) saveCredentials(token, user);
  history.replaceState(null, "", location.pathname + location.search + "#/jobs");
}

/* --- helpers ----------------------------------------------------------------------------- */

/** Build an element: h("td", {class: "x"}, "text", child...). Text is never parsed as HTML. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const stateBadge = (s) => h("span", { class: `state ${s || ""}`, "data-state": s || "" }, s || "?");
const enc = encodeURIComponent;
const short = (id) => (id || "").slice(0, 12);

function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString();
}

function userPath(rest) {
  return `/users/${enc(credentials().user)}${rest}`;
}

async function api(rest, opts = {}) {
  const { token } = credentials();
  const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
  const res = await fetch(userPath(rest), { headers, signal: opts.signal, cache: "no-store" });
  if (res.status === 401 || res.status === 403) throw new AuthError(await errorText(res));
  if (!res.ok) throw new Error(`${res.status}: ${await errorText(res)}`);
  return res.json();
}

async function errorText(res) {
  try {
    const body = await res.json();
    return body.message || body.detail || JSON.stringify(body);
  } catch {
    return res.statusText || String(res.status);
  }
}

/* --- routing ----------------------------------------------------------------------------- */

let page = null; // {abort: AbortController} of the page on screen; aborted when leaving it

function leavePage() {
  if (page) page.abort.abort();
  page = { abort: new AbortController(), timers: [], charts: [] };
  return page;
}

function onAbort(p, fn) {
  p.abort.signal.addEventListener("abort", fn);
}

function view() {
  return document.getElementById("view");
}

function route() {
  takeFragmentCredentials();
  const p = leavePage();
  const { token, user } = credentials();
  document.getElementById("whoami").textContent = token ? `user: ${user}` : "";
  document.getElementById("logout").hidden = !token;
  const hash = location.hash.replace(/^#/, "");
  if (!token || hash === "/login") return showLogin(p, "");
  const job = hash.match(/^\/jobs\/([^/]+)$/);
  if (job) return showJob(p, decodeURIComponent(job[1]));
  return showJobs(p);
}

function handle(p, err) {
  if (p.abort.signal.aborted || err.name === "AbortError") return;
  if (err instanceof AuthError) {
    localStorage.removeItem(STORE.token);
    leavePage();
    document.getElementById("whoami").textContent = "";
    document.getElementById("logout").hidden = true;
    return showLogin(page, `Not authorised: ${err.message}`);
  }
  const box = document.getElementById("page-error");
  if (box) {
    box.hidden = false;
    box.textContent = String(err.message || err);
  }
}

function clearError() {
  const box = document.getElementById("page-error");
  if (box) box.hidden = true;
}

/** Run `fn` now and every `ms` while the page is on screen (waits for each run to finish). */
function every(p, ms, fn) {
  let timer = null;
  const tick = async () => {
    try {
      await fn();
    } catch (err) {
      handle(p, err);
    }
    if (!p.abort.signal.aborted) timer = setTimeout(tick, ms);
  };
  onAbort(p, () => clearTimeout(timer));
  tick();
}

/* --- login ------------------------------------------------------------------------------- */

function showLogin(p, message) {
  const { user } = credentials();
  const form = h("form", { class: "login card", id: "login" },
    h("h1", {}, "Sign in"),
    message ? h("div", { class: "error", id: "login-error" }, message) : null,
    h("label", {}, "User", h("input", { name: "user", id: "login-user", required: true, value: user || "", autocomplete: "username" })),
    h("label", {}, "API token", h("input", { name: "token", id: "login-token", required: true, type: "password", autocomplete: "current-password" })),
    h("p", { class: "muted" }, "The token stays in this browser (localStorage) and is sent only as ",
      h("code", {}, "Authorization: Bearer"), " to this apiserver. ",
      h("code", {}, "flame up"), " prints a link that fills it in."),
    h("button", { type: "submit" }, "Open dashboard"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    saveCredentials(form.token.value.trim(), form.user.value.trim());
    if (location.hash === "#/jobs") route();
    else location.hash = "#/jobs";
  });
  view().replaceChildren(form);
}

/* --- jobs list --------------------------------------------------------------------------- */

function showJobs(p) {
  const body = h("tbody", { id: "jobs-body" });
  const updated = h("span", { class: "muted", id: "jobs-updated" });
  view().replaceChildren(
    h("div", { class: "card" },
      h("h1", {}, "Jobs ", updated),
      h("div", { class: "error", id: "page-error", hidden: true }),
      h("table", { id: "jobs" },
        h("thead", {}, h("tr", {}, ["Job", "Name", "State", "Created", "Started", "Ended", "Reason"].map((t) => h("th", {}, t)))),
        body)));
  every(p, POLL_MS, async () => {
    const jobs = await api("/jobs", { signal: p.abort.signal });
    jobs.sort((a, b) => String(b.createdAt || "").localeCompare(String(a.createdAt || "")));
    body.replaceChildren(...jobs.map((j) => h("tr", { "data-job": j.id },
      h("td", {}, h("a", { href: `#/jobs/${enc(j.id)}`, class: "mono" }, j.id)),
      h("td", {}, j.name),
      h("td", {}, stateBadge(j.state)),
      h("td", {}, fmtTime(j.createdAt)),
      h("td", {}, fmtTime(j.startedAt)),
      h("td", {}, fmtTime(j.endedAt)),
      h("td", { class: "muted" }, j.reason || ""))));
    if (!jobs.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No jobs yet.")));
    updated.textContent = `(${jobs.length}, refreshed ${new Date().toLocaleTimeString()})`;
    clearError();
  });
}

/* --- one job ----------------------------------------------------------------------------- */

function showJob(p, jobId) {
  const s = p.abort.signal;
  const job = { id: jobId, state: "", tasks: [], schema: null, top: null, lastSeq: 0, events: 0 };
  view().replaceChildren(
    h("div", { class: "error", id: "page-error", hidden: true }),
    h("div", { class: "card" },
      h("h1", {}, h("a", { href: "#/jobs" }, "Jobs"), " / ", h("span", { class: "mono" }, jobId)),
      h("div", { class: "meta", id: "job-meta" })),
    h("div", { class: "grid" },
      h("div", { class: "card" }, h("h2", {}, "Topology (TAG)"), h("div", { id: "tag" })),
      h("div", { class: "card" },
        h("h2", {}, "Events ", h("span", { class: "stream muted", id: "stream-state" }, "connecting…")),
        h("ul", { class: "events", id: "events" }))),
    h("div", { class: "card" },
      h("h2", {}, "Metrics ", h("select", { id: "metrics-role", hidden: true })),
      h("div", { id: "charts-main", class: "charts" }, h("p", { class: "muted" }, "No metrics yet.")),
      h("details", { id: "charts-more-box", hidden: true },
        h("summary", {}, "Runtimes and traffic"),
        h("div", { id: "charts-more", class: "charts" }))),
    h("div", { class: "card" },
      h("h2", {}, "Tasks"),
      h("table", { id: "tasks" },
        h("thead", {}, h("tr", {}, ["Role", "Task", "State", "Compute", "Updated", "Log"].map((t) => h("th", {}, t)))),
        h("tbody", { id: "tasks-body" }))));

  const graph = new TagGraph(document.getElementById("tag"));
  onAbort(p, () => graph.destroy());
  const charts = new MetricCharts(p);

  const refreshJob = async () => {
    const [status, tasks] = await Promise.all([
      api(`/jobs/${enc(jobId)}/status`, { signal: s }),
      api(`/jobs/${enc(jobId)}/tasks`, { signal: s }),
    ]);
    job.state = status.state;
    job.tasks = tasks;
    renderMeta(status);
    renderTasks(tasks);
    graph.update(tasks);
    clearError();
  };
  const refreshMetrics = async () => {
    const rows = await api(`/jobs/${enc(jobId)}/metrics`, { signal: s });
    charts.update(rows, job.top);
  };
  const soon = debounce(p, () => refreshJob().catch((e) => handle(p, e)), 400);
  const metricsSoon = debounce(p, () => refreshMetrics().catch((e) => handle(p, e)), 400);

  (async () => {
    try {
      const spec = await api(`/jobs/${enc(jobId)}`, { signal: s });
      renderSpec(spec);
      try {
        job.schema = await api(`/designs/${enc(spec.designId)}/schema`, { signal: s });
      } catch (err) {
        if (err instanceof AuthError) throw err;
        job.schema = null; // a deleted design: draw the roles the tasks name
      }
      await refreshJob();
      job.top = graph.draw(job.schema, job.tasks);
      await refreshMetrics();
    } catch (err) {
      handle(p, err);
    }
    every(p, POLL_MS * 2, async () => {
      if (!TERMINAL.has(job.state)) await refreshJob();
    });
  })();

  followEvents(p, jobId, job, (event) => {
    addEvent(event);
    if (event.type === "task.metrics") metricsSoon();
    if (event.type.startsWith("job.") || event.type.startsWith("task.")) soon();
  });
}

function debounce(p, fn, ms) {
  let timer = null;
  onAbort(p, () => clearTimeout(timer));
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      if (!p.abort.signal.aborted) fn();
    }, ms);
  };
}

function renderSpec(spec) {
  const meta = document.getElementById("job-meta");
  meta.dataset.design = spec.designId;
  const put = (label, value, id) => meta.append(h("div", {}, h("span", { class: "muted" }, label), h("span", { id }, value)));
  put("Name", spec.name, "job-name");
  put("Design", spec.designId, "job-design");
  put("Backend", spec.backend, "job-backend");
  put("State", "", "job-state");
  put("Started", "", "job-started");
  put("Ended", "", "job-ended");
  put("Reason", "", "job-reason");
}

function renderMeta(status) {
  const set = (id, value) => {
    const el = document.getElementById(id);
    if (el) el.replaceChildren(value);
  };
  set("job-state", stateBadge(status.state));
  set("job-started", fmtTime(status.startedAt));
  set("job-ended", fmtTime(status.endedAt));
  set("job-reason", status.reason || "");
}

function renderTasks(tasks) {
  const body = document.getElementById("tasks-body");
  if (!body) return;
  const open = new Set([...body.querySelectorAll("details[open]")].map((d) => d.dataset.task));
  const sorted = [...tasks].sort((a, b) => a.role.localeCompare(b.role) || a.taskId.localeCompare(b.taskId));
  body.replaceChildren(...sorted.map((t) => h("tr", { "data-task": t.taskId, "data-role": t.role },
    h("td", {}, t.role),
    h("td", { class: "mono", title: t.taskId }, short(t.taskId)),
    h("td", {}, stateBadge(t.state)),
    h("td", { class: "mono" }, t.computeId || ""),
    h("td", {}, fmtTime(t.timestamp)),
    h("td", {}, t.log
      ? h("details", { "data-task": t.taskId, open: open.has(t.taskId) },
        h("summary", { class: "mono" }, lastLine(t.log)),
        h("pre", { class: "log" }, t.log))
      : h("span", { class: "muted" }, "—")))));
}

function lastLine(log) {
  const lines = log.trimEnd().split("\n");
  const line = lines[lines.length - 1] || "";
  return line.length > 90 ? `${line.slice(0, 90)}…` : line;
}

function addEvent(event) {
  const list = document.getElementById("events");
  if (!list) return;
  const payload = JSON.stringify(event.payload || {});
  list.prepend(h("li", { "data-seq": event.seq, "data-type": event.type },
    h("span", { class: "seq" }, `#${event.seq}`), " ",
    h("span", { class: "type" }, event.type), " ",
    event.taskId ? h("span", { class: "mono muted" }, short(event.taskId), " ") : null,
    h("span", { class: "muted" }, new Date(event.occurredAt || Date.now()).toLocaleTimeString()), " ",
    h("span", { class: "mono" }, payload.length > 160 ? `${payload.slice(0, 160)}…` : payload)));
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

/* --- the live event stream: fetch + ReadableStream (EventSource cannot send a token) ------ */

/** Parse complete SSE frames from `buffer`; returns [frames, rest]. */
function parseFrames(buffer) {
  const frames = [];
  const blocks = buffer.split(/\r?\n\r?\n/);
  const rest = blocks.pop();
  for (const block of blocks) {
    const frame = { id: null, event: "message", data: [] };
    for (const line of block.split(/\r?\n/)) {
      if (!line || line.startsWith(":")) continue; // keep-alive comments
      const at = line.indexOf(":");
      const field = at < 0 ? line : line.slice(0, at);
      let value = at < 0 ? "" : line.slice(at + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") frame.id = value;
      else if (field === "event") frame.event = value;
      else if (field === "data") frame.data.push(value);
    }
    if (frame.data.length) frames.push({ id: frame.id, event: frame.event, data: frame.data.join("\n") });
  }
  return [frames, rest];
}

function followEvents(p, jobId, job, onEvent) {
  const status = (text) => {
    const el = document.getElementById("stream-state");
    if (el) el.textContent = text;
  };
  let backoff = 1000;
  const connect = async () => {
    const { token } = credentials();
    const url = userPath(`/jobs/${enc(jobId)}/events/stream?after=${job.lastSeq}`);
    try {
      const res = await fetch(url, {
        headers: { Accept: "text/event-stream", Authorization: `Bearer ${token}` },
        signal: p.abort.signal,
        cache: "no-store",
      });
      if (res.status === 401 || res.status === 403) throw new AuthError(await errorText(res));
      if (!res.ok || !res.body) throw new Error(`event stream: ${res.status} ${await errorText(res)}`);
      status("live");
      backoff = 1000;
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        const [frames, rest] = parseFrames(buffer);
        buffer = rest;
        for (const frame of frames) {
          let event;
          try {
            event = JSON.parse(frame.data);
          } catch {
            continue;
          }
          const seq = Number(frame.id || event.seq || 0);
          if (seq && seq <= job.lastSeq) continue;
          if (seq) job.lastSeq = seq;
          job.events += 1;
          event.type = event.type || frame.event;
          onEvent(event);
        }
      }
      // The server ends the stream once the job is done and every event was sent.
      const status_ = await api(`/jobs/${enc(jobId)}/status`, { signal: p.abort.signal });
      if (TERMINAL.has(status_.state)) {
        job.state = status_.state;
        status(`ended (job ${status_.state}, ${job.events} events)`);
        return;
      }
    } catch (err) {
      if (p.abort.signal.aborted || err.name === "AbortError") return;
      if (err instanceof AuthError) return handle(p, err);
      status(`reconnecting: ${err.message || err}`);
    }
    if (p.abort.signal.aborted) return;
    const timer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
    onAbort(p, () => clearTimeout(timer));
  };
  connect();
}

/* --- the TAG with Cytoscape -------------------------------------------------------------- */

/** Distance of each role from the data consumers (trainers): the largest is the top role. */
function roleDepths(schema) {
  const roles = schema.roles.map((r) => r.name);
  const next = Object.fromEntries(roles.map((r) => [r, []]));
  for (const c of schema.channels) {
    const [a, b] = c.pair;
    if (next[a] && next[b]) {
      next[a].push(b);
      next[b].push(a);
    }
  }
  const depth = {};
  let frontier = schema.roles.filter((r) => r.isDataConsumer).map((r) => r.name);
  if (!frontier.length) frontier = roles.slice(0, 1);
  frontier.forEach((r) => { depth[r] = 0; });
  while (frontier.length) {
    const after = [];
    for (const r of frontier) {
      for (const n of next[r]) {
        if (depth[n] === undefined) {
          depth[n] = depth[r] + 1;
          after.push(n);
        }
      }
    }
    frontier = after;
  }
  roles.forEach((r) => { if (depth[r] === undefined) depth[r] = 0; });
  return depth;
}

function summarize(tasks) {
  const counts = {};
  for (const t of tasks) counts[t.state] = (counts[t.state] || 0) + 1;
  const dominant = STATE_ORDER.find((st) => counts[st]) || "ready";
  return { counts, dominant };
}

class TagGraph {
  constructor(container) {
    this.container = container;
    this.cy = null;
  }

  /** Draw roles and channels; returns the top role (farthest from the trainers). */
  draw(schema, tasks) {
    if (!schema) {
      const names = [...new Set(tasks.map((t) => t.role))];
      schema = { roles: names.map((n) => ({ name: n })), channels: [] };
    }
    const depths = roleDepths(schema);
    const top = Object.entries(depths).sort((a, b) => b[1] - a[1])[0]?.[0] || null;
    if (typeof cytoscape !== "function") {
      this.container.textContent = "Cytoscape did not load.";
      return top;
    }
    const elements = [
      ...schema.roles.map((r) => ({ data: { id: `role:${r.name}`, role: r.name, label: r.name, color: STATE_COLORS.ready } })),
      ...schema.channels.map((c) => ({ data: { id: `channel:${c.name}`, source: `role:${c.pair[0]}`, target: `role:${c.pair[1]}`, label: c.name } })),
    ];
    const maxDepth = Math.max(0, ...Object.values(depths));
    this.cy = cytoscape({
      container: this.container,
      elements,
      userZoomingEnabled: false,
      style: [
        { selector: "node", style: {
          "background-color": "data(color)", label: "data(label)", color: "#1d232b",
          "text-wrap": "wrap", "text-valign": "center", "text-halign": "right",
          "text-margin-x": 10, "font-size": 12,
          width: 46, height: 46, "border-width": 2, "border-color": "#101828" } },
        { selector: "edge", style: {
          width: 2, "line-color": "#98a2b3", label: "data(label)", "font-size": 10,
          color: "#667085", "curve-style": "bezier", "text-background-color": "#fff",
          "text-background-opacity": 1 } },
      ],
      layout: {
        name: "preset",
      },
    });
    // Top role on top, trainers at the bottom; roles of one depth side by side.
    const byDepth = {};
    schema.roles.forEach((r) => { (byDepth[depths[r.name]] ||= []).push(r.name); });
    for (const [d, names] of Object.entries(byDepth)) {
      names.forEach((n, i) => {
        this.cy.getElementById(`role:${n}`).position({ x: (i - (names.length - 1) / 2) * 220, y: (maxDepth - Number(d)) * 150 });
      });
    }
    this.cy.fit(undefined, 40);
    this.update(tasks);
    return top;
  }

  update(tasks) {
    if (!this.cy) return;
    const byRole = {};
    for (const t of tasks) (byRole[t.role] ||= []).push(t);
    this.cy.nodes().forEach((node) => {
      const mine = byRole[node.data("role")] || [];
      const { counts, dominant } = summarize(mine);
      const parts = Object.entries(counts).map(([st, n]) => `${n} ${st}`).join(", ");
      node.data("label", `${node.data("role")}\n${mine.length} task${mine.length === 1 ? "" : "s"}${parts ? `: ${parts}` : ""}`);
      node.data("color", STATE_COLORS[dominant] || STATE_COLORS.ready);
      node.data("state", dominant);
      node.data("tasks", mine.length);
    });
    this.container.dataset.roles = JSON.stringify(this.cy.nodes().map((n) => ({ role: n.data("role"), tasks: n.data("tasks"), state: n.data("state") })));
  }

  destroy() {
    if (this.cy) this.cy.destroy();
  }
}

/* --- per-round metric curves with Chart.js ----------------------------------------------- */

const isSystemMetric = (name) => name.includes(".") || name.startsWith("bytes");

class MetricCharts {
  constructor(p) {
    this.charts = {}; // metric name -> Chart
    this.role = null;
    this.chosen = false;
    this.rows = [];
    onAbort(p, () => Object.values(this.charts).forEach((c) => c.destroy()));
    const select = document.getElementById("metrics-role");
    select.addEventListener("change", () => {
      this.role = select.value;
      this.chosen = true;
      this.reset();
      this.render();
    });
  }

  reset() {
    Object.values(this.charts).forEach((c) => c.destroy());
    this.charts = {};
    document.getElementById("charts-main").replaceChildren();
    document.getElementById("charts-more").replaceChildren();
  }

  update(rows, top) {
    this.rows = rows;
    const roles = [...new Set(rows.map((r) => r.role))].sort();
    if (!this.chosen) this.role = roles.includes(top) ? top : roles[0] || null;
    const select = document.getElementById("metrics-role");
    select.hidden = roles.length < 2;
    if ([...select.options].map((o) => o.value).join() !== roles.join()) {
      select.replaceChildren(...roles.map((r) => h("option", { value: r }, `role: ${r}`)));
    }
    if (this.role) select.value = this.role;
    this.render();
  }

  render() {
    if (typeof Chart !== "function" || !this.role) return;
    const rows = this.rows.filter((r) => r.role === this.role);
    const names = [...new Set(rows.flatMap((r) => Object.keys(r.metrics)))].sort((a, b) =>
      (isSystemMetric(a) - isSystemMetric(b)) || a.localeCompare(b));
    const tasks = [...new Set(rows.map((r) => r.taskId))].sort();
    const rounds = [...new Set(rows.map((r) => r.round))].sort((a, b) => a - b);
    const main = document.getElementById("charts-main");
    if (names.length && main.querySelector("p")) main.replaceChildren();
    for (const name of names) {
      const datasets = tasks.map((task, i) => {
        const points = new Map(rows.filter((r) => r.taskId === task && name in r.metrics).map((r) => [r.round, r.metrics[name]]));
        return {
          label: tasks.length > 1 ? `${this.role} ${short(task)}` : this.role,
          data: rounds.map((rd) => (points.has(rd) ? points.get(rd) : null)),
          borderColor: PALETTE[i % PALETTE.length],
          backgroundColor: PALETTE[i % PALETTE.length],
          spanGaps: true,
          tension: 0,
        };
      });
      const chart = this.charts[name];
      if (chart) {
        chart.data.labels = rounds;
        chart.data.datasets = datasets;
        chart.update("none");
      } else {
        this.charts[name] = this.create(name, rounds, datasets);
      }
      const canvas = this.charts[name].canvas;
      canvas.dataset.points = String(datasets.reduce((n, d) => n + d.data.filter((v) => v !== null).length, 0));
      canvas.dataset.rounds = String(rounds.length);
      const grown = (canvas.dataset.history || "").split(",").filter(Boolean);
      if (grown[grown.length - 1] !== canvas.dataset.points) grown.push(canvas.dataset.points);
      canvas.dataset.history = grown.join(","); // point counts drawn so far (tests read it)
    }
    document.getElementById("charts-more-box").hidden = !names.some(isSystemMetric);
  }

  create(name, rounds, datasets) {
    const canvas = h("canvas", { "data-metric": name, "aria-label": `${name} per round` });
    const box = h("div", { class: "chart-card" }, h("h2", { class: "mono" }, name), h("div", { class: "chart" }, canvas));
    document.getElementById(isSystemMetric(name) ? "charts-more" : "charts-main").append(box);
    return new Chart(canvas, {
      type: "line",
      data: { labels: rounds, datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: { x: { title: { display: true, text: "round" } }, y: { title: { display: true, text: name } } },
        plugins: { legend: { display: datasets.length > 1 } },
      },
    });
  }
}

/* --- start --------------------------------------------------------------------------------- */

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => {
    localStorage.removeItem(STORE.token);
    location.hash = "#/login";
    route();
  });
  route();
});
