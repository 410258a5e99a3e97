// Models: an admin uploads ONNX files (with progress), sees versions, points the `stable`
// and `canary` aliases (with the canary's share of traffic) and removes versions; a detect
// key sees its own tenant's models and can try one.

import { call, upload } from "./api.js";
import { bytes, confirmButton, field, h, notice, replace, table, when } from "./dom.js";
import { tenantPicker } from "./picker.js";

const NAME_PATTERN = "[a-z0-9]([a-z0-9_\\-]{0,61}[a-z0-9])?";

const ALIAS_ORDER = ["stable", "canary"];

function aliasText(aliases) {
  const ordered = Object.entries(aliases).sort(([a], [b]) => ALIAS_ORDER.indexOf(a) - ALIAS_ORDER.indexOf(b));
  const parts = ordered.map(([alias, target]) =>
    alias === "canary"
      ? `canary → v${target.version} (${target.weight}% of requests)`
      : `${alias} → v${target.version}`,
  );
  return parts.length ? parts.join(", ") : "no aliases (the latest version answers)";
}

function aliasForm(model, base, status, refresh) {
  const alias = h(
    "select",
    { name: "alias" },
    h("option", { value: "stable" }, "stable"),
    h("option", { value: "canary" }, "canary"),
  );
  const version = h(
    "select",
    { name: "version" },
    model.versions.map((v) => h("option", { value: String(v.version) }, `v${v.version}`)),
  );
  version.value = String(model.versions[model.versions.length - 1].version);
  const weight = h("input", { type: "number", name: "weight", min: "0", max: "100", step: "1", value: "10" });
  const weightField = field("Canary weight (%)", weight);
  weightField.hidden = true;
  alias.addEventListener("change", () => (weightField.hidden = alias.value !== "canary"));
  const form = h(
    "form",
    { class: "inline-form", "aria-label": `Aliases of ${model.name}` },
    field("Alias", alias),
    field("Version", version),
    weightField,
    h("button", { type: "submit" }, "Set alias"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { version: Number(version.value), weight: alias.value === "canary" ? Number(weight.value) : null };
    try {
      await call("PUT", `${base}/${encodeURIComponent(model.name)}/aliases/${alias.value}`, { json: body });
      status.ok(`${model.name}: ${alias.value} → v${body.version}.`);
      await refresh();
    } catch (err) {
      status.error(err);
    }
  });
  return form;
}

function modelCard(model, base, status, refresh) {
  const path = `${base}/${encodeURIComponent(model.name)}`;
  const rows = model.versions.map((v) => [
    `v${v.version}`,
    bytes(v.size_bytes),
    h("code", { title: v.sha256 }, v.sha256.slice(0, 12)),
    when(v.created_at),
    confirmButton("Remove", `Remove v${v.version}`, async () => {
      try {
        await call("DELETE", path, { query: { version: v.version } });
        status.ok(`Removed ${model.name} v${v.version}.`);
        await refresh();
      } catch (err) {
        status.error(err);
      }
    }),
  ]);
  return h(
    "article",
    { class: "card model", dataset: { model: model.name } },
    h("header", {}, h("h2", {}, model.name), h("span", { class: "aliases" }, aliasText(model.aliases))),
    table(`Versions of ${model.name}`, ["Version", "Size", "sha256", "Uploaded", ""], rows),
    aliasForm(model, base, status, refresh),
    h(
      "div",
      { class: "actions" },
      confirmButton("Remove model", `Remove ${model.name} and all its versions`, async () => {
        try {
          await call("DELETE", path);
          status.ok(`Removed ${model.name}.`);
          await refresh();
        } catch (err) {
          status.error(err);
        }
      }),
    ),
  );
}

function uploadForm(picker, status, refresh) {
  const name = h("input", {
    id: "model-name",
    name: "name",
    required: true,
    pattern: NAME_PATTERN,
    maxlength: "63",
    autocomplete: "off",
  });
  const file = h("input", { id: "model-file", name: "file", type: "file", required: true, accept: ".onnx" });
  const alias = h(
    "select",
    { id: "model-alias", name: "alias" },
    h("option", { value: "" }, "none"),
    h("option", { value: "stable" }, "stable"),
    h("option", { value: "canary" }, "canary"),
  );
  const weight = h("input", { id: "model-weight", type: "number", min: "0", max: "100", step: "1", value: "10" });
  const weightField = field("Canary weight (%)", weight);
  weightField.hidden = true;
  alias.addEventListener("change", () => (weightField.hidden = alias.value !== "canary"));
  const progress = h("progress", { id: "upload-progress", max: "100", value: "0" });
  const percent = h("span", { id: "upload-percent", "aria-live": "polite" });
  const progressField = field("Upload progress", progress);
  progressField.append(percent);
  progressField.hidden = true;
  const submit = h("button", { type: "submit", class: "primary" }, "Upload model");
  file.addEventListener("change", () => {
    if (!name.value && file.files[0]) {
      const stem = file.files[0].name.replace(/\.onnx$/i, "").toLowerCase().replace(/[^a-z0-9_-]+/g, "-");
      name.value = stem.replace(/^[-_]+|[-_]+$/g, "").slice(0, 63);
    }
  });
  const form = h(
    "form",
    { class: "upload-form", "aria-label": "Upload a model" },
    h("h2", {}, "Upload a model version"),
    h(
      "div",
      { class: "grid" },
      field("Model name", name),
      field("ONNX file", file),
      field("Point alias", alias),
      weightField,
    ),
    h("div", { class: "actions" }, submit),
    progressField,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = file.files[0];
    if (!chosen || !name.reportValidity()) {
      if (!chosen) status.error({ code: "invalid_argument", message: "choose an ONNX file" });
      return;
    }
    submit.disabled = true;
    progressField.hidden = false;
    progress.value = 0;
    percent.textContent = " 0%";
    const query = { alias: alias.value, canary_weight: alias.value === "canary" ? weight.value : null };
    try {
      const pushed = await upload(
        `/admin/tenants/${encodeURIComponent(picker.value())}/models/${encodeURIComponent(name.value.trim())}`,
        chosen,
        query,
        (sent, total) => {
          progress.value = Math.round((100 * sent) / total);
          percent.textContent = ` ${progress.value}%`;
        },
      );
      progress.value = 100;
      percent.textContent = " 100%";
      status.ok(`Uploaded ${pushed.name} v${pushed.version} (sha256 ${pushed.sha256.slice(0, 12)}…).`);
      form.reset();
      weightField.hidden = true;
      await refresh();
    } catch (err) {
      status.error(err);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** The admin's models view for one tenant. */
export async function adminModelsView(section, ctx) {
  const status = notice();
  const list = h("div", { id: "model-list", class: "cards" });
  let asks = 0;
  const refresh = async () => {
    const tenant = picker.value();
    const asked = ++asks;
    const base = `/admin/tenants/${encodeURIComponent(tenant)}/models`;
    const models = await call("GET", base, { signal: ctx.signal });
    if (asked !== asks) return; // a newer choice was made while this answer was on its way
    replace(
      list,
      models.length
        ? models.map((model) => modelCard(model, base, status, refresh))
        : h("p", { class: "muted" }, `${tenant} has no models yet.`),
    );
  };
  const picker = await tenantPicker(ctx, {
    changed: () => {
      status.clear();
      refresh().catch((err) => status.error(err));
    },
  });
  section.append(picker.node);
  if (picker.value() === null) return;
  section.append(uploadForm(picker, status, refresh), status.node, list);
  await refresh();
}

/** A detect key's view of its own tenant's models. */
export async function tenantModelsView(section, ctx) {
  const { models } = await call("GET", "/v1/models", { signal: ctx.signal });
  const cards = models.map((model) =>
    h(
      "article",
      { class: "card model", dataset: { model: model.name } },
      h("header", {}, h("h2", {}, model.name), h("span", { class: "aliases" }, aliasText(model.aliases))),
      h("p", {}, "Versions: ", model.versions.map((v) => `v${v}`).join(", ")),
      h(
        "div",
        { class: "actions" },
        h(
          "a",
          { href: "#/try", class: "button", on: { click: () => (ctx.shared.model = model.name) } },
          `Try ${model.name}`,
        ),
      ),
    ),
  );
  section.append(
    h("p", { class: "tenant-fixed" }, "Tenant: ", h("strong", { id: "tenant-name" }, ctx.session.tenant)),
    h("div", { id: "model-list", class: "cards" }, cards.length ? cards : h("p", { class: "muted" }, "No models yet.")),
  );
}
