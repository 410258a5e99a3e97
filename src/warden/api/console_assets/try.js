// Try a model: send one image as an ordinary detect request, draw the answer's boxes over
// the image, and re-filter them with a confidence slider without asking again. The image
// is shown from an object URL of the chosen file, revoked as soon as it is not shown.

import { request } from "./api.js";
import { field, h, notice, replace, s, table } from "./dom.js";

const ASKED_CONF = 0.01;
const SHOWN_CONF = 0.25;
const COLOURS = 6;

/** The boxes above `threshold` as SVG in image pixels; labels stay at least 11 CSS pixels tall at `shownWidth`. */
function overlay(answer, threshold, shownWidth) {
  const { width, height } = answer;
  const svg = s("svg", {
    id: "try-overlay",
    class: "overlay",
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "none",
    "aria-hidden": "true",
  });
  const readable = shownWidth > 0 ? (11 * width) / shownWidth : 0;
  const font = Math.round(Math.max(10, Math.max(width, height) / 45, readable));
  const placed = [];
  for (const found of answer.detections) {
    if (!(found.score > threshold)) continue;
    const [x1, y1, x2, y2] = found.box;
    const label = `${found.class_name} ${found.score.toFixed(2)}`;
    svg.append(
      s(
        "g",
        {
          class: `det c${found.class_id % COLOURS}`,
          dataset: { score: String(found.score), classId: String(found.class_id) },
        },
        s("rect", { x: x1, y: y1, width: x2 - x1, height: y2 - y1 }),
        s(
          "text",
          { x: x1 + 2, y: labelLine(placed, x1 + 2, y1, label, font), "font-size": font, class: "label" },
          label,
        ),
      ),
    );
  }
  return svg;
}

/** Where a box's label goes: above the box if there is room, else inside it, moved down past labels already placed
 * (the highest scores are placed first, so theirs sit closest to their boxes). */
function labelLine(placed, x, top, label, font) {
  const span = (y) => [x, y - font, x + label.length * font * 0.62, y + font * 0.3];
  const clash = (a, b) => a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
  let y = top - font * 0.3 > font ? top - font * 0.3 : top + font;
  for (let tries = 0; tries < 12 && placed.some((other) => clash(other, span(y))); tries += 1) y += font * 1.2;
  placed.push(span(y));
  return y;
}

function detectionTable(detections) {
  return table(
    "Detections shown",
    ["Class", "Score", "Box (x1, y1, x2, y2)"],
    detections.map((found) => [
      h("span", { class: "class-name" }, found.class_name),
      found.score.toFixed(3),
      found.box.map((v) => v.toFixed(1)).join(", "),
    ]),
  );
}

/** The try-a-model view (detect keys). */
export async function tryView(section, ctx) {
  const status = notice();
  const { data } = await request("GET", "/v1/models", { signal: ctx.signal });
  if (data.models.length === 0) {
    section.append(h("p", { class: "muted" }, "This tenant has no models yet."));
    return;
  }
  const model = h(
    "select",
    { id: "try-model", name: "model" },
    data.models.map((m) => h("option", { value: m.name }, m.name)),
  );
  if (ctx.shared.model && data.models.some((m) => m.name === ctx.shared.model)) model.value = ctx.shared.model;
  model.addEventListener("change", () => (ctx.shared.model = model.value));
  const image = h("input", { id: "try-file", name: "image", type: "file", accept: "image/*", required: true });
  const submit = h("button", { type: "submit", class: "primary" }, "Detect");
  const form = h(
    "form",
    { class: "inline-form", "aria-label": "Try a model" },
    field("Model", model),
    field("Image", image),
    submit,
  );
  const result = h("div", { id: "try-result" });
  let objectUrl = null;
  const release = () => {
    if (objectUrl !== null) URL.revokeObjectURL(objectUrl);
    objectUrl = null;
  };
  ctx.onCleanup(() => {
    release();
    result.replaceChildren();
  });

  function show(answer, file, requestId) {
    release();
    objectUrl = URL.createObjectURL(file);
    const picture = h("img", { id: "try-image", src: objectUrl, alt: `The image sent to ${answer.model}` });
    const stage = h("div", { class: "stage" }, picture, overlay(answer, SHOWN_CONF, 0));
    const slider = h("input", { id: "try-conf", type: "range", min: "0.01", max: "0.99", step: "0.01" });
    slider.value = String(SHOWN_CONF);
    const shownValue = h("output", { id: "try-conf-value", for: slider.id }, SHOWN_CONF.toFixed(2));
    const count = h("p", { id: "try-count", "aria-live": "polite" });
    const listing = h("div", { id: "try-detections" });
    const refilter = () => {
      const threshold = Number(slider.value);
      shownValue.textContent = threshold.toFixed(2);
      const kept = answer.detections.filter((found) => found.score > threshold);
      stage.replaceChild(overlay(answer, threshold, picture.clientWidth), stage.querySelector("svg"));
      count.textContent = `${kept.length} of ${answer.detections.length} detections above ${threshold.toFixed(2)}`;
      replace(
        listing,
        kept.length ? detectionTable(kept) : h("p", { class: "muted" }, "No detection above this confidence."),
      );
    };
    slider.addEventListener("input", refilter);
    picture.addEventListener("load", () => {
      refilter();
      if (picture.naturalWidth !== answer.width || picture.naturalHeight !== answer.height) {
        status.ok(
          `The server read this image as ${answer.width}×${answer.height} but the browser shows it as ` +
            `${picture.naturalWidth}×${picture.naturalHeight}: the boxes may not line up.`,
        );
      }
    });
    replace(
      result,
      h(
        "p",
        { class: "meta" },
        `${answer.model} v${answer.model_version} · ${answer.width}×${answer.height} px · request id `,
        h("code", { id: "try-request-id" }, requestId || "—"),
      ),
      h("div", { class: "slider" }, field("Minimum confidence", slider), shownValue, count),
      stage,
      listing,
    );
    refilter();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = image.files[0];
    if (!file) {
      status.error({ code: "invalid_argument", message: "choose an image" });
      return;
    }
    submit.disabled = true;
    status.clear();
    try {
      const answer = await request("POST", `/v1/models/${encodeURIComponent(model.value)}/detect`, {
        body: file,
        type: file.type || "application/octet-stream",
        query: { conf: ASKED_CONF },
      });
      show(answer.data, file, answer.headers.get("X-Request-ID"));
    } catch (err) {
      status.error(err);
    } finally {
      submit.disabled = false;
    }
  });
  section.append(
    form,
    h("p", { class: "muted" }, "The image goes to the server as an ordinary detect request and is not kept."),
    status.node,
    result,
  );
}
