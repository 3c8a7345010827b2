// assetd's web UI: hash routes #/assets, #/asset, #/lineage, #/dlq with ?project=&branch=…
import { get, q, stream } from "./api.js";
import { metricSvg } from "./chart.js";
import { clear, h, num, pairs, show, table, when } from "./dom.js";
import { lineageSvg } from "./graph.js";

const view = document.getElementById("view");
const projectPick = document.getElementById("project");
const branchPick = document.getElementById("branch");
const liveBadge = document.getElementById("live");
const eventList = document.getElementById("events");

const state = { project: null, branch: "main", branches: new Set(["main"]), source: null,
  stale: new Map(), lastEvent: new Map(), refresh: null, timer: null, render: 0 };

function route() {
  const [path, search] = location.hash.replace(/^#/, "").split("?");
  return { path: path || "/assets", params: new URLSearchParams(search || "") };
}

export function link(path, params) {
  const p = new URLSearchParams({ project: state.project, branch: state.branch, ...params });
  return `#${path}?${p}`;
}

function go(path, params) {
  location.hash = link(path, params);
}

function section(title, ...children) {
  return h("section", {}, h("h2", {}, title), children);
}

function failure(err) {
  return h("p", { class: "error", role: "alert" }, `${err.code || "error"}: ${err.message}`);
}

// ---------- pickers ----------

function fillSelect(select, names, current) {
  clear(select);
  for (const name of [...new Set([...names, current])].sort()) {
    select.append(h("option", { value: name, selected: name === current }, name));
  }
}

async function loadPickers() {
  let projects = [];
  try {
    projects = await get("projects");
  } catch (err) {
    view.replaceChildren(failure(err));
  }
  const wanted = route().params.get("project") || localStorage.getItem("assetd.project");
  state.project = wanted || projects[0] || "default";
  fillSelect(projectPick, projects, state.project);
  await loadBranches();
}

async function loadBranches() {
  try {
    for (const b of await q(state.project, "branches")) state.branches.add(b);
  } catch {
    /* the project has no instances yet */
  }
  state.branch = route().params.get("branch") || state.branch;
  state.branches.add(state.branch);
  fillSelect(branchPick, state.branches, state.branch);
}

projectPick.addEventListener("change", async () => {
  state.project = projectPick.value;
  localStorage.setItem("assetd.project", state.project);
  state.branches = new Set(["main"]);
  state.branch = "main";
  await loadBranches();
  connect();
  go("/assets", {});
});

branchPick.addEventListener("change", () => {
  state.branch = branchPick.value;
  const { path, params } = route();
  go(path, { ...Object.fromEntries(params), branch: state.branch });
});

// ---------- live updates ----------

function connect() {
  if (state.source) state.source.close();
  let lost = false;
  state.source = stream(state.project, onEvent, (up) => {
    if (up && lost) render(true); // what the stream missed meanwhile: read the view again
    lost = !up;
    liveBadge.textContent = up ? "live" : "offline";
    liveBadge.className = up ? "live on" : "live off";
  });
}

function onEvent(ev) {
  const branch = ev.branch || "main";
  if (!state.branches.has(branch)) {
    state.branches.add(branch);
    fillSelect(branchPick, state.branches, state.branch);
  }
  state.lastEvent.set(`${branch}/${ev.subject}`, ev.time);
  if (ev.type === "asset_stale") state.stale.set(`${branch}/${ev.subject}`, ev.time);
  if (ev.type === "instance_created") state.stale.delete(`${branch}/${ev.subject}`);
  const instance = ev.data && (ev.data.instance || ev.data.to || ev.data.last_instance);
  eventList.prepend(h("li", { class: "event" }, h("b", {}, ev.type), " ",
    `${ev.subject}@${branch}`, instance ? `:${instance}` : "", " ",
    h("span", { class: "muted" }, when(ev.time))));
  while (eventList.children.length > 30) eventList.lastChild.remove();
  if (branch === state.branch && state.refresh && state.refresh(ev)) {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => render(true), 250);
  }
}

// ---------- views ----------

async function assetsView() {
  state.refresh = () => true;
  const assets = await q(state.project, "assets", { branch: state.branch });
  const rows = assets.map((a) => {
    const key = `${state.branch}/${a.asset}`;
    const stale = state.stale.get(key);
    const last = h("td", { class: "last" }, when(state.lastEvent.get(key)));
    if (a.latest) {
      q(state.project, "instances", { asset: a.asset, branch: state.branch, limit: 1 })
        .then((page) => {
          const t = page.items[0] && page.items[0].created_at;
          const seen = state.lastEvent.get(key);
          last.textContent = when(seen && seen > t ? seen : t);
        }).catch(() => {});
    }
    return h("tr", { "data-asset": a.asset },
      h("td", {}, h("a", { href: link("/asset", { asset: a.asset }) }, a.asset)),
      h("td", {}, a.kind), h("td", {}, a.latest || "—"),
      h("td", {}, Object.entries(a.aliases).map(([k, v]) => h("span", { class: "alias" }, `@${k} ${v}`))),
      h("td", { class: "num" }, String(a.instances)),
      h("td", {}, stale ? h("span", { class: "stale" }, `stale since ${when(stale)}`) : h("span", { class: "fresh" }, "—")),
      last);
  });
  return [h("h1", {}, `Assets of ${state.project} on ${state.branch}`),
    rows.length ? table("assets", ["asset", "kind", "latest", "aliases", "instances", "freshness", "last event"], rows)
      : h("p", { class: "muted", id: "no-assets" }, "No assets on this branch yet.")];
}

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

function chartSection(asset, items, holder, alias) {
  const numeric = new Set();
  for (const i of items) for (const [k, v] of Object.entries(i.annotations)) if (typeof v === "number") numeric.add(k);
  const metrics = [...numeric].sort();
  const box = h("div", { id: "chart-box" });
  const draw = (metric) => {
    const points = items.filter((i) => typeof i.annotations[metric] === "number")
      .map((i) => ({ version: i.version, value: i.annotations[metric] })).sort((x, y) => x.version - y.version);
    box.replaceChildren(metricSvg(points, metric, holder, alias));
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

async function assetView(params) {
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
  const vb = h("input", { id: "compare-b", size: 8, value: recent.items[0] ? recent.items[0].instance : "" });
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
    chartSection(asset, recent.items, holders[alias], alias),
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

async function lineageView(params) {
  const asset = params.get("asset");
  const instance = params.get("instance") || "latest";
  const depth = params.get("depth") || "3";
  state.refresh = (ev) => ev.type === "instance_created";
  const names = (await q(state.project, "assets", { branch: state.branch })).map((a) => a.asset);
  const form = h("form", { id: "lineage-form", class: "filters" },
    h("label", {}, "asset ", h("input", { id: "l-asset", name: "asset", value: asset || "", list: "asset-names" })),
    h("datalist", { id: "asset-names" }, names.map((n) => h("option", { value: n }))),
    h("label", {}, "instance ", h("input", { id: "l-instance", name: "instance", value: instance, size: 10 })),
    h("label", {}, "depth ", h("input", { id: "l-depth", name: "depth", type: "number", min: 1, max: 50, value: depth })),
    h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const d = new FormData(form);
    go("/lineage", { asset: d.get("asset"), instance: d.get("instance"), depth: d.get("depth") });
  });
  if (!asset) return [h("h1", {}, "Lineage"), form, h("p", { class: "muted" }, "Choose an asset.")];
  const args = { asset, branch: state.branch, instance, depth };
  const [up, down] = await Promise.all(["upstream", "downstream"].map((direction) =>
    q(state.project, "lineage", { ...args, direction })));
  const nodes = new Map();
  for (const n of [...up.nodes, ...down.nodes]) nodes.set(n.id, n);
  const edges = new Map();
  for (const e of [...up.edges, ...down.edges]) edges.set(`${e.from}|${e.to}|${e.relation}`, e);
  const root = up.nodes[0] || down.nodes[0];
  const onPick = (n) => go("/asset", { asset: n.asset, branch: n.branch, instance: n.instance });
  const graph = root ? lineageSvg(root.id, [...nodes.values()], [...edges.values()], onPick) : null;
  return [h("h1", {}, "Lineage of ", root ? root.id : asset), form,
    h("p", { class: "muted" }, "Upstream on the left, downstream on the right; click an instance to open it.",
      up.truncated || down.truncated ? " (cut at a limit)" : ""),
    h("div", { class: "graph-box" }, graph)];
}

async function dlqView() {
  state.refresh = (ev) => ev.type === "event_rejected";
  const letters = await get(`${encodeURIComponent(state.project)}/dlq`, { limit: 100 });
  return [h("h1", {}, `Dead letters of ${state.project}`),
    letters.length ? table("dlq", ["seq", "time", "inbound subject", "event id", "reason", "errors"],
      letters.map((d) => h("tr", {}, h("td", { class: "num" }, String(d.seq)), h("td", {}, when(d.time)),
        h("td", {}, d.inbound_subject), h("td", {}, d.event_id || "—"), h("td", { class: "reason" }, d.reason),
        h("td", {}, h("code", {}, d.errors.length ? JSON.stringify(d.errors) : "—")))))
      : h("p", { class: "muted", id: "no-dlq" }, "No dead letters.")];
}

const VIEWS = { "/assets": assetsView, "/asset": assetView, "/lineage": lineageView, "/dlq": dlqView };

async function render(quiet) {
  const { path, params } = route();
  const branch = params.get("branch");
  if (branch && branch !== state.branch) {
    state.branch = branch;
    state.branches.add(branch);
    fillSelect(branchPick, state.branches, branch);
  }
  const project = params.get("project");
  if (project && project !== state.project) {
    state.project = project;
    fillSelect(projectPick, [...projectPick.options].map((o) => o.value), project);
    connect();
  }
  for (const id of ["assets", "lineage", "dlq"]) {
    const a = document.getElementById(`nav-${id}`);
    a.setAttribute("href", link(`/${id}`, {}));
    a.classList.toggle("current", path === `/${id}` || (id === "assets" && path === "/asset"));
  }
  const ticket = ++state.render;
  const fn = VIEWS[path] || assetsView;
  let content;
  try {
    content = await fn(params);
  } catch (err) {
    content = [failure(err)];
  }
  if (ticket !== state.render) return;
  const scroll = window.scrollY;
  view.replaceChildren(...content.flat());
  if (quiet) window.scrollTo(0, scroll);
  const instance = params.get("instance");
  if (path === "/asset" && instance && !quiet) {
    const row = document.querySelector(`#instances tr[data-version="${CSS.escape(instance)}"]`);
    if (row) row.classList.add("picked");
  }
  document.body.dataset.view = path.slice(1);
  document.body.dataset.ready = String(ticket);
}

window.addEventListener("hashchange", () => render(false));

await loadPickers();
connect();
await render(false);
