// The Warden console: sign-in, the session, navigation between views.
// Views are chosen by what the session's key may do: an admin key (an operator's, or a
// tenant's) gets the administrative views, a detect key its own tenant's models, usage
// and "try a model". The server enforces all of it; the page only leaves out what would fail.

import { ApiError, onSignedOut, request, setCsrf } from "./api.js";
import { auditView } from "./audit.js";
import { h, notice, replace } from "./dom.js";
import { keysView } from "./keys.js";
import { adminModelsView, tenantModelsView } from "./models.js";
import { tenantsView } from "./tenants.js";
import { tryView } from "./try.js";
import { usageView } from "./usage.js";

const ADMIN_VIEWS = {
  tenants: { label: "Tenants", render: tenantsView },
  keys: { label: "Keys", render: keysView },
  models: { label: "Models", render: adminModelsView },
  usage: { label: "Usage", render: usageView },
  audit: { label: "Audit", render: auditView },
};
const TENANT_VIEWS = {
  models: { label: "Models", render: tenantModelsView },
  usage: { label: "Usage", render: usageView },
  try: { label: "Try a model", render: tryView },
};

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");

let session = null;
let views = {};
let teardown = () => {};
const shared = { tenant: null, model: null };

function routeName() {
  const hash = window.location.hash;
  return hash.startsWith("#/") ? hash.slice(2).split("/")[0] : null;
}

function showNav() {
  const current = routeName();
  replace(
    nav,
    h(
      "ul",
      {},
      Object.entries(views).map(([name, view]) =>
        h("li", {}, h("a", { href: `#/${name}`, "aria-current": name === current ? "page" : null }, view.label)),
      ),
    ),
  );
  nav.hidden = false;
  const role = session.operator ? "Operator" : `Tenant ${session.tenant}`;
  replace(
    who,
    h("span", { class: "role", id: "session-who" }, role, " · ", h("span", { class: "scope" }, `${session.scope} key`)),
    h("button", { type: "button", id: "sign-out", on: { click: signOut } }, "Sign out"),
  );
  who.hidden = false;
}

async function show(focus) {
  teardown();
  let name = routeName();
  if (!(name in views)) {
    name = Object.keys(views)[0];
    history.replaceState(null, "", `#/${name}`);
  }
  showNav();
  const view = views[name];
  document.title = `${view.label} — Warden console`;
  const controller = new AbortController();
  const cleanups = [];
  teardown = () => {
    controller.abort();
    for (const cleanup of cleanups.splice(0)) cleanup();
  };
  const section = h("section", { class: "view", id: `view-${name}`, "aria-labelledby": `title-${name}` });
  const title = h("h1", { id: `title-${name}`, tabindex: "-1" }, view.label);
  section.append(title);
  replace(main, section);
  if (focus) title.focus();
  const ctx = {
    session,
    shared,
    signal: controller.signal,
    onCleanup: (fn) => cleanups.push(fn),
  };
  try {
    await view.render(section, ctx);
  } catch (err) {
    if (err.name === "AbortError") return;
    const box = notice();
    section.append(box.node);
    box.error(err);
  }
}

function viewsFor(data) {
  if (data.scope !== "admin") return TENANT_VIEWS;
  const tenants = { ...ADMIN_VIEWS.tenants, label: data.operator ? "Tenants" : "Tenant" };
  return { ...ADMIN_VIEWS, tenants };
}

function signedIn(data) {
  session = data;
  setCsrf(data.csrf);
  views = viewsFor(data);
  show(false);
}

/** The sign-in form; `message` ({code, message}) says why it is shown, `ok` marks it as news rather than an error. */
function signInView(message, ok = false) {
  teardown();
  teardown = () => {};
  session = null;
  setCsrf(null);
  nav.hidden = true;
  who.hidden = true;
  replace(nav);
  replace(who);
  document.title = "Sign in — Warden console";
  const status = notice();
  const input = h("input", {
    id: "key",
    name: "key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "key-help",
  });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { class: "signin-form", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "key" }, "API key"), input),
    h(
      "p",
      { id: "key-help", class: "muted" },
      "The key is exchanged for a session cookie and is not kept by this page or your browser.",
    ),
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    input.value = "";
    if (!key) {
      status.error(new ApiError(400, "invalid_argument", "enter an API key"));
      input.focus();
      return;
    }
    submit.disabled = true;
    try {
      const { data } = await request("POST", "/console/session", { json: { key } });
      signedIn(data);
    } catch (err) {
      status.error(err);
      input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  const section = h(
    "section",
    { class: "view signin", id: "view-signin", "aria-labelledby": "title-signin" },
    h("h1", { id: "title-signin" }, "Sign in"),
    form,
    status.node,
  );
  replace(main, section);
  if (message && ok) status.ok(message.message);
  else if (message) status.error(message);
  input.focus();
}

async function signOut() {
  try {
    await request("DELETE", "/console/session");
  } catch (err) {
    if (err.status !== 401) {
      const box = notice();
      main.prepend(box.node);
      box.error(err);
      return;
    }
  }
  signInView({ code: "signed_out", message: "You have signed out." }, true);
}

onSignedOut((err) => {
  if (session === null) return;
  signInView(new ApiError(err.status, err.code, `Your session has ended: ${err.message}. Sign in again.`));
});

document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

window.addEventListener("hashchange", () => {
  if (session !== null && routeName() !== null) show(true);
});

async function start() {
  try {
    const { data } = await request("GET", "/console/session");
    signedIn(data);
  } catch (err) {
    signInView(err.status === 401 ? null : err);
  }
}

start();
