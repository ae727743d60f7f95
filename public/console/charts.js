// streamgate console: usage charts and the test-event button. Charts are plain SVG built here
// (no dependency, nothing inline: the console's CSP allows only its own files). Loaded before
// app.js, whose helpers (api, el, streamPath, failure) it calls once the page runs.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const FLEET_REFRESH_MS = 15_000;
const CHART = { width: 600, height: 150, left: 34, bottom: 18, top: 8 };

function svgEl(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  for (const child of children) if (child !== null) node.append(child);
  return node;
}

const hhmm = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
const round = (n) => (Number.isInteger(n) ? String(n) : n.toFixed(1));

/**
 * One series as a chart: `points` are {start, value}; "bars" draws a bar per point (hours),
 * "steps" a stepped area (minutes). The figure carries data-chart, data-points and data-max.
 */
function usageChart(name, title, points, kind, unit = "") {
  const max = Math.max(0, ...points.map((p) => p.value));
  const top = Math.max(1, max);
  const { width, height, left, bottom } = CHART;
  const plotW = width - left;
  const plotH = height - bottom - CHART.top;
  const x = (i) => left + (i * plotW) / Math.max(1, points.length);
  const y = (v) => CHART.top + plotH - (v / top) * plotH;
  const chart = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: `chart ${kind}` },
    svgEl("line", { x1: left, x2: width, y1: y(0), y2: y(0), class: "axis" }),
    svgEl("line", { x1: left, x2: width, y1: y(top), y2: y(top), class: "grid" }),
    svgEl("text", { x: left - 4, y: y(top) + 4, class: "label end" }, round(top)),
    svgEl("text", { x: left - 4, y: y(0), class: "label end" }, "0"));
  if (kind === "bars") {
    const w = Math.max(1, plotW / Math.max(1, points.length) - 1);
    points.forEach((p, i) => {
      chart.append(svgEl("rect", { x: x(i), y: y(p.value), width: w, height: y(0) - y(p.value), class: "bar" },
        svgEl("title", {}, `${hhmm(p.start)}: ${round(p.value)}${unit}`)));
    });
  } else {
    let d = `M ${x(0)} ${y(0)}`;
    points.forEach((p, i) => (d += ` L ${x(i)} ${y(p.value)} L ${x(i + 1)} ${y(p.value)}`));
    d += ` L ${x(points.length)} ${y(0)} Z`;
    chart.append(svgEl("path", { d, class: "area" }));
    points.forEach((p, i) => chart.append(svgEl("rect", { x: x(i), y: CHART.top, width: plotW / Math.max(1, points.length), height: plotH, class: "hover" },
      svgEl("title", {}, `${hhmm(p.start)}: ${round(p.value)}${unit}`))));
  }
  for (const i of [0, Math.floor(points.length / 2), points.length - 1]) {
    const last = i === points.length - 1 && i > 0;
    if (points[i]) chart.append(svgEl("text", { x: last ? width : x(i), y: height - 4, class: last ? "label end" : "label" }, hhmm(points[i].start)));
  }
  return el("figure", { class: "usage-chart", "data-chart": name, "data-points": points.length, "data-max": max },
    el("figcaption", {}, title, el("span", { class: "sub" }, `max ${round(max)}${unit}`)), chart);
}

/** The per-stream part of the details dialog: viewers per minute (last hour), and per hour (last 24 hours). */
function usageCharts(s) {
  const box = el("div", { class: "usage" }, el("p", { class: "muted" }, "Loading usage…"));
  Promise.all([api("GET", streamPath(s, "/usage", { resolution: "minute" })), api("GET", streamPath(s, "/usage"))])
    .then(([minutes, hours]) => {
      const viewerHours = hours.buckets.reduce((sum, b) => sum + b.viewerSeconds, 0) / 3600;
      const publishHours = hours.buckets.reduce((sum, b) => sum + b.publishSeconds, 0) / 3600;
      box.replaceChildren(
        el("h3", {}, "Usage"),
        usageChart("minute", "Concurrent viewers, last hour (per minute)", minutes.buckets.map((b) => ({ start: b.start, value: b.peakViewers })), "steps"),
        usageChart("hour-peak", "Peak viewers per hour, last 24 hours", hours.buckets.map((b) => ({ start: b.start, value: b.peakViewers })), "bars"),
        usageChart("hour-viewer-hours", "Viewer-hours per hour, last 24 hours", hours.buckets.map((b) => ({ start: b.start, value: b.viewerSeconds / 3600 })), "bars", " h"),
        el("p", { class: "muted" }, `Last 24 hours: ${round(viewerHours)} viewer-hours, ${round(publishHours)} hours published.` +
          (hours.incomplete ? ` Missing: the viewers of ${hours.incomplete.join(", ")} (unreachable).` : "")),
      );
    })
    .catch((err) => box.replaceChildren(el("p", { class: "error" }, `Usage: ${failure(err)}`)));
  return box;
}

// --- the fleet-wide chart and the test-event button, above the streams --------------------

const fleet = { at: 0, busy: false };

function fleetSection() {
  let section = document.querySelector("#fleet-usage");
  if (section) return section;
  section = el("section", { id: "fleet-usage" },
    el("div", { class: "fleet-chart" }, el("p", { class: "muted" }, "Loading the fleet's viewers…")),
    el("div", { class: "toolbar" },
      el("button", { type: "button", id: "send-test-event", title: "POST /admin/events/test: a webhook.test event to EVENTS_WEBHOOK_URL" }, "Send test event"),
      el("span", { id: "test-event-result", role: "status" })));
  document.querySelector("#streams-tab").prepend(section);
  section.querySelector("#send-test-event").addEventListener("click", sendTestEvent);
  return section;
}

async function refreshFleet() {
  fleet.busy = true;
  const box = fleetSection().querySelector(".fleet-chart");
  try {
    // GET /admin/usage covers 200 streams per call: the fleet's total is the sum over every page, each
    // asked for the first page's range (the minutes must line up).
    let usage = await api("GET", "/usage?resolution=minute");
    const points = usage.buckets.map((b) => ({ start: b.start, value: b.peakViewers }));
    const range = `resolution=minute&from=${encodeURIComponent(usage.from)}&to=${encodeURIComponent(usage.to)}`;
    while (usage.cursor) {
      usage = await api("GET", `/usage?${range}&cursor=${encodeURIComponent(usage.cursor)}`);
      usage.buckets.forEach((b, i) => points[i] && (points[i].value += b.peakViewers));
    }
    box.replaceChildren(usageChart("fleet-minute", "All streams: concurrent viewers, last hour (per minute)", points, "steps"));
  } catch (err) {
    box.replaceChildren(el("p", { class: "error" }, `Fleet usage: ${failure(err)}`));
  } finally {
    fleet.at = Date.now();
    fleet.busy = false;
  }
}

async function sendTestEvent() {
  const out = document.querySelector("#test-event-result");
  out.textContent = "Sending…";
  try {
    const sent = await api("POST", "/events/test");
    out.textContent = `Queued ${sent.type} ${sent.id}: your receiver should get it with this webhook-id.`;
  } catch (err) {
    out.textContent = failure(err);
  }
}

// Refreshed while the console is shown (logged in); a second apart at most when it is not due.
setInterval(() => {
  if (document.querySelector("#app")?.hidden === false && !fleet.busy && Date.now() - fleet.at >= FLEET_REFRESH_MS) refreshFleet();
}, 1000);
