// API keys of a tenant: list by id, create (the key is shown once, with a copy button,
// and forgotten when the panel closes or the view changes), revoke.

import { call } from "./api.js";
import { confirmButton, field, h, notice, replace, table, when } from "./dom.js";
import { tenantPicker } from "./picker.js";

/** The once-only panel holding a new key; closing it drops the only copy the page had. */
function revealPanel(issued, tenant, status, closed) {
  const code = h("code", { id: "new-key", class: "secret" }, issued.key);
  const copy = h("button", { type: "button", id: "copy-key", class: "primary" }, "Copy key");
  const done = h("button", { type: "button", id: "close-key" }, "I have saved it");
  const panel = h(
    "div",
    { class: "reveal", role: "region", "aria-label": "New key" },
    h("p", {}, h("strong", {}, `New key ${issued.key_id} for ${tenant}. `), "Copy it now: it is shown only this once."),
    code,
    h("div", { class: "actions" }, copy, done),
  );
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(code.textContent);
      status.ok("Copied the key to the clipboard.");
    } catch {
      const range = document.createRange();
      range.selectNodeContents(code);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      status.ok("The clipboard is not available here: the key is selected, copy it with Ctrl+C.");
    }
  });
  const close = () => {
    code.textContent = "";
    panel.remove();
  };
  done.addEventListener("click", () => {
    close();
    closed();
  });
  return { node: panel, close };
}

async function keyList(ctx, tenant, box, status) {
  const asked = String(Number(box.dataset.asks ?? 0) + 1);
  box.dataset.asks = asked;
  const keys = await call("GET", `/admin/tenants/${encodeURIComponent(tenant)}/keys`, { signal: ctx.signal });
  if (box.dataset.asks !== asked) return; // a newer choice was made while this answer was on its way
  const rows = keys.map((key) => [
    h("code", {}, key.key_id),
    key.scope,
    when(key.created_at),
    key.revoked_at ? h("span", {}, "revoked ", when(key.revoked_at)) : "active",
    key.revoked_at
      ? ""
      : confirmButton("Revoke", `Revoke ${key.key_id}`, async () => {
          try {
            await call("DELETE", `/admin/keys/${encodeURIComponent(key.key_id)}`);
            status.ok(`Revoked ${key.key_id}.`);
            await keyList(ctx, tenant, box, status);
          } catch (err) {
            status.error(err);
          }
        }),
  ]);
  replace(
    box,
    keys.length
      ? table(`Keys of ${tenant}`, ["Key id", "Scope", "Created", "Status", ""], rows)
      : h("p", { class: "muted" }, `${tenant} has no keys yet.`),
  );
}

/** The keys view. */
export async function keysView(section, ctx) {
  const status = notice();
  const reveal = h("div", { id: "reveal" });
  const listBox = h("div", { id: "key-list" });
  let panel = null;
  const closePanel = () => {
    if (panel) panel.close();
    panel = null;
  };
  ctx.onCleanup(closePanel);
  const picker = await tenantPicker(ctx, {
    changed: async () => {
      closePanel();
      status.clear();
      await keyList(ctx, picker.value(), listBox, status).catch((err) => status.error(err));
    },
  });
  section.append(picker.node);
  const tenant = picker.value();
  if (tenant === null) return;
  const scope = h(
    "select",
    { id: "key-scope", name: "scope" },
    h("option", { value: "detect" }, "detect: run detections"),
    h("option", { value: "admin" }, "admin: manage this tenant's keys and models"),
  );
  const form = h(
    "form",
    { class: "inline-form", "aria-label": "Create a key" },
    field("Scope", scope),
    h("button", { type: "submit", class: "primary" }, "Create key"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const owner = picker.value();
    closePanel();
    try {
      const issued = await call("POST", `/admin/tenants/${encodeURIComponent(owner)}/keys`, {
        json: { scope: scope.value },
      });
      panel = revealPanel(issued, owner, status, () => (panel = null));
      replace(reveal, panel.node);
      status.clear();
      panel.node.querySelector("button").focus();
      await keyList(ctx, owner, listBox, status);
    } catch (err) {
      status.error(err);
    }
  });
  section.append(form, status.node, reveal, listBox);
  await keyList(ctx, tenant, listBox, status);
}
