// The lineage graph as inline SVG: the chosen instance in the middle column, what it was
// derived from to the left (upstream), what derived from or consumed it to the right.
import { s } from "./dom.js";

const W = 190, H = 44, GX = 70, GY = 18;

function label(node) {
  if (node.kind === "consumer") return node.name || node.id.replace(/^consumer:/, "");
  return `${node.asset}:${node.instance}`;
}

// Each node's column: its distance from the root, negative upstream.
function layers(rootId, nodes, edges) {
  const layer = new Map([[rootId, 0]]);
  let changed = true;
  for (let round = 0; changed && round < nodes.length + 1; round++) {
    changed = false;
    for (const e of edges) {
      if (layer.has(e.to) && !layer.has(e.from) && layer.get(e.to) <= 0) {
        layer.set(e.from, layer.get(e.to) - 1);
        changed = true;
      }
      if (layer.has(e.from) && !layer.has(e.to) && layer.get(e.from) >= 0) {
        layer.set(e.to, layer.get(e.from) + 1);
        changed = true;
      }
    }
  }
  for (const n of nodes) if (!layer.has(n.id)) layer.set(n.id, 0);
  return layer;
}

export function lineageSvg(rootId, nodes, edges, onPick) {
  const layer = layers(rootId, nodes, edges);
  const min = Math.min(...layer.values()), max = Math.max(...layer.values());
  const columns = new Map();
  for (const n of nodes) {
    const c = layer.get(n.id);
    if (!columns.has(c)) columns.set(c, []);
    columns.get(c).push(n);
  }
  const tallest = Math.max(...[...columns.values()].map((c) => c.length));
  const width = (max - min + 1) * (W + GX) + GX, height = tallest * (H + GY) + GY;
  const at = new Map();
  for (const [c, list] of columns) {
    list.sort((a, b) => a.id.localeCompare(b.id));
    const top = (height - (list.length * (H + GY) - GY)) / 2;
    list.forEach((n, i) => at.set(n.id, { x: GX + (c - min) * (W + GX), y: top + i * (H + GY) }));
  }
  const svg = s("svg", { id: "lineage-graph", class: "graph", width, height,
    viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "lineage graph" },
  s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" },
  s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }))));
  for (const e of edges) {
    const a = at.get(e.from), b = at.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    svg.append(s("path", { class: `edge ${e.relation}`, "marker-end": "url(#arrow)",
      d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}` },
    s("title", {}, `${e.from} → ${e.to} (${e.relation})`)));
  }
  for (const n of nodes) {
    const p = at.get(n.id);
    const classes = ["node", n.kind, n.id === rootId ? "root" : ""].join(" ").trim();
    const g = s("g", { class: classes, "data-id": n.id, transform: `translate(${p.x},${p.y})`,
      tabindex: n.kind === "consumer" ? null : 0, role: "link" },
    s("title", {}, n.id),
    s("rect", { width: W, height: H, rx: 6 }),
    s("text", { x: 10, y: 18, class: "name" }, label(n)),
    s("text", { x: 10, y: 34, class: "sub" },
      n.kind === "consumer" ? "consumer" : `${n.kind} · ${n.branch}`));
    if (n.kind !== "consumer") {
      g.addEventListener("click", () => onPick(n));
      g.addEventListener("keydown", (ev) => { if (ev.key === "Enter") onPick(n); });
    }
    svg.append(g);
  }
  return svg;
}
