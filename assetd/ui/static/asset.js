// An asset's page: instances (filtered, paged), compare, a metric chart, the alias
// timeline and the decision log.
import { q } from "./api.js";
import { metricSvg } from "./chart.js";
import { clear, h, num, pairs, show, table, when } from "./dom.js";
import { failure, go, link, section, state } from "./shared.js";

function filtersFrom(params) {
  const where = (params.get("where") || "").split("\n").map((x) => x.trim()).filter(Boolean);
  const tags = {};
  for (const part of (params.get("tags") || "").split(",")) {
    const [k, ...v] = part.split("=");
    if (k.trim()) tags[k.trim()] = v.join("=").trim();
  }
  return { where, tags, state: params.get("state") || "", validity: params.get("validity") || "" };
}

function filterForm(params) {
  const f = filtersFrom(params);
  const select = (id, name, options, value) => h("label", {}, name,
    h("select", { id, name }, ["", ...options].map((o) => h("option", { value: o, selected: o === value }, o || "any"))));
  const form = h("form", { id: "filters", class: "filters" },
    h("label", {}, "where (one per line)", h("textarea", { id: "f-where", name: "where", rows: 2, placeholder: "f1_score>=0.9" }, f.where.join("\n"))),
    h("label", {}, "tags", h("input", { id: "f-tags", name: "tags", placeholder: "team=risk, seed=1", value: params.get("tags") || "" })),
    select("f-state", "state", ["ready", "pending", "abandoned"], f.state),
    select("f-validity", "validity", ["valid", "deprecated", "invalidated"], f.validity),
    h("button", { type: "submit", id: "f-apply" }, "Filter"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const next = { asset: params.get("asset") };
    for (const key of ["where", "tags", "state", "validity"]) if (data.get(key)) next[key] = data.get(key);
    go("/asset", next);
  });
  return form;
}

function instancesTable(asset, items, pick) {
  return table("instances", ["version", "state", "validity", "aliases", "annotations", "tags", "created", ""],
    items.map((i) => h("tr", { "data-version": i.instance },
      h("td", {}, i.instance), h("td", {}, i.state), h("td", {}, i.validity),
      h("td", {}, i.aliases.map((a) => h("span", { class: "alias" }, `@${a}`))),
      h("td", {}, pairs(i.annotations)), h("td", {}, pairs(i.tags)), h("td", {}, when(i.created_at)),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "pick-a", onclick: () => pick("a", i.instance) }, "A"),
        h("button", { type: "button", class: "pick-b", onclick: () => pick("b", i.instance) }, "B"),
        h("a", { href: link("/lineage", { asset, instance: i.instance }) }, "lineage")))));
}

// The compare query's answer as rows: field, A, B; differing rows marked.
function diffRows(c) {
  const rows = [];
  const row = (field, x, y, change, delta) => {
    const same = change ? change === "same" : show(x) === show(y);
    const d = typeof delta === "number" && delta !== 0 ? ` (${delta > 0 ? "+" : ""}${num(delta)})` : "";
    rows.push(h("tr", { class: same ? "same" : `differs ${change || ""}`.trim(), "data-field": field },
      h("td", {}, field, change && change !== "same" && change !== "changed" ? h("span", { class: "muted" }, ` (${change})`) : null),
      h("td", {}, show(x)), h("td", {}, show(y) + d)));
  };
  for (const key of ["state", "validity", "producer", "created_at"]) row(key, c.a[key], c.b[key]);
  row("aliases", c.a.aliases.join(", "), c.b.aliases.join(", "));
  for (const group of ["annotations", "tags"]) {
    for (const f of c[group]) row(`${group}.${f.key}`, f.a, f.b, f.change, f.delta);
  }
  const refs = (list) => list.map((i) => `${i.asset}@${i.branch}:${i.instance}`).join(", ") || "—";
  row("inputs (common)", refs(c.inputs.common), refs(c.inputs.common));
  if (c.inputs.only_a.length || c.inputs.only_b.length) {
    row("inputs (only in one)", refs(c.inputs.only_a), refs(c.inputs.only_b), "changed");
  }
  return rows;
}

async function compare(asset, va, vb, into) {
  clear(into);
  try {
    const c = await q(state.project, "compare", { asset, branch: state.branch, a: va, b: vb });
    const rows = diffRows(c);
    const n = rows.filter((r) => r.classList.contains("differs")).length;
    into.append(h("p", { id: "compare-summary" }, `${n} difference${n === 1 ? "" : "s"} between ${c.a.instance} and ${c.b.instance}`),
      table("compare-table", ["field", c.a.instance, c.b.instance], rows));
  } catch (err) {
    into.append(failure(err));
  }
}

function chartSection(asset, items, holder, alias, formerly) {
  const numeric = new Set();
  for (const i of items) for (const [k, v] of Object.entries(i.annotations)) if (typeof v === "number") numeric.add(k);
  const metrics = [...numeric].sort();
  const box = h("div", { id: "chart-box" });
  const draw = (metric) => {
    const points = items.filter((i) => typeof i.annotations[metric] === "number")
      .map((i) => ({ version: i.version, value: i.annotations[metric] })).sort((x, y) => x.version - y.version);
    box.replaceChildren(metricSvg(points, metric, holder, alias, formerly));
  };
  const pick = h("select", { id: "metric" }, metrics.map((m) => h("option", { value: m }, m)));
  pick.addEventListener("change", () => draw(pick.value));
  if (metrics.length) draw(metrics[0]);
  return section(`Metric across the last ${items.length} versions`,
    metrics.length ? h("label", {}, "annotation ", pick) : h("p", { class: "muted" }, "No numeric annotations."), box);
}

const OPS = { min: "≥", max: "≤" };
const HIDDEN = new Set(["rules_sha256", "rules_path", "gates", "results"]);

// The values a decision compared: its gates one per line, the rest as key=value.
function decisionValues(inputs) {
  const gates = inputs.gates || inputs.results || [];
  const rest = Object.fromEntries(Object.entries(inputs).filter(([k]) => !HIDDEN.has(k)));
  return h("div", { class: "values", title: inputs.rules_path ? `rules ${inputs.rules_path}` : null },
    Array.isArray(gates) ? gates.map((g) => h("div", { class: g.passed ? "gate passed" : "gate failed" },
      `${g.metric} ${OPS[g.op] || g.op} ${show(g.threshold)}: ${show(g.value)} ${g.passed ? "passed" : "failed"}`)) : null,
    pairs(rest));
}

export async function assetView(params) {
  const asset = params.get("asset");
  if (!asset) return [h("p", {}, "No asset chosen.")];
  const filters = filtersFrom(params);
  const before = params.get("before");
  state.refresh = (ev) => ev.subject === asset;
  const base = { asset, branch: state.branch };
  const [page, recent, timeline, decisions] = await Promise.all([
    q(state.project, "instances", { ...base, limit: 20, before, where: filters.where,
      tags: Object.keys(filters.tags).length ? filters.tags : null, state: filters.state, validity: filters.validity }),
    q(state.project, "instances", { ...base, limit: 200 }),
    q(state.project, "timeline", { ...base, limit: 1 }),
    q(state.project, "decisions", { ...base, limit: 50 }),
  ]);
  const holders = {};
  for (const span of timeline.aliases) if (!span.held_to) holders[span.alias] = span.instance;
  const alias = "champion" in holders ? "champion" : Object.keys(holders)[0] || "champion";
  const compareBox = h("div", { id: "compare" });
  const va = h("input", { id: "compare-a", size: 8, value: recent.items[1] ? recent.items[1].instance : "" });
  const vb = h("input", { id: "compare-b", size: 8,
    value: params.get("instance") || (recent.items[0] ? recent.items[0].instance : "") });
  const pick = (which, v) => { (which === "a" ? va : vb).value = v; compare(asset, va.value, vb.value, compareBox); };
  const form = h("form", { id: "compare-form", class: "filters" }, h("label", {}, "A ", va), h("label", {}, "B ", vb),
    h("button", { type: "submit", id: "compare-go" }, "Compare"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); compare(asset, va.value, vb.value, compareBox); });
  const pager = h("p", { class: "pager" },
    before ? h("a", { href: link("/asset", { ...Object.fromEntries(params), before: "" }) }, "← newest") : null, " ",
    page.next ? h("a", { id: "older", href: link("/asset", { ...Object.fromEntries(params), before: page.next }) }, "older →") : null);
  return [
    h("h1", {}, asset, h("span", { class: "muted" }, ` on ${state.branch}`),
      Object.entries(holders).map(([a, v]) => h("span", { class: "alias" }, `@${a} ${v}`))),
    section("Instances", filterForm(params),
      page.items.length ? instancesTable(asset, page.items, pick) : h("p", { id: "no-instances", class: "muted" },
        page.next ? "None in this window; look further." : "No instance matches."), pager),
    section("Compare two versions", form, compareBox),
    chartSection(asset, recent.items, holders[alias], alias,
      new Set(timeline.aliases.filter((a) => a.alias === alias).map((a) => a.instance))),
    section("Alias timeline", timeline.aliases.length ? table("alias-timeline", ["alias", "instance", "from", "to"],
      [...timeline.aliases].reverse().map((a) => h("tr", {}, h("td", {}, `@${a.alias}`), h("td", {}, a.instance),
        h("td", {}, when(a.held_from)), h("td", {}, a.held_to ? when(a.held_to) : "now"))))
      : h("p", { class: "muted" }, "No alias has been held.")),
    section("Decision log", decisions.length ? table("decisions", ["when", "instance", "outcome", "rule", "values compared"],
      decisions.map((d) => h("tr", { class: `outcome-${d.outcome}` }, h("td", {}, when(d.created_at)), h("td", {}, d.instance || "—"),
        h("td", {}, d.outcome), h("td", {}, d.rule || "—"), h("td", {}, decisionValues(d.inputs)))))
      : h("p", { class: "muted" }, "No decisions yet.")),
  ];
}

