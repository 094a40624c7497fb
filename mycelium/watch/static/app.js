// mycelium watch: draws the picture the observer pushes over /api/events (server-sent events).
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
const colours = new Map(); // group id -> colour, in order of first sight (stable while the page lives)
const colourOf = (group) => {
  if (!group) return "#bbb";
  if (!colours.has(group)) colours.set(group, PALETTE[colours.size % PALETTE.length]);
  return colours.get(group);
};
const shortGroup = (id) => id.slice(0, 8);
const shortPeer = (id) => id.slice(-6);
const fmt = (x) => (x === null || x === undefined ? "-" : x.toFixed(3));
const mb = (bytes) => (bytes / 1e6).toFixed(1) + " MB";
const el = (tag, attrs = {}, text = "") => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
};

const cy = cytoscape({
  container: document.getElementById("graph"),
  style: [
    { selector: "node.group", style: {
      "background-color": "data(colour)", "background-opacity": 0.08, "border-color": "data(colour)",
      "border-width": 2, "label": "data(label)", "text-valign": "top", "font-size": 11, "color": "#333",
      "shape": "round-rectangle", "padding": 12 } },
    { selector: "node.peer", style: {
      "background-color": "data(colour)", "label": "data(label)", "font-size": 9, "color": "#333",
      "width": 18, "height": 18, "text-valign": "bottom", "text-margin-y": 2 } },
    { selector: "node.leader", style: { "border-width": 3, "border-color": "#222" } },
    { selector: "node.silent", style: {
      "background-color": "#ddd", "border-width": 1, "border-style": "dashed", "border-color": "#666" } },
    { selector: "node.unlisted", style: { "background-opacity": 0.45, "border-width": 1, "border-style": "dotted",
      "border-color": "#444" } },
    { selector: "edge.member", style: { "width": 1, "line-color": "data(colour)", "opacity": 0.35 } },
    { selector: "edge.transfer", style: {
      "width": 3, "line-color": "#e4572e", "line-style": "dashed", "target-arrow-shape": "triangle",
      "target-arrow-color": "#e4572e", "curve-style": "bezier" } },
    { selector: "edge.inline", style: { "width": 1.5, "opacity": 0.6 } },
  ],
  wheelSensitivity: 0.3,
});
let shape = ""; // the set of groups and peers the last layout was run for

function drawGraph(picture) {
  const nodes = [];
  const edges = []; // added after every node: cytoscape refuses an edge whose end does not exist yet
  const groupOf = new Map();
  for (const group of picture.groups) {
    nodes.push({ group: "nodes", classes: "group", data: {
      id: "g-" + group.id, colour: colourOf(group.id),
      label: `${shortGroup(group.id)} ${group.name || ""} · ${group.members.length}/${group.capacity}`.trim() } });
    for (const member of group.members) groupOf.set(member, group);
  }
  const peers = new Map(picture.peers.map((p) => [p.id, p]));
  for (const [id, group] of groupOf) {
    const peer = peers.get(id);
    const classes = ["peer"];
    if (group.leader === id) classes.push("leader");
    if (peer && peer.silent) classes.push("silent");
    nodes.push({ group: "nodes", classes: classes.join(" "), data: {
      id: "p-" + id, parent: "g-" + group.id, colour: colourOf(group.id),
      label: shortPeer(id) + (peer && peer.accuracy !== null ? " " + peer.accuracy.toFixed(2) : "") } });
    if (group.leader !== id && groupOf.get(group.leader) === group) {
      edges.push({ group: "edges", classes: "member", data: {
        id: `m-${group.leader}-${id}`, source: "p-" + group.leader, target: "p-" + id, colour: colourOf(group.id) } });
    }
  }
  for (const peer of peers.values()) {
    if (groupOf.has(peer.id)) continue; // heard, but listed by no group's record (evicted, or between groups)
    nodes.push({ group: "nodes", classes: "peer unlisted" + (peer.silent ? " silent" : ""), data: {
      id: "p-" + peer.id, colour: colourOf(peer.group), label: shortPeer(peer.id) + " (unlisted)" } });
  }
  for (const transfer of picture.transfers) {
    const group = picture.groups.find((g) => g.id === transfer.group);
    if (!group || !groupOf.has(transfer.author)) continue;
    for (const member of group.members) {
      if (member === transfer.author || groupOf.get(member) !== group) continue;
      edges.push({ group: "edges", classes: transfer.inline ? "transfer inline" : "transfer", data: {
        id: `t-${transfer.author}-${member}-${transfer.round}`, source: "p-" + transfer.author, target: "p-" + member } });
    }
  }
  const elements = [...nodes, ...edges];
  const newShape = nodes.map((e) => e.data.id + e.data.parent).sort().join();
  cy.batch(() => {
    const keep = new Set(elements.map((e) => e.data.id));
    cy.elements().filter((e) => !keep.has(e.id())).remove();
    for (const element of elements) {
      const existing = cy.getElementById(element.data.id);
      if (existing.nonempty() && element.group === "nodes" && existing.data("parent") !== element.data.parent) {
        existing.remove(); // cytoscape moves a child to another parent only by re-adding it
      }
      const current = cy.getElementById(element.data.id);
      if (current.nonempty()) {
        current.data(element.data);
        current.classes(element.classes);
      } else {
        cy.add(element);
      }
    }
  });
  if (newShape !== shape) {
    shape = newShape;
    cy.layout({ name: "cose", animate: false, nodeRepulsion: 9000, idealEdgeLength: 40, padding: 20 }).run();
  }
  const graph = document.getElementById("graph");
  graph.dataset.peers = String(cy.nodes(".peer").not(".unlisted").length);
  graph.dataset.unlisted = String(cy.nodes(".unlisted").length);
  graph.dataset.groups = String(cy.nodes(".group").length);
  graph.dataset.transfers = String(cy.edges(".transfer").length);
}

function drawGroups(picture) {
  const body = document.querySelector("#groups tbody");
  body.replaceChildren();
  for (const group of picture.groups) {
    const row = el("tr", { "data-group": group.id, "data-members": group.members.join(" ") });
    const name = el("td");
    name.append(el("span", { class: "swatch", style: `background:${colourOf(group.id)}` }),
      el("span", {}, `${shortGroup(group.id)} ${group.name || ""}`));
    const members = el("td");
    members.append(el("div", {}, `${group.members.length}/${group.capacity}`),
      el("div", { class: "members" }, group.members.map(shortPeer).join(" ")));
    row.append(name, members, el("td", { class: "members" }, shortPeer(group.leader)),
      el("td", { class: "num round" }, String(group.round)), el("td", { class: "num" }, fmt(group.advertised)),
      el("td", { class: "num measured" }, fmt(group.measured)),
      el("td", {}, group.policy + (group.followed ? "" : " (records only)")));
    body.append(row);
  }
}

function drawLists(picture) {
  const transfers = document.getElementById("transfers");
  transfers.replaceChildren(...(picture.transfers.length ? picture.transfers.map((t) => el("div", {},
    `${shortPeer(t.author)} → ${shortGroup(t.group)} round ${t.round}: ${(t.size / 1024).toFixed(0)} KiB ` +
    `${t.inline ? "(inside gossip)" : "(pulled in chunks)"}, ${t.age_s.toFixed(0)} s`)) : [el("div", { class: "dim" }, "none")]));
  const silent = picture.peers.filter((p) => p.silent);
  document.getElementById("silent").replaceChildren(...(silent.length ? silent.map((p) => el("div",
    { "data-peer": p.id }, `${shortPeer(p.id)} (last in ${shortGroup(p.group)}, quiet ${p.quiet_s === null ? "?" : p.quiet_s.toFixed(0)} s)`))
    : [el("div", { class: "dim" }, "none")]));
  const happenings = document.getElementById("happenings");
  happenings.replaceChildren(...picture.happenings.slice().reverse().map((h) => el("li", { class: h.kind },
    `${new Date(h.time * 1000).toLocaleTimeString()} ${h.text}`)));
}

function drawChart(picture) {
  const svg = document.getElementById("chart");
  const [width, height, pad] = [640, 260, 28];
  const series = [];
  for (const group of picture.groups) series.push({ points: group.accuracy, colour: colourOf(group.id), width: 2.5 });
  const groupOfPeer = new Map();
  for (const group of picture.groups) for (const m of group.members) groupOfPeer.set(m, group.id);
  for (const peer of picture.peers) {
    series.push({ points: peer.accuracy_history, colour: colourOf(groupOfPeer.get(peer.id) || peer.group), width: 0.7 });
  }
  const rounds = series.flatMap((s) => s.points.map((p) => p[0]));
  const last = Math.max(1, ...rounds);
  const x = (r) => pad + (r / last) * (width - 2 * pad);
  const y = (a) => height - pad - a * (height - 2 * pad);
  const parts = [];
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(`<line x1="${pad}" x2="${width - pad}" y1="${y(tick)}" y2="${y(tick)}" stroke="#eee"/>`,
      `<text x="2" y="${y(tick) + 4}" font-size="10" fill="#777">${tick.toFixed(2)}</text>`);
  }
  parts.push(`<text x="${width - pad}" y="${height - 6}" font-size="10" fill="#777" text-anchor="end">round ${last}</text>`);
  for (const s of series.sort((a, b) => a.width - b.width)) {
    if (!s.points.length) continue;
    const path = s.points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    parts.push(`<path d="${path}" fill="none" stroke="${s.colour}" stroke-width="${s.width}" opacity="${s.width > 1 ? 1 : 0.45}"/>`);
  }
  svg.innerHTML = parts.join("");
}

function drawSummary(picture) {
  const silent = picture.peers.filter((p) => p.silent).length;
  const members = picture.groups.reduce((n, g) => n + g.members.length, 0);
  document.getElementById("summary").textContent =
    `task ${picture.task} · ${picture.status} · ${picture.groups.length} groups · ${members} members · ` +
    `${silent} silent · ${picture.transfers.length} updates in flight · moved ${mb(picture.bytes.reported_out)} ` +
    `(reported by peers) · observer ${shortPeer(picture.observer || "")}`;
  document.body.dataset.version = String(picture.version);
}

function draw(picture) {
  for (const panel of [drawSummary, drawGroups, drawLists, drawGraph, drawChart]) {
    try {
      panel(picture);
    } catch (error) { // one panel's fault must not freeze the others; the next picture tries again
      console.error(`${panel.name}:`, error);
      document.body.dataset.error = `${panel.name}: ${error.message}`;
    }
  }
}

const source = new EventSource("/api/events");
source.addEventListener("picture", (message) => draw(JSON.parse(message.data)));
source.onerror = () => { document.getElementById("summary").textContent = "connection lost, retrying…"; };
