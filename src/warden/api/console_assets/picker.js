// Which tenant a view shows: an operator chooses among every tenant, a tenant's admin key
// always sees its own (the page never lists another tenant for it).

import { call } from "./api.js";
import { field, h } from "./dom.js";

/**
 * A tenant chooser. `allowAll` adds "All tenants" (value null) for operators.
 * Resolves to {node, value()}; `changed(value)` runs on every choice after the first.
 */
export async function tenantPicker(ctx, { allowAll = false, changed = () => {} } = {}) {
  if (!ctx.session.operator) {
    const own = ctx.session.tenant;
    return {
      node: h("p", { class: "tenant-fixed" }, "Tenant: ", h("strong", { id: "tenant-name" }, own)),
      value: () => own,
    };
  }
  const tenants = await call("GET", "/admin/tenants", { signal: ctx.signal });
  const names = tenants.map((tenant) => tenant.name);
  if (names.length === 0 && !allowAll) {
    return {
      node: h("p", { class: "muted" }, "No tenants yet: create one in ", h("a", { href: "#/tenants" }, "Tenants"), "."),
      value: () => null,
    };
  }
  const select = h("select", { id: "tenant-select", name: "tenant" });
  if (allowAll) select.append(h("option", { value: "" }, "All tenants"));
  for (const name of names) select.append(h("option", { value: name }, name));
  if (ctx.shared.tenant && names.includes(ctx.shared.tenant)) select.value = ctx.shared.tenant;
  else if (!allowAll) ctx.shared.tenant = select.value;
  select.addEventListener("change", () => {
    if (select.value) ctx.shared.tenant = select.value;
    changed(select.value || null);
  });
  return { node: field("Tenant", select), value: () => select.value || null };
}
