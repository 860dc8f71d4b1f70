// A line chart drawn as SVG: enough for "the last hour" on the dashboard, no library.
"use strict";

const PALETTE = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#4d7c0f"];

/**
 * series: [{ name, points: [[t, value|null], ...] }]; options: { from, to, yMax, yLabel(v) }.
 * A null value breaks the line (no answer in that minute, say).
 */
function lineChart(svg, legend, series, options) {
  const NS = "http://www.w3.org/2000/svg";
  const box = svg.getBoundingClientRect();
  const width = Math.max(200, Math.round(box.width || 400)), height = Math.max(100, Math.round(box.height || 140));
  const pad = { left: 34, right: 8, top: 8, bottom: 18 };
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.replaceChildren();
  // Counts get an even top, so the middle grid line is a whole number too.
  const highest = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[1] || 0)));
  const max = options.yMax || Math.max(2, Math.ceil(highest / 2) * 2);
  const x = (t) => pad.left + ((t - options.from) / Math.max(1, options.to - options.from)) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / max) * (height - pad.top - pad.bottom);
  const node = (tag, attrs, text) => { const n = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); if (text !== undefined) n.textContent = text; svg.append(n); return n; };
  for (const fraction of [0, 0.5, 1]) {
    const v = max * fraction;
    node("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), stroke: "#e3e6ee" });
    node("text", { x: 2, y: y(v) + 3 }, options.yLabel ? options.yLabel(v) : String(Math.round(v)));
  }
  node("text", { x: pad.left, y: height - 4 }, new Date(options.from).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  node("text", { x: width - pad.right - 30, y: height - 4 }, "now");
  series.forEach((s, index) => {
    const color = PALETTE[index % PALETTE.length];
    let d = "", pen = false;
    const values = s.points.filter((p) => p[1] !== null && p[1] !== undefined);
    for (const [t, v] of s.points) {
      if (v === null || v === undefined) { pen = false; continue; }
      d += (pen ? " L" : " M") + x(t).toFixed(1) + " " + y(v).toFixed(1);
      pen = true;
    }
    if (d) node("path", { d, fill: "none", stroke: color, "stroke-width": 2, "data-series": s.name });
    // A lone sample (the first minute of a queue, say) draws no line: mark it.
    if (values.length === 1) node("circle", { cx: x(values[0][0]).toFixed(1), cy: y(values[0][1]).toFixed(1), r: 3, fill: color, "data-series": s.name });
  });
  if (legend) {
    legend.replaceChildren(...series.map((s, index) => {
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = PALETTE[index % PALETTE.length];
      return el("span", {}, swatch, s.name);
    }));
  }
}
