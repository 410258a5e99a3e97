// The audit trail: filters (tenant, outcome, kind, time range, request id), paging with the
// API's cursor, a JSON Lines export of the same filters, and (operators) verifying every chain.

import { call, withQuery } from "./api.js";
import { field, h, notice, replace, table, when } from "./dom.js";
import { tenantPicker } from "./picker.js";

function localInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  return `${day}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function isoOf(localValue) {
  return localValue ? new Date(localValue).toISOString() : null;
}

function options(values) {
  return values.map(([value, label]) => h("option", { value }, label));
}

function entryRow(entry) {
  const event = entry.event;
  const what = event.kind === "request" ? event.route : [event.action, event.target].filter(Boolean).join(" ");
  return [
    when(event.time),
    event.kind,
    event.tenant ?? "—",
    what ?? "—",
    event.model ? `${event.model}${event.model_version ? ` v${event.model_version}` : ""}` : "—",
    event.status ?? "—",
    h("span", { class: `badge ${entry.outcome}` }, entry.outcome),
    event.error_code ?? "—",
    event.request_id ? h("code", { class: "request-id" }, event.request_id) : "—",
    event.total_ms === undefined ? "—" : event.total_ms.toFixed(1),
  ];
}

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function verifyResult(report) {
  const records = report.streams.reduce((sum, stream) => sum + stream.records, 0);
  const rows = report.streams.map((stream) => [
    h("code", {}, stream.stream),
    stream.records,
    stream.checkpoints,
    stream.ok ? "verifies" : `${stream.problem.kind} at ${stream.problem.seq}: ${stream.problem.message}`,
  ]);
  return h(
    "div",
    { id: "verify-result", class: report.ok ? "verify ok" : "verify bad" },
    h(
      "p",
      { role: "status" },
      h("strong", {}, report.ok ? "The audit trail verifies" : "The audit trail does NOT verify"),
      `: ${plural(report.streams.length, "chain")}, ${plural(records, "record")}.`,
    ),
    table("Audit chains", ["Stream", "Records", "Checkpoints", "Verdict"], rows),
  );
}

/** The audit view. */
export async function auditView(section, ctx) {
  const status = notice();
  const picker = await tenantPicker(ctx, { allowAll: true });
  const outcome = h(
    "select",
    { id: "audit-outcome", name: "outcome" },
    options([["", "any"], ["ok", "ok"], ["refused", "refused"], ["error", "error"]]),
  );
  const kind = h(
    "select",
    { id: "audit-kind", name: "kind" },
    options([["", "any"], ["request", "request"], ["admin", "admin"], ["job", "job"], ["deid", "deid"]]),
  );
  const since = h("input", { id: "audit-since", name: "since", type: "datetime-local" });
  since.value = localInput(new Date(Date.now() - 24 * 3600 * 1000));
  const until = h("input", { id: "audit-until", name: "until", type: "datetime-local" });
  const requestId = h("input", { id: "audit-request-id", name: "request_id", autocomplete: "off", maxlength: "128" });
  const sizes = ["25", "50", "100", "200"].map((size) => [size, size]);
  const limit = h("select", { id: "audit-limit", name: "limit" }, options(sizes));
  limit.value = "50";
  const exportLink = h(
    "a",
    { id: "audit-export", class: "button", download: "warden-audit.jsonl" },
    "Export JSON Lines",
  );
  const form = h(
    "form",
    { class: "filters", "aria-label": "Audit filters" },
    h(
      "div",
      { class: "grid" },
      picker.node,
      field("Outcome", outcome),
      field("Kind", kind),
      field("Since", since),
      field("Until", until),
      field("Request id", requestId),
      field("Per page", limit),
    ),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Search"), exportLink),
  );
  const results = h("div", { id: "audit-results" });
  const pager = h("nav", { class: "pager", "aria-label": "Audit pages" });
  const verifyBox = h("div", { id: "verify-box" });
  let filters = {};
  let cursors = [null];

  function currentFilters() {
    return {
      tenant: picker.value(),
      outcome: outcome.value,
      kind: kind.value,
      since: isoOf(since.value),
      until: isoOf(until.value),
      request_id: requestId.value.trim(),
    };
  }

  let asks = 0;
  async function showPage() {
    const asked = ++asks;
    const cursor = cursors[cursors.length - 1];
    replace(results, h("p", { class: "muted" }, "Loading…"));
    replace(pager);
    const answer = await call("GET", "/admin/audit", {
      query: { ...filters, limit: limit.value, cursor },
      signal: ctx.signal,
    });
    if (asked !== asks) return; // a newer search or page was asked for while this answer was on its way
    replace(
      results,
      answer.entries.length
        ? table(
            `Audit records, page ${cursors.length}`,
            ["Time", "Kind", "Tenant", "Route or action", "Model", "Status", "Outcome", "Error", "Request id", "ms"],
            answer.entries.map(entryRow),
          )
        : h("p", { class: "muted" }, "No records match."),
    );
    const first = cursors.length === 1;
    const previous = h("button", { type: "button", id: "audit-previous", disabled: first }, "Previous page");
    const next = h("button", { type: "button", id: "audit-next", disabled: answer.next === null }, "Next page");
    previous.addEventListener("click", () => {
      cursors.pop();
      showPage().catch((err) => status.error(err));
    });
    next.addEventListener("click", () => {
      cursors.push(answer.next);
      showPage().catch((err) => status.error(err));
    });
    replace(pager, previous, h("span", { class: "muted" }, `Page ${cursors.length}`), next);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    filters = currentFilters();
    cursors = [null];
    exportLink.href = withQuery("/admin/audit/export", filters);
    status.clear();
    try {
      await showPage();
    } catch (err) {
      status.error(err);
    }
  });
  section.append(form, status.node, results, pager);
  if (ctx.session.operator) {
    const verify = h("button", { type: "button", id: "audit-verify" }, "Verify audit chains");
    verify.addEventListener("click", async () => {
      verify.disabled = true;
      try {
        replace(verifyBox, verifyResult(await call("POST", "/admin/audit/verify")));
      } catch (err) {
        status.error(err);
      } finally {
        verify.disabled = false;
      }
    });
    section.append(
      h("section", { class: "verify-panel", "aria-label": "Verify" }, h("h2", {}, "Integrity"), verify, verifyBox),
    );
  }
  filters = currentFilters();
  exportLink.href = withQuery("/admin/audit/export", filters);
  await showPage();
}
