// Tenants: their status and quotas. Operators create tenants, edit quotas in place,
// suspend, resume and delete; a tenant's admin key sees its own tenant, read only.

import { call } from "./api.js";
import { confirmButton, field, h, notice, replace, when } from "./dom.js";

const NAME_PATTERN = "[a-z0-9]([a-z0-9_\\-]{0,61}[a-z0-9])?";

/** The quota fields, in the order shown, with what each limits. */
const QUOTA = [
  { name: "rps", label: "Requests per second", step: "any" },
  { name: "burst", label: "Burst (requests)", step: "1" },
  { name: "max_concurrency", label: "Concurrent requests", step: "1" },
  { name: "max_queue", label: "Queued requests", step: "1" },
  { name: "weight", label: "Fair-share weight", step: "any", required: true },
  { name: "max_image_bytes", label: "Image size (bytes)", step: "1" },
  { name: "max_image_pixels", label: "Image pixels", step: "1" },
  { name: "daily_requests", label: "Requests per day", step: "1" },
];

function quotaList(quota) {
  return h(
    "dl",
    { class: "quota" },
    QUOTA.map((item) =>
      h("div", {}, h("dt", {}, item.label), h("dd", { dataset: { field: item.name } }, quota[item.name] ?? "no limit")),
    ),
    h("div", {}, h("dt", {}, "Isolation"), h("dd", { dataset: { field: "isolation" } }, quota.isolation)),
  );
}

/** The in-place editor of one tenant's quota; `saved(tenant)` gets the answer. */
function quotaForm(tenant, status, saved, cancelled) {
  const inputs = {};
  const controls = QUOTA.map((item) => {
    const input = h("input", {
      type: "number",
      min: "0",
      step: item.step,
      name: item.name,
      id: `quota-${tenant.name}-${item.name}`,
      placeholder: item.required ? "" : "no limit",
      required: item.required || null,
    });
    input.value = tenant.quota[item.name] ?? "";
    inputs[item.name] = input;
    return field(item.label, input);
  });
  const isolation = h(
    "select",
    { name: "isolation", id: `quota-${tenant.name}-isolation` },
    h("option", { value: "shared" }, "shared"),
    h("option", { value: "dedicated" }, "dedicated"),
  );
  isolation.value = tenant.quota.isolation;
  const form = h(
    "form",
    { class: "quota-form", "aria-label": `Quota of ${tenant.name}` },
    h("div", { class: "grid" }, controls, field("Isolation", isolation)),
    h("p", { class: "muted" }, "Leave a limit empty for no limit."),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Save quota"),
      h("button", { type: "button", on: { click: cancelled } }, "Cancel")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const changes = {};
    for (const item of QUOTA) {
      const text = inputs[item.name].value.trim();
      const value = text === "" ? null : Number(text);
      if (value !== (tenant.quota[item.name] ?? null)) changes[item.name] = value;
    }
    if (isolation.value !== tenant.quota.isolation) changes.isolation = isolation.value;
    if (Object.keys(changes).length === 0) {
      cancelled();
      return;
    }
    try {
      saved(await call("PATCH", `/admin/tenants/${encodeURIComponent(tenant.name)}`, { json: changes }));
    } catch (err) {
      status.error(err);
    }
  });
  return form;
}

function tenantCard(ctx, tenant, status, removed) {
  const card = h("article", { class: "card tenant", dataset: { tenant: tenant.name } });
  const render = (current) => {
    const path = `/admin/tenants/${encodeURIComponent(current.name)}`;
    const body = h("div", { class: "card-body" }, quotaList(current.quota));
    const actions = h("div", { class: "actions" });
    const act = async (method, suffix, message) => {
      try {
        const answer = await call(method, `${path}${suffix}`);
        render(answer);
        status.ok(message);
      } catch (err) {
        status.error(err);
      }
    };
    const go = (view, label) =>
      h("a", { href: `#/${view}`, class: "button", on: { click: () => (ctx.shared.tenant = current.name) } }, label);
    if (ctx.session.operator) {
      const edit = h("button", { type: "button" }, "Edit quota");
      edit.addEventListener("click", () => {
        const form = quotaForm(
          current,
          status,
          (answer) => {
            render(answer);
            status.ok(`Saved the quota of ${answer.name}.`);
          },
          () => render(current),
        );
        replace(body, form);
        form.querySelector("input").focus();
      });
      const active = current.status === "active";
      const toggle = h(
        "button",
        {
          type: "button",
          on: {
            click: () =>
              active
                ? act("POST", "/suspend", `Suspended ${current.name}.`)
                : act("POST", "/resume", `Resumed ${current.name}.`),
          },
        },
        active ? "Suspend" : "Resume",
      );
      const remove = confirmButton("Delete", `Delete ${current.name} and its keys and models`, async () => {
        try {
          await call("DELETE", path);
          removed(current.name);
          status.ok(`Deleted ${current.name}.`);
        } catch (err) {
          status.error(err);
        }
      });
      actions.append(edit, toggle, remove);
    }
    actions.append(go("keys", "Keys"), go("models", "Models"));
    replace(
      card,
      h(
        "header",
        {},
        h("h2", {}, current.name),
        h("span", { class: `badge ${current.status}` }, current.status),
        h("span", { class: "muted" }, "since ", when(current.created_at)),
      ),
      body,
      actions,
    );
  };
  render(tenant);
  return card;
}

function createForm(created, status) {
  const name = h("input", {
    id: "new-tenant",
    name: "name",
    required: true,
    pattern: NAME_PATTERN,
    maxlength: "63",
    autocomplete: "off",
    "aria-describedby": "new-tenant-help",
  });
  const form = h(
    "form",
    { class: "inline-form", "aria-label": "Create a tenant" },
    field("New tenant name", name),
    h("button", { type: "submit", class: "primary" }, "Create tenant"),
    h("p", { id: "new-tenant-help", class: "muted" }, "Lower-case letters, digits, '-' and '_'."),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const tenant = await call("POST", "/admin/tenants", { json: { name: name.value.trim() } });
      name.value = "";
      created(tenant);
      status.ok(`Created tenant ${tenant.name}.`);
    } catch (err) {
      status.error(err);
    }
  });
  return form;
}

/** The tenants view. */
export async function tenantsView(section, ctx) {
  const status = notice();
  const list = h("ul", { class: "cards", id: "tenant-list" });
  const removed = (name) => {
    for (const item of list.querySelectorAll("li")) {
      if (item.firstElementChild.dataset.tenant === name) item.remove();
    }
  };
  const add = (tenant) => list.append(h("li", {}, tenantCard(ctx, tenant, status, removed)));
  if (ctx.session.operator) section.append(createForm(add, status));
  section.append(status.node, list);
  const tenants = await call("GET", "/admin/tenants", { signal: ctx.signal });
  if (tenants.length === 0) status.ok("No tenants yet.");
  tenants.forEach(add);
}
