// DOM helpers. Everything shown to the user is built as elements and text nodes:
// data never passes through an HTML parser (no innerHTML anywhere in the console).

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (name === "text") {
      node.textContent = String(value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: h("button", {type: "button", on: {click}}, "Save"). Strings become text nodes. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  apply(node, attrs);
  append(node, children);
  return node;
}

/** An SVG element, built the same way. */
export function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  apply(node, attrs);
  append(node, children);
  return node;
}

/** Replace every child of `node`. */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

let counter = 0;

/** A unique element id, for `<label for>`. */
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A control with its `<label for>`, in one wrapper. */
export function field(labelText, control) {
  if (!control.id) control.id = uid("f");
  return h("div", { class: "field" }, h("label", { for: control.id }, labelText), control);
}

/** A live region that shows one message (an API error's code and message, or a success). */
export function notice() {
  const box = h("div", { class: "notice", role: "status", "aria-live": "polite" });
  box.hidden = true;
  return {
    node: box,
    error(err) {
      box.className = "notice error";
      box.setAttribute("role", "alert");
      replace(box, err.code ? h("code", { class: "code" }, err.code) : null, " ", err.message || String(err));
      box.hidden = false;
    },
    ok(...parts) {
      box.className = "notice ok";
      box.setAttribute("role", "status");
      replace(box, ...parts);
      box.hidden = false;
    },
    clear() {
      box.hidden = true;
      box.replaceChildren();
    },
  };
}

/** A button that asks once more before doing something destructive. */
export function confirmButton(label, confirmLabel, action) {
  const wrap = h("span", { class: "confirm" });
  const first = h("button", { type: "button", class: "danger" }, label);
  const sure = h("button", { type: "button", class: "danger strong" }, confirmLabel);
  const cancel = h("button", { type: "button" }, "Cancel");
  const ask = () => {
    replace(wrap, sure, cancel);
    sure.focus();
  };
  const reset = () => {
    replace(wrap, first);
    first.focus();
  };
  first.addEventListener("click", ask);
  cancel.addEventListener("click", reset);
  sure.addEventListener("click", async () => {
    sure.disabled = true;
    try {
      await action();
    } finally {
      sure.disabled = false;
    }
  });
  wrap.append(first);
  return wrap;
}

/** A table whose cells are text (or nodes) with a caption; wrapped so it scrolls sideways on narrow screens. */
export function table(caption, headers, rows) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
      h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell ?? "—"))))),
    ),
  );
}

/** A date and time in the reader's locale (ISO text kept in the title). */
export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return h("time", { datetime: iso, title: iso }, date.toLocaleString());
}

/** A byte count for people. */
export function bytes(count) {
  if (count < 1024) return `${count} B`;
  const units = ["KiB", "MiB", "GiB"];
  let value = count / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
