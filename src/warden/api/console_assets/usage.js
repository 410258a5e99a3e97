// Usage over the last hour, per tenant: requests, refusals by reason, p50/p99 latency
// (from the audit trail of every replica) and the queue right now (this replica).
// Refreshes itself while the view is open.

import { call } from "./api.js";
import { barChart, lineChart, nowChart } from "./charts.js";
import { h, notice, replace } from "./dom.js";
import { tenantPicker } from "./picker.js";

const MINUTES = 60;
const BUCKET_SECONDS = 60;
const REFRESH_MS = 15000;
const REASON_CLASSES = ["s2", "s3", "s4", "s5", "s6", "s7"];

function tenantUsage(name, buckets, live) {
  const starts = buckets.map((bucket) => bucket.start);
  const reasons = [...new Set(buckets.flatMap((bucket) => Object.keys(bucket.refusals)))].sort();
  const total = (pick) => buckets.reduce((sum, bucket) => sum + pick(bucket), 0);
  const requests = total((bucket) => bucket.requests);
  const ok = total((bucket) => bucket.ok);
  const now = live || { running: 0, queued: 0 };
  return h(
    "section",
    { class: "usage-tenant", dataset: { tenant: name }, "aria-label": `Usage of ${name}` },
    h("h2", {}, name),
    h(
      "p",
      { class: "summary" },
      `${requests} requests in the last hour: ${ok} answered, ${requests - ok} refused or failed.`,
    ),
    h(
      "div",
      { class: "charts" },
      barChart("Requests per minute", starts, [
        { name: "answered", cls: "s0", values: buckets.map((bucket) => bucket.ok) },
        { name: "refused or failed", cls: "s1", values: buckets.map((bucket) => bucket.requests - bucket.ok) },
      ]),
      barChart(
        "Refusals by reason",
        starts,
        reasons.map((reason, i) => ({
          name: reason,
          cls: REASON_CLASSES[i % REASON_CLASSES.length],
          values: buckets.map((bucket) => bucket.refusals[reason] || 0),
        })),
      ),
      lineChart(
        "Latency of answered requests",
        starts,
        [
          { name: "p50", cls: "s0", values: buckets.map((bucket) => bucket.p50_ms) },
          { name: "p99", cls: "s1", values: buckets.map((bucket) => bucket.p99_ms) },
        ],
        " ms",
      ),
      nowChart("Queue right now", [
        { name: "running", cls: "s0", value: now.running },
        { name: "queued", cls: "s1", value: now.queued },
      ]),
    ),
  );
}

/** The usage view: an admin key reads /admin/usage (an operator may pick a tenant), a detect key /v1/usage. */
export async function usageView(section, ctx) {
  const status = notice();
  const body = h("div", { id: "usage" });
  const admin = ctx.session.scope === "admin";
  const picker = admin ? await tenantPicker(ctx, { allowAll: true, changed: () => load() }) : null;
  const stamp = h("span", { class: "muted", id: "usage-updated" });
  const refresh = h("button", { type: "button", id: "usage-refresh" }, "Refresh");
  let asks = 0;
  async function load() {
    const asked = ++asks;
    try {
      const query = { minutes: MINUTES, bucket_seconds: BUCKET_SECONDS };
      const answer = admin
        ? await call("GET", "/admin/usage", { query: { ...query, tenant: picker.value() }, signal: ctx.signal })
        : await call("GET", "/v1/usage", { query, signal: ctx.signal });
      if (asked !== asks) return; // a newer choice or refresh was made while this answer was on its way
      const names = [...new Set([...Object.keys(answer.tenants), ...Object.keys(answer.live)])].sort();
      const empty = starts(answer).map((start) => ({
        start,
        requests: 0,
        ok: 0,
        refusals: {},
        p50_ms: null,
        p99_ms: null,
      }));
      replace(
        body,
        answer.truncated
          ? h("p", { class: "notice" }, "Too many records to count them all: the figures are partial.")
          : null,
        names.length
          ? names.map((name) => tenantUsage(name, answer.tenants[name] || empty, answer.live[name]))
          : h("p", { class: "muted" }, "No requests in the last hour."),
      );
      stamp.textContent = `Updated ${new Date().toLocaleTimeString()}`;
      status.clear();
    } catch (err) {
      if (err.name !== "AbortError") status.error(err);
    }
  }
  refresh.addEventListener("click", load);
  section.append(
    h("div", { class: "toolbar" }, picker ? picker.node : null, refresh, stamp),
    status.node,
    body,
  );
  await load();
  const timer = window.setInterval(load, REFRESH_MS);
  ctx.onCleanup(() => window.clearInterval(timer));
}

function starts(answer) {
  const since = Date.parse(answer.since);
  const until = Date.parse(answer.until);
  const step = answer.bucket_seconds * 1000;
  const out = [];
  for (let t = since; t < until; t += step) out.push(new Date(t).toISOString());
  return out;
}
