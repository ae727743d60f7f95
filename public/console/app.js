// streamgate operator console. Everything it shows comes from the admin API;
// the admin token lives in sessionStorage only (gone when the tab closes).
"use strict";

const TOKEN_KEY = "streamgate.adminToken";
const TEMPLATE_KEY = "streamgate.playTemplate"; // not a secret: the SRS play URL pattern
const REFRESH_MS = 3000;
const DEFAULT_VHOST = "__defaultVhost__";

const $ = (selector) => document.querySelector(selector);
const state = { streams: [], servers: [], sort: { key: "name", dir: 1 }, filter: "", timer: null };

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

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
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
  const data = await res.json().catch(() => ({}));
  if (res.status === 401) {
    logout("The admin token was refused.");
    throw new ApiError(401, data.error ?? "unauthorized");
  }
  if (!res.ok) throw new ApiError(res.status, data.error ?? `HTTP ${res.status}`);
  return data;
}

async function listAll(path, field) {
  const items = [];
  let cursor;
  do {
    const page = await api("GET", cursor ? `${path}?cursor=${encodeURIComponent(cursor)}` : path);
    items.push(...page[field]);
    cursor = page.cursor;
  } while (cursor);
  return items;
}

function streamPath(s, suffix = "") {
  const vhost = s.vhost && s.vhost !== DEFAULT_VHOST ? `?vhost=${encodeURIComponent(s.vhost)}` : "";
  return `/streams/${encodeURIComponent(s.app)}/${encodeURIComponent(s.stream)}${suffix}${vhost}`;
}

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
  $("#login-error").textContent = message;
  $("#status").textContent = "";
  showApp(false);
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("#token").value);
  $("#token").value = "";
  try {
    await api("GET", "/streams");
    $("#login-error").textContent = "";
    showApp(true);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) logout(`Cannot reach the admin API: ${err.message}`);
  }
});
$("#logout").addEventListener("click", () => logout());

// --- refresh and render ---------------------------------------------------------

async function refresh() {
  try {
    const [streams, servers] = await Promise.all([listAll("/streams", "streams"), listAll("/servers", "servers")]);
    state.streams = streams;
    state.servers = servers;
    renderStreams();
    renderServers();
    $("#status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) $("#status").textContent = `refresh failed: ${err.message}`;
  }
}

function sortValue(s, key) {
  if (key === "live") return s.live ? 1 : 0;
  if (key === "viewers") return s.viewers;
  if (key === "playAuth") return s.playAuth;
  return `${s.app}/${s.stream}@${s.vhost}`;
}

function renderStreams() {
  const { key, dir } = state.sort;
  const filter = state.filter.toLowerCase();
  const rows = state.streams
    .filter((s) => !filter || `${s.vhost}/${s.app}/${s.stream}`.toLowerCase().includes(filter))
    .sort((a, b) => {
      const [x, y] = [sortValue(a, key), sortValue(b, key)];
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    })
    .map(streamRow);
  $("#streams tbody").replaceChildren(...rows);
  $("#streams-empty").hidden = state.streams.length > 0;
  for (const th of document.querySelectorAll("#streams th[data-sort]")) {
    th.setAttribute("aria-sort", th.dataset.sort === key ? (dir > 0 ? "ascending" : "descending") : "none");
  }
}

function streamRow(s) {
  const name = `${s.app}/${s.stream}`;
  const server = s.publisher ? state.servers.find((x) => x.serverId === s.publisher.serverId) : null;
  const publisher = s.publisher
    ? el("td", { class: "publisher" },
        el("span", {}, s.publisher.serverId),
        el("span", { class: "sub" }, `device ${server?.deviceId || "?"} · ip ${s.publisher.ip || "?"}`),
        el("span", { class: "sub" }, `since ${new Date(s.publisher.since).toLocaleTimeString()} · client ${s.publisher.clientId}`))
    : el("td", { class: "publisher muted" }, "—");
  const viewers =
    s.maxViewers === null
      ? el("td", { class: "viewers" }, el("span", { class: "count" }, String(s.viewers)), el("span", { class: "sub" }, "no cap"))
      : el("td", { class: "viewers" },
          el("span", { class: "count" }, String(s.viewers)), ` / ${s.maxViewers}`,
          el("meter", { min: 0, max: Math.max(s.maxViewers, 1), value: s.viewers, low: s.maxViewers * 0.8, high: s.maxViewers * 0.95, optimum: 0 }));
  const button = (label, action, cls) => el("button", { type: "button", class: cls, "data-action": action }, label);
  return el("tr", { "data-stream": name, "data-vhost": s.vhost },
    el("td", { class: "name" }, name, s.vhost !== DEFAULT_VHOST ? el("span", { class: "sub" }, s.vhost) : null),
    el("td", {}, el("span", { class: `badge ${s.live ? "live" : "idle"}` }, s.live ? "live" : "idle")),
    publisher,
    viewers,
    el("td", { class: "auth" }, s.playAuth),
    el("td", { class: "actions" },
      button("Edit", "edit"), button("Rotate key", "rotate"), button("Token", "token"),
      button("Events", "events"), button("Revoke", "revoke", "danger")));
}

function renderServers() {
  const rows = [...state.servers]
    .sort((a, b) => a.serverId.localeCompare(b.serverId))
    .map((x) =>
      el("tr", { "data-server": x.serverId },
        el("td", {}, x.serverId, el("span", { class: "sub" }, `service ${x.serviceId}`)),
        el("td", {}, x.deviceId || "—"),
        el("td", {}, x.ip || "—"),
        el("td", {}, x.lastHeartbeat ? ago(x.lastHeartbeat) : "no heartbeats"),
        el("td", {}, el("span", { class: `badge ${x.alive ? "alive" : "dead"}` }, x.alive ? "alive" : "dead")),
        el("td", {}, String(x.sessions))));
  $("#servers tbody").replaceChildren(...rows);
  $("#servers-empty").hidden = state.servers.length > 0;
}

// --- tabs, sorting, filtering ----------------------------------------------------

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
    $("#streams-tab").hidden = tab.dataset.tab !== "streams";
    $("#servers-tab").hidden = tab.dataset.tab !== "servers";
  });
}
for (const th of document.querySelectorAll("#streams th[data-sort]")) {
  th.addEventListener("click", () => {
    state.sort = { key: th.dataset.sort, dir: state.sort.key === th.dataset.sort ? -state.sort.dir : 1 };
    renderStreams();
  });
}
$("#filter").addEventListener("input", (event) => {
  state.filter = event.target.value;
  renderStreams();
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
    const created = await api("PUT", streamPath(s), { maxViewers: max === "" ? null : Number(max), playAuth: form.get("playAuth") });
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

const actions = {
  edit(s) {
    const max = el("input", { type: "number", min: 0, value: s.maxViewers ?? "", placeholder: "no cap", name: "maxViewers" });
    const auth = el("select", { name: "playAuth" }, el("option", { value: "open" }, "open"), el("option", { value: "token" }, "token"));
    auth.value = s.playAuth;
    openDialog(`Edit ${s.app}/${s.stream}`, [el("label", {}, "Max viewers ", max), el("label", {}, "Play auth ", auth)], [
      { label: "Cancel" },
      {
        label: "Save",
        cls: "primary",
        onClick: async () => {
          await api("PUT", streamPath(s), { maxViewers: max.value === "" ? null : Number(max.value), playAuth: auth.value });
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
    const result = el("div", {});
    openDialog(`Play token for ${s.app}/${s.stream}`, [
      el("label", {}, "Valid for (seconds) ", ttl),
      s.playAuth === "open" ? el("p", { class: "muted" }, "This stream is open: viewers need no token.") : null,
      result,
    ], [
      { label: "Close" },
      {
        label: "Mint token",
        cls: "primary",
        onClick: async () => {
          const minted = await api("POST", streamPath(s, "/tokens"), { ttl: Number(ttl.value) });
          const base = $("#play-template").value.replaceAll("{app}", s.app).replaceAll("{stream}", s.stream);
          const url = `${base}${base.includes("?") ? "&" : "?"}token=${minted.token}`;
          result.replaceChildren(secretField(url, `Play URL, valid until ${new Date(minted.expiresAt).toLocaleString()}:`));
          return false;
        },
      },
    ]);
  },

  async events(s) {
    const body = el("div", { class: "events" }, el("p", { class: "muted" }, "Loading…"));
    openDialog(`Last decisions for ${s.app}/${s.stream}`, [body], [{ label: "Close" }]);
    try {
      const { events } = await api("GET", streamPath(s, "/events"));
      body.replaceChildren(
        events.length === 0
          ? el("p", { class: "muted" }, "No decisions yet.")
          : el("table", {},
              el("thead", {}, el("tr", {}, ...["Time", "Action", "Server", "Client", "IP", "Decision", "Reason"].map((h) => el("th", {}, h)))),
              el("tbody", {}, ...events.map((e) =>
                el("tr", {},
                  el("td", {}, new Date(e.at).toLocaleTimeString()), el("td", {}, e.action), el("td", {}, e.server),
                  el("td", {}, e.client), el("td", {}, e.ip), el("td", { class: e.decision }, e.decision), el("td", {}, e.reason))))),
      );
    } catch (err) {
      body.replaceChildren(el("p", { class: "error" }, err.message));
    }
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

showApp(sessionStorage.getItem(TOKEN_KEY) !== null);
