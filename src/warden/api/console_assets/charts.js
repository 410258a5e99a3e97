// Small SVG charts drawn by hand (document.createElementNS): bars and lines over time
// buckets, and horizontal bars for a current value. Colours come from CSS classes s0…s7.

import { h, s } from "./dom.js";

const WIDTH = 640;
const HEIGHT = 200;
const PAD = { left: 64, right: 12, top: 12, bottom: 26 };

function niceCeiling(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

function clock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function number(value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(value < 10 ? 2 : 1);
}

function legend(series, unit) {
  return h(
    "ul",
    { class: "legend" },
    series.map((line) => {
      const swatch = h("span", { class: `swatch ${line.cls}`, "aria-hidden": "true" });
      return h("li", {}, swatch, `${line.name}: ${line.note}${unit}`);
    }),
  );
}

function frame(yMax, starts, unit) {
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const svg = s("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart-svg", role: "img", focusable: "false" });
  for (const fraction of [0, 0.5, 1]) {
    const y = PAD.top + plotH * (1 - fraction);
    svg.append(
      s("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y, class: "grid" }),
      s(
        "text",
        { x: PAD.left - 6, y: y + 4, class: "tick", "text-anchor": "end" },
        `${number(yMax * fraction)}${unit}`,
      ),
    );
  }
  if (starts.length) {
    const marks = [0, Math.floor((starts.length - 1) / 2), starts.length - 1];
    for (const [index, anchor] of [[marks[0], "start"], [marks[1], "middle"], [marks[2], "end"]]) {
      const x = PAD.left + (plotW * (index + (anchor === "start" ? 0 : anchor === "end" ? 1 : 0.5))) / starts.length;
      svg.append(s("text", { x, y: HEIGHT - 8, class: "tick", "text-anchor": anchor }, clock(starts[index])));
    }
  }
  return { svg, plotW, plotH, scale: (value) => PAD.top + plotH * (1 - value / yMax) };
}

/**
 * Bars per time bucket, stacked by series. `series`: [{name, cls, values}] (one value per bucket).
 */
export function barChart(title, starts, series, unit = "") {
  const totals = starts.map((_, i) => series.reduce((sum, line) => sum + (line.values[i] || 0), 0));
  const yMax = niceCeiling(Math.max(0, ...totals));
  const { svg, plotW, scale } = frame(yMax, starts, unit);
  const slot = plotW / Math.max(1, starts.length);
  starts.forEach((start, i) => {
    let base = 0;
    for (const line of series) {
      const value = line.values[i] || 0;
      if (value <= 0) continue;
      const top = scale(base + value);
      svg.append(
        s(
          "rect",
          {
            x: PAD.left + i * slot + slot * 0.1,
            y: top,
            width: slot * 0.8,
            height: scale(base) - top,
            class: `bar ${line.cls}`,
          },
          s("title", {}, `${clock(start)} ${line.name}: ${number(value)}${unit}`),
        ),
      );
      base += value;
    }
  });
  const noted = series.map((line) => ({ ...line, note: number(line.values.reduce((sum, v) => sum + (v || 0), 0)) }));
  svg.setAttribute("aria-label", `${title}: ${noted.map((line) => `${line.name} ${line.note}`).join(", ") || "none"}`);
  return h("figure", { class: "chart" }, h("figcaption", {}, title), svg, legend(noted, unit));
}

/** Lines per series over time buckets; a null value leaves a gap. */
export function lineChart(title, starts, series, unit = "") {
  const values = series.flatMap((line) => line.values.filter((v) => v !== null && v !== undefined));
  const yMax = niceCeiling(Math.max(0, ...values));
  const { svg, plotW, scale } = frame(yMax, starts, unit);
  const slot = plotW / Math.max(1, starts.length);
  for (const line of series) {
    let path = "";
    let pen = false;
    line.values.forEach((value, i) => {
      if (value === null || value === undefined) {
        pen = false;
        return;
      }
      const x = PAD.left + slot * (i + 0.5);
      const y = scale(value);
      path += `${pen ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)} `;
      pen = true;
      const tip = s("title", {}, `${clock(starts[i])} ${line.name}: ${number(value)}${unit}`);
      svg.append(s("circle", { cx: x, cy: y, r: 2.5, class: `dot ${line.cls}` }, tip));
    });
    if (path) svg.append(s("path", { d: path.trim(), class: `line ${line.cls}` }));
  }
  const noted = series.map((line) => {
    const present = line.values.filter((v) => v !== null && v !== undefined);
    return { ...line, note: present.length ? `max ${number(Math.max(...present))}` : "no data" };
  });
  svg.setAttribute("aria-label", `${title}: ${noted.map((line) => `${line.name} ${line.note}${unit}`).join(", ")}`);
  return h("figure", { class: "chart" }, h("figcaption", {}, title), svg, legend(noted, unit));
}

/** Horizontal bars for values right now (e.g. running and queued requests). */
export function nowChart(title, items) {
  const rowH = 28;
  const height = items.length * rowH + 8;
  const labelW = 90;
  const max = niceCeiling(Math.max(1, ...items.map((item) => item.value)));
  const svg = s("svg", { viewBox: `0 0 ${WIDTH} ${height}`, class: "chart-svg now", role: "img", focusable: "false" });
  items.forEach((item, i) => {
    const y = 4 + i * rowH;
    const w = ((WIDTH - labelW - 60) * item.value) / max;
    svg.append(
      s("text", { x: labelW - 8, y: y + 17, class: "tick", "text-anchor": "end" }, item.name),
      s("rect", { x: labelW, y: y + 4, width: Math.max(w, 1), height: rowH - 10, class: `bar ${item.cls}` }),
      s("text", { x: labelW + Math.max(w, 1) + 6, y: y + 17, class: "tick" }, String(item.value)),
    );
  });
  svg.setAttribute("aria-label", `${title}: ${items.map((item) => `${item.name} ${item.value}`).join(", ")}`);
  return h("figure", { class: "chart" }, h("figcaption", {}, title), svg);
}
