// streamgate operator console. Everything it shows comes from the admin API;
// the admin token lives in sessionStorage only (gone when the tab closes).
"use strict";

const TOKEN_KEY = "streamgate.adminToken";
const TEMPLATE_KEY = "streamgate.playTemplate"; // not a secret: the SRS play URL pattern
const PAGE_SIZE_KEY = "streamgate.pageSize"; // not a secret either
const REFRESH_MS = 3000;
const DEFAULT_VHOST = "__defaultVhost__";
const PAGE_SIZES = [20, 50, 100];

const $ = (selector) => document.querySelector(selector);
const state = {
  streams: [], // the page shown, and nothing more: every stream listed costs the Worker a Durable Object call
  servers: [],
  sort: { key: "name", dir: 1 },
  filter: "", // a name prefix ("live" or "live/cam"), applied by the admin API (KV list prefix)
  vhost: "",
  pageSize: PAGE_SIZES.includes(Number(localStorage.getItem(PAGE_SIZE_KEY))) ? Number(localStorage.getItem(PAGE_SIZE_KEY)) : PAGE_SIZES[0],
  cursor: undefined, // cursor of the page shown (undefined: the first page)
  back: [], // cursors of the pages before it, for "previous"
  next: undefined, // cursor of the page after it, if any
  seq: 0, // the latest refresh; older answers are dropped
  deadLetters: null, // GET /admin/events/dead-letters, while the servers tab is shown
  timer: null,
};

// --- DOM helpers: text only, never HTML built from data ---------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/**
 * The gate's clock, less the browser's (ms), from the Date header of the last admin answer: "now"
 * is the gate's, so a browser whose clock is off neither revokes the wrong tokens nor misreads ages.
 * The header counts whole seconds: its middle is the best guess.
 */
let gateClockOffsetMs = 0;
function gateNow() {
  return Date.now() + gateClockOffsetMs;
}

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((gateNow() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

// --- admin API ----------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const res = await fetch(`/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ""}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const stamped = Date.parse(res.headers.get("date") ?? "");
  if (!Number.isNaN(stamped)) gateClockOffsetMs = stamped + 500 - Date.now();
  const data = await res.json().catch(() => ({}));
  if (res.status === 401) {
    logout("The admin token was refused.");
    throw new ApiError(401, data.error ?? "unauthorized");
  }
  if (!res.ok) throw new ApiError(res.status, data.error ?? `HTTP ${res.status}`);
  return data;
}

function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined && value !== "") query.set(name, value);
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

function streamPath(s, suffix = "", params = {}) {
  const vhost = s.vhost && s.vhost !== DEFAULT_VHOST ? s.vhost : undefined;
  return withQuery(`/streams/${encodeURIComponent(s.app)}/${encodeURIComponent(s.stream)}${suffix}`, { ...params, vhost });
}

/** The one page of streams the console shows. A name filter needs a vhost; none given means the default one. */
function streamsPagePath() {
  const vhost = state.vhost || (state.filter ? DEFAULT_VHOST : undefined);
  return withQuery("/streams", { limit: state.pageSize, prefix: state.filter, vhost, cursor: state.cursor });
}

/** Says what a failed call means; a 404 from the router itself means this Worker predates the endpoint. */
function failure(err) {
  if (err instanceof ApiError && err.status === 404 && err.message === "not found") {
    return "This streamgate does not have this endpoint yet (404): deploy a newer Worker.";
  }
  return err.message;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// --- login --------------------------------------------------------------------

function showApp(loggedIn) {
  $("#login").hidden = loggedIn;
  $("#app").hidden = !loggedIn;
  $("#logout").hidden = !loggedIn;
  clearInterval(state.timer);
  if (loggedIn) {
    refresh();
    state.timer = setInterval(refresh, REFRESH_MS);
  }
}

function logout(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  Object.assign(state, { streams: [], servers: [], cursor: undefined, back: [], next: undefined });
  $("#login-error").textContent = message;
  $("#status").textContent = "";
  showApp(false);
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("#token").value);
  $("#token").value = "";
  try {
    await api("GET", "/streams?limit=1");
    $("#login-error").textContent = "";
    showApp(true);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) logout(`Cannot reach the admin API: ${err.message}`);
  }
});
$("#logout").addEventListener("click", () => logout());

// --- refresh and render ---------------------------------------------------------

/**
 * Fetches the page of streams shown (one call, `limit` rows) and, when they are on screen or a
 * publisher's device is shown, the servers. Paging and filtering call it at once; an answer
 * overtaken by a newer refresh is dropped, so a slow tick never redraws an old page.
 */
async function refresh() {
  const seq = ++state.seq;
  try {
    const page = await api("GET", streamsPagePath());
    // The servers tab shows every server; otherwise only the servers of the publishers on the page are asked for.
    const publishers = [...new Set(page.streams.filter((s) => s.publisher).map((s) => s.publisher.serverId))];
    const servers = !$("#servers-tab").hidden
      ? (await api("GET", "/servers")).servers
      : publishers.length > 0
        ? (await api("GET", `/servers?${publishers.map((id) => `server=${encodeURIComponent(id)}`).join("&")}`)).servers
        : null;
    if (seq !== state.seq) return;
    if (page.streams.length === 0 && state.back.length > 0) {
      // The page emptied under us (its streams were revoked): show the one before it.
      state.cursor = state.back.pop();
      return refresh();
    }
    state.streams = page.streams;
    state.next = page.cursor;
    if (servers) state.servers = servers;
    // Events the receiver never took, shown with the servers (an older Worker without the endpoint: nothing shown).
    if (!$("#servers-tab").hidden) state.deadLetters = await api("GET", "/events/dead-letters").catch(() => null);
    if (seq !== state.seq) return;
    renderStreams();
    renderServers();
    renderDeadLetters();
    $("#status").textContent = `updated ${new Date(gateNow()).toLocaleTimeString()}`;
  } catch (err) {
    if (seq === state.seq && !(err instanceof ApiError && err.status === 401)) $("#status").textContent = `refresh failed: ${failure(err)}`;
  }
}

/** Moves to another page (or back to the first one after a filter change) and fetches it now. */
function goTo(cursor, back) {
  state.cursor = cursor;
  state.back = back;
  state.next = undefined;
  renderPager();
  return refresh();
}

function sortValue(s, key) {
  if (key === "live") return s.live ? 1 : 0;
  if (key === "viewers") return s.viewers;
  if (key === "playAuth") return s.playAuth;
  return `${s.app}/${s.stream}@${s.vhost}`;
}

function renderStreams() {
  const { key, dir } = state.sort;
  const rows = [...state.streams]
    .sort((a, b) => {
      const [x, y] = [sortValue(a, key), sortValue(b, key)];
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    })
    .map(streamRow);
  $("#streams tbody").replaceChildren(...rows);
  $("#streams-empty").hidden = state.streams.length > 0;
  $("#streams-empty").textContent = state.filter || state.vhost ? "No stream matches the filter." : "No streams yet.";
  renderPager();
  for (const th of document.querySelectorAll("#streams th[data-sort]")) {
    th.setAttribute("aria-sort", th.dataset.sort === key ? (dir > 0 ? "ascending" : "descending") : "none");
  }
}

/** Other publisher sessions the stream knows of (newer API); none from an older one. */
const conflictsOf = (s) => (Array.isArray(s.conflicts) ? s.conflicts : []);
const suspendedViewersOf = (s) => (Number.isInteger(s.suspendedViewers) ? s.suspendedViewers : 0);
const suspended = (p) => p?.state === "suspended";

function conflictBadge(s) {
  const conflicts = conflictsOf(s);
  if (conflicts.length === 0) return null;
  const who = conflicts.map((c) => `client ${c.clientId} on ${c.serverId} (${c.state ?? "conflict"})`).join("; ");
  // "conflict" sessions came back while another holds the stream; "suspended" ones wait for their silent server.
  const text = conflicts.some((c) => c.state !== "suspended")
    ? `conflict: ${plural(conflicts.length, "other publisher")}`
    : `${plural(conflicts.length, "other publisher")} suspended`;
  return el("span", { class: "badge conflict", title: `Other publisher sessions (see Details): ${who}` }, text);
}

function viewersText(s) {
  const extra = suspendedViewersOf(s);
  return extra > 0 ? el("span", { class: "suspended-viewers", title: "Viewers of servers currently silent: kept, but not counted against the cap" }, ` (+${extra} suspended)`) : null;
}

/** The page's streams are watched on more viewer shards than one listing asks: this one's figures are its servers' last reports. */
function asReportedText(s) {
  if (s.audienceAsReported !== true) return null;
  return el("span", { class: "sub as-reported", title: "Not asked now (one page asks at most 1,000 viewer shards): each server's last report to the stream, which can be minutes old. Details shows the viewers now." }, "as last reported");
}

function streamRow(s) {
  const name = `${s.app}/${s.stream}`;
  const server = s.publisher ? state.servers.find((x) => x.serverId === s.publisher.serverId) : null;
  const publisher = s.publisher
    ? el("td", { class: "publisher" },
        el("span", {}, s.publisher.serverId),
        suspended(s.publisher)
          ? el("span", { class: "badge suspended", title: "Its server is silent: the session is kept, not live" }, "suspended")
          : null,
        el("span", { class: "sub" }, `device ${server?.deviceId || "?"} · ip ${s.publisher.ip || "?"}`),
        el("span", { class: "sub" }, `since ${new Date(s.publisher.since).toLocaleTimeString()} · client ${s.publisher.clientId}`))
    : el("td", { class: "publisher muted" }, "—");
  const viewers =
    s.maxViewers === null
      ? el("td", { class: "viewers" }, el("span", { class: "count" }, String(s.viewers)), viewersText(s), viewerIdsText(s), asReportedText(s), el("span", { class: "sub" }, "no cap"))
      : el("td", { class: "viewers" },
          el("span", { class: "count" }, String(s.viewers)), ` / ${s.maxViewers}`, viewersText(s), viewerIdsText(s), asReportedText(s),
          el("meter", { min: 0, max: Math.max(s.maxViewers, 1), value: s.viewers, low: s.maxViewers * 0.8, high: s.maxViewers * 0.95, optimum: 0 }));
  const button = (label, action, cls, title) => el("button", { type: "button", class: cls, title, "data-action": action }, label);
  return el("tr", { "data-stream": name, "data-vhost": s.vhost },
    el("td", { class: "name" }, name, s.vhost !== DEFAULT_VHOST ? el("span", { class: "sub" }, s.vhost) : null),
    el("td", { class: "status" }, el("span", { class: `badge state ${s.live ? "live" : "idle"}` }, s.live ? "live" : "idle"), conflictBadge(s)),
    publisher,
    viewers,
    el("td", { class: "auth" }, s.playAuth, sessionLimitText(s) ? el("span", { class: "sub" }, sessionLimitText(s)) : null),
    el("td", { class: "actions" },
      button("Edit", "edit"), button("Rotate key", "rotate"), button("Token", "token"),
      button("Details", "details"),
      button("End sessions", "end", "danger", "Forget this stream's publisher and viewers in streamgate's accounting, and kick them on SRS where streamgate has the server's API"),
      button("Revoke", "revoke", "danger")));
}

function renderPager() {
  const first = state.back.length * state.pageSize + 1;
  $("#page-info").textContent = state.streams.length === 0
    ? `page ${state.back.length + 1}`
    : `page ${state.back.length + 1} · streams ${first}–${first + state.streams.length - 1}`;
  $("#prev").disabled = state.back.length === 0;
  $("#next").disabled = !state.next;
  $("#page-size").value = String(state.pageSize);
}

function renderServers() {
  const rows = [...state.servers]
    .sort((a, b) => a.serverId.localeCompare(b.serverId))
    .map((x) => {
      const duplicates = Array.isArray(x.duplicateServiceIds) ? x.duplicateServiceIds : [];
      const candidates = Array.isArray(x.candidateServiceIds) ? x.candidateServiceIds : [];
      return el("tr", { "data-server": x.serverId },
        el("td", {}, x.serverId, el("span", { class: "sub" }, `service ${x.serviceId}`),
          duplicates.length > 0 ? el("span", { class: "sub" }, `also claimed by service ${duplicates.join(", ")}`) : null,
          candidates.length > 0 ? el("span", { class: "sub", "data-candidates": "1" }, `new process ${candidates.join(", ")} awaits its first heartbeat`) : null),
        el("td", {}, x.deviceId || "—"),
        el("td", {}, x.ip || "—"),
        el("td", {}, x.lastHeartbeat ? ago(x.lastHeartbeat) : "no heartbeats"),
        el("td", { class: "status" },
          el("span", { class: `badge ${x.alive ? "alive" : "dead"}` }, x.alive ? "alive" : "silent"),
          duplicates.length > 0
            ? el("span", {
                class: "badge duplicate",
                title: "Several SRS processes use this server_id at once (a shared objs/srs.id?): give each its own",
              }, `duplicate server_id ×${duplicates.length + 1}`)
            : null),
        el("td", {}, String(x.sessions)),
        el("td", { class: "actions" },
          el("button", {
            type: "button", class: "danger", "data-action": "end-server",
            title: "Forget every session held through this server in streamgate's accounting, and kick them on SRS if streamgate has its API",
          }, "End sessions")));
    });
  $("#servers tbody").replaceChildren(...rows);
  $("#servers-empty").hidden = state.servers.length > 0;
}

/** The events the queue gave up on (every delivery to EVENTS_WEBHOOK_URL failed), with a replay. */
function renderDeadLetters() {
  const dead = state.deadLetters;
  const count = dead && Number.isInteger(dead.count) ? dead.count : 0;
  $("#dead-letters").hidden = count === 0;
  if (count > 0) {
    $("#dead-letters-text").textContent =
      `${plural(count, "event")} could not be delivered to the webhook receiver (every retry failed; the first given up on ${ago(dead.oldest)}). ` +
      "They are kept 30 days.";
  }
}

$("#replay-dead-letters").addEventListener("click", async () => {
  const button = $("#replay-dead-letters");
  button.disabled = true;
  try {
    const r = await api("POST", "/events/dead-letters/replay");
    $("#status").textContent = `sent ${plural(r.replayed, "event")} again${r.remaining > 0 ? `; ${r.remaining} left: send again` : ""}`;
    state.deadLetters = { ...state.deadLetters, count: r.remaining };
    renderDeadLetters();
  } catch (err) {
    $("#status").textContent = `events not sent again: ${failure(err)}`;
  } finally {
    button.disabled = false;
  }
});

// --- tabs, sorting, filtering ----------------------------------------------------

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
    $("#streams-tab").hidden = tab.dataset.tab !== "streams";
    $("#servers-tab").hidden = tab.dataset.tab !== "servers";
    refresh(); // servers are fetched only while shown (or needed for a publisher's device)
  });
}
for (const th of document.querySelectorAll("#streams th[data-sort]")) {
  th.addEventListener("click", () => {
    state.sort = { key: th.dataset.sort, dir: state.sort.key === th.dataset.sort ? -state.sort.dir : 1 };
    renderStreams();
  });
}
// Filter and vhost go to the admin API (a KV list prefix); the list restarts at its first page.
let filterTimer;
function onFilterInput() {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    state.filter = $("#filter").value.trim();
    state.vhost = $("#vhost-filter").value.trim();
    $("#vhost-filter").placeholder = state.filter ? DEFAULT_VHOST : "all vhosts";
    goTo(undefined, []);
  }, 300);
}
$("#filter").addEventListener("input", onFilterInput);
$("#vhost-filter").addEventListener("input", onFilterInput);
$("#next").addEventListener("click", () => {
  if (state.next) goTo(state.next, [...state.back, state.cursor]);
});
$("#prev").addEventListener("click", () => {
  if (state.back.length > 0) goTo(state.back.at(-1), state.back.slice(0, -1));
});
$("#page-size").replaceChildren(...PAGE_SIZES.map((n) => el("option", { value: String(n) }, String(n))));
$("#page-size").addEventListener("change", (event) => {
  state.pageSize = Number(event.target.value);
  localStorage.setItem(PAGE_SIZE_KEY, String(state.pageSize));
  goTo(undefined, []);
});
$("#play-template").value = localStorage.getItem(TEMPLATE_KEY) ?? $("#play-template").value;
$("#play-template").addEventListener("change", (event) => localStorage.setItem(TEMPLATE_KEY, event.target.value));

// --- dialog -------------------------------------------------------------------------

/** Opens the dialog; `onConfirm` returns false to keep it open. */
function openDialog(title, body, buttons) {
  $("#dialog-title").textContent = title;
  $("#dialog-body").replaceChildren(...body);
  $("#dialog-error").textContent = "";
  $("#dialog-buttons").replaceChildren(
    ...buttons.map(({ label, cls, onClick }) => {
      const b = el("button", { type: "button", class: cls }, label);
      b.addEventListener("click", async () => {
        try {
          if (!onClick || (await onClick()) !== false) $("#dialog").close();
        } catch (err) {
          $("#dialog-error").textContent = err.message;
        }
      });
      return b;
    }),
  );
  $("#dialog").showModal();
}

function secretField(value, label) {
  const code = el("code", { class: "secret-value" }, value);
  const copy = el("button", { type: "button", class: "copy" }, "Copy");
  copy.addEventListener("click", async () => {
    await navigator.clipboard.writeText(value);
    copy.textContent = "Copied";
  });
  return el("div", {}, el("p", {}, label), el("div", { class: "secret" }, code, copy));
}

function showKey(s, key, created) {
  openDialog(created ? `Created ${s.app}/${s.stream}` : `New key for ${s.app}/${s.stream}`, [
    secretField(key, "Publish key. It is shown only now; streamgate keeps only its hash."),
    el("p", { class: "muted" }, `Publish to rtmp://<edge>/${s.app}/${s.stream}?key=<key>`),
  ], [{ label: "Done", cls: "primary" }]);
}

// --- actions -------------------------------------------------------------------------

$("#create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const s = { app: form.get("app").trim(), stream: form.get("stream").trim(), vhost: form.get("vhost").trim() || DEFAULT_VHOST };
  const max = form.get("maxViewers");
  try {
    const created = await api("PUT", streamPath(s), { maxViewers: max === "" ? null : Number(max), playAuth: form.get("playAuth"), ...viewerPolicyOf(form) });
    event.target.reset();
    await refresh();
    if (created.publishKey) showKey(created, created.publishKey, true);
    else openDialog(`${s.app}/${s.stream} already exists`, [el("p", {}, "Its policy was updated; its key is unchanged.")], [{ label: "OK" }]);
  } catch (err) {
    openDialog("Could not create the stream", [el("p", {}, err.message)], [{ label: "OK" }]);
  }
});

$("#streams tbody").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const row = button.closest("tr");
  const s = state.streams.find((x) => `${x.app}/${x.stream}` === row.dataset.stream && x.vhost === row.dataset.vhost);
  if (s) actions[button.dataset.action](s);
});

$("#servers tbody").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action=end-server]");
  if (button) endServerSessions(button.closest("tr").dataset.server);
});

// --- ending sessions by hand ----------------------------------------------------------

const ENDING_NOTE =
  "This frees the sessions in streamgate's accounting: they stop counting against the viewer cap and " +
  "stop holding the stream as published. Where streamgate has the SRS server's HTTP API (SRS_API_URL, or the " +
  "server's own API base), it also kicks the clients there, in the background. Otherwise SRS keeps the clients " +
  "connected and streaming; to disconnect them, kick them on their SRS server too (DELETE /api/v1/clients/{client_id} " +
  "on its HTTP API).";

/**
 * What happens on SRS to the clients of `ended` sessions, from the answer's `kicking` (present only
 * with SRS_API_URL set): the kicks queued, one per session; one left out could not be queued (its
 * server's registry shard unreachable). Each kick's outcome goes to the stream's decision log.
 */
function onSrsText(result, ended) {
  if (ended === 0) return "";
  const it = (n) => (n === 1 ? "it" : "them");
  if (!Array.isArray(result.kicking)) return `SRS still has ${ended === 1 ? "this client" : "these clients"} connected (no SRS API set): kick ${it(ended)} on SRS if ${ended === 1 ? "it" : "they"} must go.`;
  const left = ended - result.kicking.length;
  return `${plural(result.kicking.length, "client")} being kicked on SRS (each outcome in the stream's decisions)` +
    (left > 0 ? `; ${plural(left, "kick")} could not be queued (streamgate's registry unreachable): kick ${it(left)} on SRS if ${left === 1 ? "it" : "they"} must go.` : ".");
}

function endedLine(e) {
  const stream = e.stream ? `${e.stream} · ` : "";
  return `${stream}${e.role ?? "session"} · client ${e.clientId} · server ${e.serverId ?? "?"} (service ${e.serviceId ?? "?"})`;
}

/**
 * Shows what an end call ended, in a dialog and on the status line. A server's call ends at most
 * a batch: `remaining` says how many are left (press again), `failed` how many streams did not answer.
 */
function showEnded(what, result, serverId) {
  const list = (Array.isArray(result.ended) ? result.ended : []).map((e) => ({ ...e, serverId: e.serverId ?? serverId }));
  const remaining = Number.isInteger(result.remaining) ? result.remaining : 0;
  // A server's call counts the streams it could not reach; a stream's names the viewer shards.
  const failed = Number.isInteger(result.failed) ? result.failed : Array.isArray(result.failed) ? result.failed.length : 0;
  const summary = `Ended ${plural(list.length, "session")} of ${what}.`;
  $("#status").textContent = summary;
  openDialog(list.length === 0 ? `Nothing to end for ${what}` : `Ended ${plural(list.length, "session")}`, [
    el("p", { class: "result" }, summary),
    remaining > 0
      ? el("p", { class: "error" }, `${plural(remaining, "session")} left${failed > 0 ? ` (${failed} could not be reached)` : ""}: press End sessions again.`)
      : failed > 0 && Array.isArray(result.failed)
        ? el("p", { class: "error" }, `${plural(failed, "viewer shard")} could not be reached (${result.failed.join(", ")}): their viewers still stand; press End sessions again.`)
        : failed > 0
          ? el("p", { class: "error" }, `${failed} could not be reached (a stream, or the server's viewers): what they hold still stands; press End sessions again.`)
          : null,
    list.length > 0 ? el("ul", { class: "ended" }, ...list.map((e) => el("li", {}, endedLine(e)))) : null,
    el("p", { class: "muted kicks" }, onSrsText(result, list.length)),
  ], [{ label: "Done", cls: "primary" }]);
}

/** Asks first, then ends the sessions `path` names and shows the result. */
function confirmEnd(title, path, what, detail, serverId) {
  openDialog(title, [el("p", {}, detail), el("p", { class: "muted" }, ENDING_NOTE)], [
    { label: "Cancel" },
    {
      label: "End sessions",
      cls: "danger",
      onClick: async () => {
        let result;
        try {
          result = await api("DELETE", path);
        } catch (err) {
          throw new Error(failure(err));
        }
        await refresh();
        setTimeout(() => showEnded(what, result, serverId ?? result.serverId));
      },
    },
  ]);
}

function endServerSessions(serverId) {
  confirmEnd(`End every session of server ${serverId}?`, `/servers/${encodeURIComponent(serverId)}/sessions`, `server ${serverId}`,
    `Every publisher and viewer session that clients of ${serverId} hold, on every stream, ends in streamgate.`, serverId);
}

const actions = {
  edit(s) {
    const max = el("input", { type: "number", min: 0, value: s.maxViewers ?? "", placeholder: "no cap", name: "maxViewers" });
    const auth = el("select", { name: "playAuth" }, el("option", { value: "open" }, "open"), el("option", { value: "token" }, "token"));
    auth.value = s.playAuth;
    const perViewer = viewerPolicyInputs(s);
    openDialog(`Edit ${s.app}/${s.stream}`, [el("label", {}, "Max viewers ", max), el("label", {}, "Play auth ", auth), ...(perViewer?.fields ?? [])], [
      { label: "Cancel" },
      {
        label: "Save",
        cls: "primary",
        onClick: async () => {
          await api("PUT", streamPath(s), { maxViewers: max.value === "" ? null : Number(max.value), playAuth: auth.value, ...perViewer?.value() });
          await refresh();
        },
      },
    ]);
  },

  rotate(s) {
    openDialog(`Rotate the key of ${s.app}/${s.stream}?`, [
      el("p", {}, "The current key is refused from the next publish on. A publisher already live keeps streaming until it stops."),
    ], [
      { label: "Cancel" },
      {
        label: "Rotate key",
        cls: "danger",
        onClick: async () => {
          const result = await api("PUT", streamPath(s), { rotateKey: true });
          setTimeout(() => showKey(s, result.publishKey, false));
        },
      },
    ]);
  },

  token(s) {
    const ttl = el("input", { type: "number", min: 1, max: 604800, value: 3600, name: "ttl" });
    const sub = el("input", { type: "text", name: "sub", maxLength: 64, pattern: "[A-Za-z0-9._:@\\-]{1,64}", placeholder: "none", autocomplete: "off", spellcheck: false });
    const result = el("div", {});
    openDialog(`Play token for ${s.app}/${s.stream}`, [
      el("label", {}, "Valid for (seconds) ", ttl),
      el("label", {}, "Viewer id (optional) ", sub),
      el("p", { class: "muted" }, "A viewer id (the token's sub: 1 to 64 of A-Z a-z 0-9 . _ : @ -) counts the viewer's sessions against the stream's limit per viewer id, and lets you revoke that viewer's tokens."),
      s.playAuth === "open" ? el("p", { class: "muted" }, "This stream is open: viewers need no token.") : null,
      result,
    ], [
      { label: "Close" },
      {
        label: "Mint token",
        cls: "primary",
        onClick: async () => {
          const viewerId = sub.value.trim();
          const minted = await api("POST", streamPath(s, "/tokens"), { ttl: Number(ttl.value), ...(viewerId ? { sub: viewerId } : {}) });
          const base = $("#play-template").value.replaceAll("{app}", s.app).replaceAll("{stream}", s.stream);
          const url = `${base}${base.includes("?") ? "&" : "?"}token=${minted.token}`;
          const forWhom = minted.sub ? ` for viewer ${minted.sub}` : "";
          result.replaceChildren(secretField(url, `Play URL${forWhom}, valid until ${new Date(minted.expiresAt).toLocaleString()}:`));
          return false;
        },
      },
    ]);
  },

  end(s) {
    const name = `${s.app}/${s.stream}`;
    confirmEnd(`End every session of ${name}?`, streamPath(s, "/sessions"), name,
      `The publisher and all viewers of ${name} (${s.vhost}) end in streamgate: the stream shows idle and its slots are free.`);
  },

  async details(s) {
    const name = `${s.app}/${s.stream}`;
    const sessions = el("div", { class: "sessions" }, el("p", { class: "muted" }, "Loading…"));
    const body = el("div", { class: "events" }, el("p", { class: "muted" }, "Loading…"));
    const byId = viewersById(s, async () => renderSessions(sessions, await api("GET", streamPath(s))));
    openDialog(`${name}: sessions and last decisions`, [sessions, usageCharts(s), byId, el("h3", {}, "Last decisions"), body], [{ label: "Close" }]);
    const [fresh, log] = await Promise.allSettled([api("GET", streamPath(s)), api("GET", streamPath(s, "/events"))]);
    if (fresh.status === "fulfilled") renderSessions(sessions, fresh.value);
    else sessions.replaceChildren(el("p", { class: "error" }, failure(fresh.reason)));
    if (log.status === "rejected") {
      body.replaceChildren(el("p", { class: "error" }, failure(log.reason)));
      return;
    }
    const { events } = log.value;
    // Viewer shards the Worker could not ask: their lines are missing (say so, rather than "No decisions yet.").
    const missing = Array.isArray(log.value.unreachable) && log.value.unreachable.length > 0
      ? el("p", { class: "error" }, `Not shown: the decisions of ${plural(log.value.unreachable.length, "viewer shard")} that could not be asked (${log.value.unreachable.join(", ")}).`)
      : null;
    body.replaceChildren(
      ...(missing ? [missing] : []),
      events.length === 0
        ? el("p", { class: "muted" }, "No decisions yet.")
        : el("table", {},
            el("thead", {}, el("tr", {}, ...["Time", "Action", "Server", "Client", "IP", "Decision", "Reason"].map((h) => el("th", {}, h)))),
            el("tbody", {}, ...events.map((e) =>
              el("tr", {},
                el("td", {}, new Date(e.at).toLocaleTimeString()), el("td", {}, e.action), el("td", {}, e.server),
                el("td", {}, e.client), el("td", {}, e.ip), el("td", { class: e.decision }, e.decision), el("td", {}, e.reason))))),
    );
  },

  revoke(s) {
    openDialog(`Revoke ${s.app}/${s.stream}?`, [
      el("p", {}, "The stream and its key are deleted: every later publish and play is refused. A publisher already live keeps streaming until it stops."),
    ], [
      { label: "Cancel" },
      {
        label: "Revoke",
        cls: "danger",
        onClick: async () => {
          await api("DELETE", streamPath(s));
          await refresh();
        },
      },
    ]);
  },
};

// --- audience: viewers per viewer shard (one per SRS server) and per location ---------

const count = (n) => (Number.isInteger(n) && n > 0 ? n : 0);
/** The shards of a stream (newer API); an older one has none, and says so by leaving the field out. */
const shardsOf = (s) => (Array.isArray(s.shards) ? s.shards.filter((x) => x && typeof x === "object") : null);
const text = (v) => (typeof v === "string" ? v : "");
/** "AMS · NL", "AMS", "NL", or "—": where the Worker that created the shard ran (request.cf). */
function placeText(colo, country) {
  return [text(colo), text(country)].filter(Boolean).join(" · ") || "—";
}

/**
 * The "Audience" part of the details dialog: one row per viewer shard (server, location,
 * viewers, suspended, leased and unused slots), totals per location when the platform
 * told any, and the slots leased but unused in all. Nothing for an older Worker.
 */
function audience(s) {
  const shards = shardsOf(s);
  if (shards === null) return null;
  const capped = s.maxViewers !== null && s.maxViewers !== undefined;
  const rows = shards
    .map((x) => {
      const viewers = count(x.viewers);
      const leased = count(x.leased);
      return { serverId: text(x.serverId), colo: text(x.colo), country: text(x.country), viewers, suspended: count(x.suspendedViewers), leased, unused: Math.max(0, leased - viewers - count(x.suspendedViewers)) };
    })
    .sort((a, b) => a.colo.localeCompare(b.colo) || a.serverId.localeCompare(b.serverId));
  const slots = (n) => (capped ? String(n) : "—");
  const noCap = capped ? undefined : "No cap: no slots are leased";
  const head = (first) => el("thead", {}, el("tr", {},
    ...first.map((h) => el("th", {}, h)),
    ...["Viewers", "Suspended", "Leased", "Unused"].map((h) => el("th", { class: "num" }, h))));
  const figures = (r) => [
    el("td", { class: "num", "data-col": "viewers" }, String(r.viewers)),
    el("td", { class: "num", "data-col": "suspended" }, String(r.suspended)),
    el("td", { class: "num", "data-col": "leased", title: noCap }, slots(r.leased)),
    el("td", { class: "num", "data-col": "unused", title: noCap }, slots(r.unused)),
  ];
  const byShard = rows.length === 0
    ? el("p", { class: "muted" }, "No SRS server holds viewers or slots of this stream.")
    : el("div", { class: "scroll" }, el("table", { class: "audience shards" }, head(["Server", "Location"]),
        el("tbody", {}, ...rows.map((r) =>
          el("tr", { "data-server": r.serverId }, el("td", { class: "server" }, r.serverId), el("td", { "data-col": "place" }, placeText(r.colo, r.country)), ...figures(r))))));
  let byRegion = null;
  if (rows.some((r) => r.colo)) {
    const regions = new Map();
    for (const r of rows) {
      const key = r.colo;
      const t = regions.get(key) ?? { colo: r.colo, countries: new Set(), servers: 0, viewers: 0, suspended: 0, leased: 0, unused: 0 };
      if (r.country) t.countries.add(r.country);
      t.servers++;
      t.viewers += r.viewers;
      t.suspended += r.suspended;
      t.leased += r.leased;
      t.unused += r.unused;
      regions.set(key, t);
    }
    byRegion = el("div", { class: "scroll" }, el("table", { class: "audience regions" }, head(["Location"]),
      el("tbody", {}, ...[...regions.values()].map((t) =>
        el("tr", { "data-colo": t.colo },
          el("td", { "data-col": "place" }, t.colo ? placeText(t.colo, [...t.countries].join("/")) : "unknown", el("span", { class: "sub" }, plural(t.servers, "server"))),
          ...figures(t))))));
  }
  const unused = count(s.leasedUnused);
  return el("div", { class: "audience-box" },
    el("h3", {}, "Audience"),
    byShard,
    byRegion ? el("h3", {}, "By location") : null,
    byRegion,
    el("p", { class: "leased-unused", title: "Slots the servers' viewer shards hold for their next viewers: other servers get them back when they need them" },
      capped ? `${plural(unused, "leased slot")} unused.` : "No cap: no slots are leased."));
}

/**
 * The sessions part of the details dialog: the publisher and any conflicting publisher
 * sessions, each with an End button (ends that one session: ?server=&client=), and viewers.
 */
function renderSessions(container, s, message = "") {
  const name = `${s.app}/${s.stream}`;
  const result = el("p", { class: "result", role: "status" }, message);
  const publishers = [
    ...(s.publisher ? [{ ...s.publisher, state: s.publisher.state ?? "live", current: true }] : []),
    ...conflictsOf(s).map((c) => ({ ...c, state: c.state ?? "conflict", current: false })),
  ];
  const endOne = (p) => {
    const b = el("button", {
      type: "button", class: "danger", "data-action": "end-publisher", "data-client": p.clientId,
      title: "End this publisher session in streamgate's accounting, and kick it on SRS if streamgate has its server's API",
    }, "End");
    b.addEventListener("click", async () => {
      b.disabled = true;
      let message;
      try {
        const r = await api("DELETE", streamPath(s, "/sessions", { server: p.serverId, client: p.clientId }));
        const ended = (Array.isArray(r.ended) ? r.ended : []).map((e) => ({ ...e, serverId: e.serverId ?? p.serverId }));
        message = `Ended ${plural(ended.length, "session")}${ended.length ? `: ${ended.map(endedLine).join("; ")}` : " (it had already ended)"}. ` +
          onSrsText(r, ended.length);
        $("#status").textContent = `ended ${plural(ended.length, "session")} of ${name}`;
      } catch (err) {
        result.textContent = failure(err);
        b.disabled = false;
        return;
      }
      result.textContent = message;
      refresh();
      try {
        renderSessions(container, await api("GET", streamPath(s)), message);
      } catch (err) {
        result.textContent = `${message} (${failure(err)})`;
      }
    });
    return b;
  };
  const viewers = suspendedViewersOf(s) > 0 ? `${s.viewers} (+${suspendedViewersOf(s)} suspended)` : String(s.viewers);
  container.replaceChildren(
    el("h3", {}, "Publisher sessions"),
    publishers.length === 0
      ? el("p", { class: "muted" }, "No publisher.")
      : el("table", { class: "publishers" },
          el("thead", {}, el("tr", {}, ...["Role", "Server", "Client", "IP", "Since", "State", ""].map((h) => el("th", {}, h)))),
          el("tbody", {}, ...publishers.map((p) =>
            el("tr", { "data-client": p.clientId },
              el("td", {}, p.current ? "publisher" : "other publisher"),
              el("td", {}, p.serverId, el("span", { class: "sub" }, `service ${p.serviceId}`)),
              el("td", {}, p.clientId),
              el("td", {}, p.ip || "—"),
              el("td", {}, p.since ? new Date(p.since).toLocaleTimeString() : "—"),
              el("td", {}, el("span", { class: `badge ${p.state}` }, p.state)),
              el("td", {}, endOne(p)))))),
    el("p", { class: "viewer-count" }, `Viewers: ${viewers}${s.maxViewers === null ? "" : ` of at most ${s.maxViewers}`}`, viewerIdsText(s) ? [" · ", viewerIdsText(s)] : null, "."),
    audience(s),
    el("p", { class: "muted" }, ENDING_NOTE),
    result,
  );
}

// --- viewers by id: sessions per viewer id (play token sub), revocations, the limit per viewer id ---

/** Distinct viewer ids among the counted viewers (newer API), next to the viewer count; open streams have none. */
function viewerIdsText(s) {
  if (!Number.isInteger(s.distinctViewerIds) || (s.distinctViewerIds === 0 && s.playAuth !== "token")) return null;
  return el("span", { class: "sub viewer-ids", title: "Distinct viewer ids (play token sub) among the counted viewers" }, plural(s.distinctViewerIds, "viewer id"));
}

/** The limit per viewer id in a few words; null without one (or from an older Worker). */
function sessionLimitText(s) {
  if (!Number.isInteger(s.maxSessionsPerViewer)) return null;
  const extra = s.onExtraViewerSession === "replace" ? "an extra one replaces the oldest" : "an extra one is denied";
  return `at most ${plural(s.maxSessionsPerViewer, "session")} per viewer id, ${extra}`;
}

const EXTRA_SESSION_OPTIONS = () => [el("option", { value: "deny" }, "deny the new one"), el("option", { value: "replace" }, "replace the oldest")];

/** The create form's fields for the limit per viewer id, as PUT /admin/streams/… takes them. */
function viewerPolicyOf(form) {
  const max = form.get("maxSessionsPerViewer") ?? "";
  return { maxSessionsPerViewer: max === "" ? null : Number(max), onExtraViewerSession: form.get("onExtraViewerSession") ?? "deny" };
}

/** The edit dialog's fields for the limit per viewer id; null from an older Worker (it would refuse them). */
function viewerPolicyInputs(s) {
  if (!("maxSessionsPerViewer" in s)) return null;
  const max = el("input", { type: "number", min: 1, step: 1, value: s.maxSessionsPerViewer ?? "", placeholder: "no limit", name: "maxSessionsPerViewer" });
  const extra = el("select", { name: "onExtraViewerSession" }, EXTRA_SESSION_OPTIONS());
  extra.value = s.onExtraViewerSession === "replace" ? "replace" : "deny";
  return {
    fields: [
      el("label", {}, "Sessions per viewer id ", max),
      el("label", {}, "Extra session of a viewer id ", extra),
      el("p", { class: "muted" }, "Counted on token streams, per play token sub, on every edge together; empty: no limit."),
    ],
    value: () => ({ maxSessionsPerViewer: max.value === "" ? null : Number(max.value), onExtraViewerSession: extra.value }),
  };
}

/** Asks before a destructive action taken inside the details dialog, which stays open beneath. */
function askFirst(title, body, label, onConfirm) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-body").replaceChildren(...body);
  $("#confirm-error").textContent = "";
  const cancel = el("button", { type: "button" }, "Cancel");
  const go = el("button", { type: "button", class: "danger" }, label);
  cancel.addEventListener("click", () => dialog.close());
  go.addEventListener("click", async () => {
    go.disabled = true;
    try {
      await onConfirm();
      dialog.close();
    } catch (err) {
      $("#confirm-error").textContent = err.message;
      go.disabled = false;
    }
  });
  $("#confirm-buttons").replaceChildren(cancel, go);
  dialog.showModal();
}

const unixTime = (seconds) => new Date(seconds * 1000).toLocaleString();

/**
 * The "Viewers by id" part of the details dialog: the stream's sessions grouped by viewer id
 * (live and suspended, where: server and client), a Revoke button per viewer id (its tokens
 * issued up to now are refused, its sessions end), revoking every token issued before now,
 * and the revocations in force. `changed` runs after a revocation (the details redraw their counts).
 */
function viewersById(s, changed) {
  const list = el("div", { class: "viewer-list" }, el("p", { class: "muted" }, "Loading…"));
  const anonymous = el("p", { class: "anonymous muted" });
  const result = el("p", { class: "viewers-result", role: "status" });
  const revocations = el("div", { class: "revocation-list" }, el("p", { class: "muted" }, "Loading…"));
  const revokeAll = el("button", {
    type: "button", class: "danger", "data-action": "revoke-before",
    title: "Refuse every play token of this stream issued before now, and end the sessions that played with one",
  }, "Revoke all tokens issued before now");
  const reload = el("button", { type: "button", "data-action": "reload-viewers" }, "Refresh");

  const load = async () => {
    const [viewers, revoked] = await Promise.allSettled([api("GET", streamPath(s, "/viewers")), api("GET", streamPath(s, "/revocations"))]);
    if (viewers.status === "fulfilled") {
      const rows = Array.isArray(viewers.value.viewers) ? viewers.value.viewers : [];
      list.replaceChildren(rows.length === 0 ? el("p", { class: "muted" }, "No session with a viewer id.") : viewerTable(rows));
      const n = count(viewers.value.anonymous);
      anonymous.textContent = n > 0 ? `${plural(n, "session")} without a viewer id (open play, or tokens without sub).` : "";
    } else {
      list.replaceChildren(el("p", { class: "error" }, failure(viewers.reason)));
      anonymous.textContent = "";
    }
    if (revoked.status === "fulfilled") {
      const items = Array.isArray(revoked.value.revocations) ? revoked.value.revocations : [];
      revocations.replaceChildren(items.length === 0
        ? el("p", { class: "muted" }, "None.")
        : el("ul", { class: "revocations" }, ...items.map((r) => el("li", { "data-sub": r.sub ?? "*" },
            el("strong", {}, r.sub === null ? "Every viewer" : `Viewer ${r.sub}`),
            `: tokens issued before ${unixTime(r.before)}`,
            el("span", { class: "sub" }, r.expires === null
              ? "in force for good: v1 tokens, which carry no issue time, stay refused on this stream"
              : `in force until ${unixTime(r.expires)}, when the last token it covers has expired`)))));
    } else {
      revocations.replaceChildren(el("p", { class: "error" }, failure(revoked.reason)));
    }
  };

  const viewerTable = (rows) => el("div", { class: "scroll" }, el("table", { class: "viewer-ids" },
    el("thead", {}, el("tr", {},
      el("th", {}, "Viewer id"), el("th", { class: "num" }, "Live"), el("th", { class: "num" }, "Suspended"),
      el("th", {}, "Where (server · client)"), el("th", {}, el("span", { class: "visually-hidden" }, "Actions")))),
    el("tbody", {}, ...rows.map((v) => {
      const sessions = Array.isArray(v.sessions) ? v.sessions : [];
      const live = count(v.live);
      const button = el("button", {
        type: "button", class: "danger", "data-action": "revoke-viewer", ariaLabel: `Revoke viewer ${v.sub}`,
        title: "Refuse this viewer id's tokens issued up to now and end its sessions",
      }, "Revoke");
      button.addEventListener("click", () => revokeViewer(v.sub, sessions.length));
      return el("tr", { "data-sub": v.sub },
        el("td", { class: "viewer-id" }, v.sub),
        el("td", { class: "num", "data-col": "live" }, String(live)),
        el("td", { class: "num", "data-col": "suspended" }, String(Math.max(0, sessions.length - live))),
        el("td", { "data-col": "where" }, el("ul", { class: "where" }, ...sessions.map((x) => el("li", {},
          `${text(x.serverId)} · client ${text(x.clientId)}`,
          x.suspended ? el("span", { class: "badge suspended", title: "Its server is silent: the session is kept, not counted" }, "suspended") : null,
          x.since ? el("span", { class: "sub" }, `since ${new Date(x.since).toLocaleTimeString()} · service ${text(x.serviceId)}`) : null)))),
        el("td", { class: "actions" }, button));
    }))));

  /** POSTs the revocation, says what it ended, and redraws this section, the details and the list. */
  const revoke = async (body, what) => {
    let r;
    try {
      r = await api("POST", streamPath(s, "/revocations"), body);
    } catch (err) {
      throw new Error(failure(err));
    }
    const ended = Array.isArray(r.ended) ? r.ended : [];
    const where = ended.map((e) => `client ${e.clientId} on ${e.serverId}`).join("; ");
    const srs = Array.isArray(r.kicking)
      ? ` ${plural(r.kicking.length, "client")} being kicked on SRS.`
      : ended.length > 0 ? " SRS keeps these clients connected (no SRS API set): kick them on SRS if they must go." : "";
    const message = `Revoked ${what}: ended ${plural(ended.length, "session")}${ended.length ? ` (${where})` : ""}.${srs}`;
    $("#status").textContent = `revoked ${what} on ${s.app}/${s.stream}: ended ${plural(ended.length, "session")}`;
    refresh();
    await Promise.allSettled([load(), changed?.()]);
    result.textContent = message;
  };

  const revokeViewer = (sub, sessions) => askFirst(`Revoke viewer ${sub}?`, [
    el("p", {}, s.playAuth === "open"
      ? `Every play token of viewer id ${sub} for ${s.app}/${s.stream} issued up to now will be refused once the stream asks for tokens. It is open now: viewers need no token, so its ${plural(sessions, "session")} go on until the stream asks for tokens (then they end).`
      : `Every play token of viewer id ${sub} for ${s.app}/${s.stream} issued up to now is refused from now on, and its ${plural(sessions, "session")} end.`),
    el("p", { class: "muted" }, "Tokens minted for this viewer id more than 61 s from now are accepted again (the gate allows a backend's clock to run up to 60 s fast, so the revocation reaches that far ahead)."),
  ], "Revoke", () => revoke({ sub }, `viewer ${sub}`));

  revokeAll.addEventListener("click", () => askFirst(`Revoke every token of ${s.app}/${s.stream} issued before now?`, [
    el("p", {}, "Every play token of this stream issued before now, whoever it names, is refused from now on, and every session that played with one ends."),
    el("p", { class: "muted" }, "Tokens minted from now on are accepted, but v1 tokens (the format without an issue time) are refused on this stream from now on, for good. Viewers of an open stream need no token and are not affected until the stream asks for tokens."),
  ], "Revoke all", () => revoke({ before: Math.floor(gateNow() / 1000) + 1 }, "every token issued before now")));
  reload.addEventListener("click", () => {
    result.textContent = "";
    load();
  });

  const limit = sessionLimitText(s);
  load();
  return el("div", { class: "viewers-by-id" },
    el("h3", {}, "Viewers by id"),
    el("p", { class: "muted" },
      s.playAuth === "open" ? "This stream is open: viewers play without tokens, so they have no viewer id. " : "",
      limit ? `${limit[0].toUpperCase()}${limit.slice(1)}.` : "No limit of sessions per viewer id."),
    list,
    anonymous,
    el("div", { class: "row-actions" }, revokeAll, reload),
    result,
    el("h4", {}, "Revocations in force"),
    revocations);
}

showApp(sessionStorage.getItem(TOKEN_KEY) !== null);
