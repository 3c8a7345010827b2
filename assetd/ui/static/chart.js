// A numeric annotation across versions as inline SVG: the current alias holder marked, its
// former holders ringed.
import { s } from "./dom.js";

const W = 720, H = 260, L = 60, R = 20, T = 20, B = 40;

export function metricSvg(points, metric, champion, alias, formerly = new Set()) {
  // points: [{version, value}] ascending by version
  const svg = s("svg", { id: "metric-chart", class: "chart", width: W, height: H,
    viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${metric} across versions` });
  if (!points.length) {
    svg.append(s("text", { x: L, y: H / 2, class: "muted" }, `no numeric ${metric}`));
    return svg;
  }
  const vs = points.map((p) => p.value);
  let lo = Math.min(...vs), hi = Math.max(...vs);
  if (lo === hi) { lo -= 1; hi += 1; }
  const first = points[0].version, last = points[points.length - 1].version;
  const x = (v) => L + (last === first ? (W - L - R) / 2 : ((v - first) / (last - first)) * (W - L - R));
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  svg.append(
    s("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }),
    s("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }),
    s("text", { x: L - 6, y: y(hi) + 4, class: "tick", "text-anchor": "end" }, String(+hi.toPrecision(6))),
    s("text", { x: L - 6, y: y(lo) + 4, class: "tick", "text-anchor": "end" }, String(+lo.toPrecision(6))),
    s("text", { x: x(first), y: H - B + 18, class: "tick", "text-anchor": "middle" }, `v${first}`),
    s("text", { x: x(last), y: H - B + 18, class: "tick", "text-anchor": "middle" }, `v${last}`),
    s("text", { x: W / 2, y: H - 6, class: "tick", "text-anchor": "middle" }, `${metric} by version`),
    s("polyline", { class: "series", points: points.map((p) => `${x(p.version)},${y(p.value)}`).join(" ") }));
  for (const p of points) {
    const held = `v${p.version}` === champion;
    const former = !held && formerly.has(`v${p.version}`);
    const note = held ? ` (@${alias})` : former ? ` (held @${alias} before)` : "";
    svg.append(s("circle", { cx: x(p.version), cy: y(p.value), r: held ? 7 : former ? 5.5 : 4,
      class: held ? "point champion" : former ? "point former" : "point", "data-version": p.version },
    s("title", {}, `v${p.version}: ${metric} = ${p.value}${note}`)));
    if (held) {
      svg.append(s("text", { x: x(p.version), y: y(p.value) - 12, class: "champion-label",
        "text-anchor": "middle" }, `@${alias} v${p.version}`));
    }
  }
  return svg;
}
