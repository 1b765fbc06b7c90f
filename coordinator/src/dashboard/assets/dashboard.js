// The dashboard's pages: each polls its JSON endpoint every few seconds and redraws.
// Nothing here changes the cluster's state. Every value from the server is escaped.
"use strict";

const POLL_MS = 3000;
const STATES = ["queued", "running", "preempted", "succeeded", "failed", "cancelled"];

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function num(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function when(unixMs) {
  return unixMs ? new Date(unixMs).toLocaleString() : "–";
}

function gridLink(name) {
  return '<a href="/grids/' + encodeURIComponent(name) + '">' + esc(name) + "</a>";
}

function trialLink(id) {
  return '<a href="/trials/' + encodeURIComponent(id) + '">#' + esc(id) + "</a>";
}

function pill(state) {
  return '<span class="pill ' + esc(state) + '">' + esc(state) + "</span>";
}

function stateBar(states, total) {
  return '<div class="bar" title="' + esc(STATES.map((s) => s + " " + (states[s] || 0)).join(", ")) + '">' +
    STATES.filter((s) => states[s]).map((s) =>
      '<span class="' + s + '" style="width:' + (100 * states[s] / Math.max(total, 1)) + '%"></span>').join("") +
    "</div>";
}

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) {
    window.location.assign("/login");
    throw new Error("signed out");
  }
  if (!response.ok) throw new Error(url + ": " + response.status + " " + (await response.text()));
  return response.json();
}

function poll(url, draw) {
  const live = document.getElementById("live");
  const run = async () => {
    try {
      await draw(await getJson(url));
      live.textContent = "live · updated " + new Date().toLocaleTimeString();
    } catch (error) {
      live.textContent = "not updated: " + error.message;
    }
  };
  run();
  setInterval(run, POLL_MS);
}

function set(id, html) {
  const element = document.getElementById(id);
  if (element.innerHTML !== html) element.innerHTML = html;
}

function table(headers, rows, numeric) {
  const th = headers.map((h, i) => '<th class="' + (numeric && numeric[i] ? "num" : "") + '">' + esc(h) + "</th>").join("");
  return "<table><thead><tr>" + th + "</tr></thead><tbody>" + rows.join("") + "</tbody></table>";
}

function drawGrids(data) {
  const rows = data.grids.map((grid) =>
    '<tr data-grid="' + esc(grid.name) + '"><td>' + gridLink(grid.name) + "</td><td>" + esc(when(grid.created_unix_ms)) +
    '</td><td class="num">' + esc(grid.trials) + "</td><td>" + stateBar(grid.states, grid.trials) + "</td><td>" +
    STATES.filter((s) => grid.states[s]).map((s) => esc(grid.states[s]) + " " + esc(s)).join(", ") +
    '</td><td class="num">' + esc(duration(grid.remaining_seconds)) + "</td></tr>");
  set("grids", rows.length ? table(["grid", "submitted", "trials", "progress", "by state", "remaining (est.)"], rows,
    [false, false, true, false, false, true]) : '<p class="muted">No grids yet: submit one with <code>prime submit</code>.</p>');
}

function trialRow(trial) {
  return '<tr class="' + (trial.parent_id ? "child" : "") + '" data-trial="' + esc(trial.id) + '"><td>' + trialLink(trial.id) +
    "</td><td>" + esc(trial.kind) + "</td><td>" + esc(trial.label) + "</td><td>" + esc(trial.dataset) +
    '</td><td class="num">' + esc(trial.search_seed) + (trial.eval_seed === null ? "" : " / " + esc(trial.eval_seed)) +
    "</td><td>" + pill(trial.state) + '</td><td class="num">' + esc(trial.attempts) + "</td><td>" + esc(trial.worker || "–") +
    '</td><td class="num">' + esc(trial.epochs_done) + " / " + esc(trial.epochs_total) +
    '</td><td class="num">' + esc(num(trial.last_loss, 4)) + '</td><td class="num">' + esc(num(trial.last_acc, 4)) +
    "</td><td>" + (trial.parent_id ? "from " + trialLink(trial.parent_id) : "") + "</td></tr>";
}

function drawGrid(data) {
  set("counts", '<div class="count"><small>trials</small><b id="count-total">' + esc(data.trials.length) + "</b></div>" +
    STATES.map((s) => '<div class="count"><small>' + s + '</small><b id="count-' + s + '">' + esc(data.states[s] || 0) +
      "</b></div>").join(""));
  // Searches first, each followed by its evaluations (lineage).
  const children = new Map();
  data.trials.filter((t) => t.parent_id).forEach((t) => {
    if (!children.has(t.parent_id)) children.set(t.parent_id, []);
    children.get(t.parent_id).push(t);
  });
  const known = new Set(data.trials.map((t) => t.id));
  const ordered = [];
  data.trials.filter((t) => !t.parent_id || !known.has(t.parent_id)).forEach((t) => {
    ordered.push(t);
    (children.get(t.id) || []).forEach((child) => ordered.push(child));
  });
  set("trials", table(["trial", "kind", "method", "dataset", "seed", "state", "attempt", "worker/slot", "epoch",
    "last loss", "last acc", "lineage"], ordered.map(trialRow),
    [false, false, false, false, true, false, true, false, true, true, true, false]));
  const results = data.results;
  set("results", results.rows.length
    ? table(results.columns, results.rows.map((row) => '<tr class="result">' +
        row.map((cell) => "<td>" + esc(cell) + "</td>").join("") + "</tr>")) + '<p class="muted">' + esc(results.footnote) + "</p>"
    : '<p class="muted">No finished evaluations yet.</p>');
}

function chart(curve) {
  const width = 380, height = 190, left = 54, right = 12, top = 22, bottom = 26;
  const transform = curve.log_scale ? (v) => Math.log10(v) : (v) => v;
  const points = curve.points.filter((p) => !curve.log_scale || p[1] > 0);
  const xs = points.map((p) => p[0]), ys = points.map((p) => transform(p[1]));
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  // A constant curve (a fixed learning rate) gets a band around its value, not one of +-0.5.
  if (y1 === y0) { const pad = Math.abs(y0) * 0.1 || 0.5; y0 -= pad; y1 += pad; }
  const px = (x) => left + (x - x0) / (x1 - x0) * (width - left - right);
  const py = (y) => height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom);
  // Enough significant digits that the two axis labels of a narrow range differ.
  const digits = Math.min(10, Math.max(3, Math.ceil(Math.log10(Math.max(Math.abs(y0), Math.abs(y1)) / (y1 - y0))) + 2));
  const label = (y) => curve.log_scale ? Math.pow(10, y).toExponential(1)
    : (Math.abs(y) >= 1e5 || (y !== 0 && Math.abs(y) < 1e-3)) ? y.toExponential(2) : Number(y.toPrecision(digits)).toString();
  const polyline = points.map((p) => px(p[0]).toFixed(1) + "," + py(transform(p[1])).toFixed(1)).join(" ");
  const dots = points.length <= 60 ? points.map((p) =>
    '<circle r="2.2" fill="#2f80ed" cx="' + px(p[0]).toFixed(1) + '" cy="' + py(transform(p[1])).toFixed(1) + '"/>').join("") : "";
  return '<div class="chart"><svg class="curve" data-points="' + points.length + '" viewBox="0 0 ' + width + " " + height +
    '" width="100%"><text class="title" x="' + left + '" y="14">' + esc(curve.name) + " · " + esc(curve.kind) +
    (curve.log_scale ? " (log)" : "") + '</text><line x1="' + left + '" x2="' + left + '" y1="' + top + '" y2="' + (height - bottom) +
    '" stroke="#cbd2d9"/><line x1="' + left + '" x2="' + (width - right) + '" y1="' + (height - bottom) + '" y2="' + (height - bottom) +
    '" stroke="#cbd2d9"/><text x="' + (left - 4) + '" y="' + (top + 8) + '" text-anchor="end">' + esc(label(y1)) + '</text><text x="' +
    (left - 4) + '" y="' + (height - bottom) + '" text-anchor="end">' + esc(label(y0)) + '</text><text x="' + left + '" y="' +
    (height - 8) + '">' + esc(x0.toFixed(2)) + '</text><text x="' + (width - right) + '" y="' + (height - 8) +
    '" text-anchor="end">' + esc(x1.toFixed(2)) + ' epochs</text><polyline fill="none" stroke="#2f80ed" stroke-width="1.6" points="' +
    polyline + '"/>' + dots + "</svg></div>";
}

// The look of each operation's line, as `prime plot alphas` draws it (Okabe-Ito colours,
// dashes for the parameter-free operations).
const OP_LOOK = {
  none: ["#999999", "1.5 3"], max_pool_3x3: ["#e69f00", "6 3"], avg_pool_3x3: ["#56b4e9", "6 3"],
  skip_connect: ["#cc79a7", "1.5 3"], sep_conv_3x3: ["#009e73", ""], sep_conv_5x5: ["#0072b2", ""],
  dil_conv_3x3: ["#d55e00", ""], dil_conv_5x5: ["#000000", ""], sep_conv_7x7: ["#999999", "6 3"],
  conv_7x1_1x7: ["#999999", ""], tanh: ["#0072b2", ""], relu: ["#d55e00", ""], sigmoid: ["#009e73", ""],
  identity: ["#cc79a7", "1.5 3"],
};
const CELL_TITLES = { normal: "Normal cell", reduce: "Reduction cell", recurrent: "Recurrent cell" };

function opLook(op) {
  return OP_LOOK[op] || ["#66788a", ""];
}

// One edge's panel: a line per operation over the clock, its own value axis.
function alphaPanel(edge, ops, clock) {
  const width = 220, height = 138, left = 40, right = 8, top = 32, bottom = 18;
  const x0 = clock[0], x1 = clock.length > 1 && clock[clock.length - 1] > x0 ? clock[clock.length - 1] : x0 + 1;
  // Each panel spans its own values: early in a search the alphas differ in the third digit.
  let y0 = Math.min(...edge.values.map((series) => Math.min(...series)));
  let y1 = Math.max(...edge.values.map((series) => Math.max(...series)));
  if (y1 - y0 < 1e-4) { y0 -= 5e-5; y1 += 5e-5; }
  const px = (x) => left + (x - x0) / (x1 - x0) * (width - left - right);
  const py = (y) => height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom);
  // The operation the projection would keep on this edge: the strongest other than none.
  const last = edge.values.map((series, op) => ops[op] === "none" ? -1 : series[series.length - 1]);
  const strongest = last.indexOf(Math.max(...last));
  const lines = edge.values.map((series, op) => {
    const [colour, dash] = opLook(ops[op]);
    return '<polyline fill="none" stroke="' + colour + '" stroke-width="' + (op === strongest ? 2.2 : 1.3) + '"' +
      (dash ? ' stroke-dasharray="' + dash + '"' : "") + ' points="' +
      series.map((v, i) => px(clock[i]).toFixed(1) + "," + py(v).toFixed(1)).join(" ") + '"><title>' + esc(ops[op]) +
      " " + esc(series[series.length - 1].toFixed(3)) + "</title></polyline>";
  }).join("");
  return '<svg class="alpha" data-points="' + clock.length + '" viewBox="0 0 ' + width + " " + height + '" width="100%">' +
    '<text class="title" x="4" y="13">' + esc(edge.label) + '</text><text x="' + (width - right) +
    '" y="26" text-anchor="end" style="fill:' + opLook(ops[strongest])[0] + '">' + esc(ops[strongest]) + "</text>" +
    '<line x1="' + left + '" x2="' + left + '" y1="' + top + '" y2="' + (height - bottom) + '" stroke="#cbd2d9"/>' +
    '<line x1="' + left + '" x2="' + (width - right) + '" y1="' + (height - bottom) + '" y2="' + (height - bottom) + '" stroke="#cbd2d9"/>' +
    '<text x="' + (left - 3) + '" y="' + (top + 8) + '" text-anchor="end">' + esc(y1.toFixed(4)) + '</text><text x="' + (left - 3) +
    '" y="' + (height - bottom) + '" text-anchor="end">' + esc(y0.toFixed(4)) + '</text><text x="' + left + '" y="' + (height - 5) + '">' +
    esc(x0.toFixed(1)) + '</text><text x="' + (width - right) + '" y="' + (height - 5) + '" text-anchor="end">' +
    esc(x1.toFixed(1)) + " ep</text>" + lines + "</svg>";
}

function drawAlphas(history) {
  const ops = history.cells.length ? history.cells[0].ops : [];
  const legend = '<p class="legend">' + ops.map((op) => {
    const [colour, dash] = opLook(op);
    return '<span><svg width="26" height="10"><line x1="0" x2="26" y1="5" y2="5" stroke="' + colour +
      '" stroke-width="2"' + (dash ? ' stroke-dasharray="' + dash + '"' : "") + "/></svg>" + esc(op) + "</span>";
  }).join("") + '<span class="muted">' + esc(history.records) + " records, " + esc(history.clock.length) +
    " drawn · bold, and named on the right: each edge's strongest operation other than none</span></p>";
  set("alphas", legend + history.cells.map((cell) => "<h3>" + esc(CELL_TITLES[cell.name] || cell.name) +
    '</h3><div class="alpha-grid">' + cell.edges.map((edge) => alphaPanel(edge, cell.ops, history.clock)).join("") +
    "</div>").join(""));
}

let alphasShown = null;

async function updateAlphas(trial, alphas) {
  if (!alphas) {
    alphasShown = null;
    set("alphas", '<p class="muted">' + (trial.kind === "search"
      ? "The alphas arrive with the search's first checkpoint (after its first epoch)."
      : "An evaluation trains a fixed cell: it has no alphas.") + "</p>");
    return;
  }
  if (alphas.error) {
    alphasShown = null;
    set("alphas", '<p class="muted">' + esc(alphas.error) + "</p>");
    return;
  }
  if (alphasShown === alphas.checkpoint_id) return;
  drawAlphas(await getJson(alphas.url));
  alphasShown = alphas.checkpoint_id;
}

function drawTrial(data) {
  const t = data.trial;
  document.getElementById("title").textContent = "Trial #" + t.id + " · " + t.label + " · " + t.dataset;
  set("summary", '<dl class="meta"><dt>grid</dt><dd>' + gridLink(t.grid) + "</dd><dt>state</dt><dd>" + pill(t.state) +
    (t.reason ? " " + esc(t.reason) : "") + "</dd><dt>kind</dt><dd>" + esc(t.kind) + "</dd><dt>seed</dt><dd>" +
    esc(t.search_seed) + (t.eval_seed === null ? "" : " / eval " + esc(t.eval_seed)) + "</dd><dt>worker/slot</dt><dd>" +
    esc(t.worker || "–") + "</dd><dt>epoch</dt><dd>" + esc(t.epochs_done) + " / " + esc(t.epochs_total) +
    "</dd><dt>run time</dt><dd>" + esc(duration(t.run_seconds)) + "</dd><dt>lineage</dt><dd>" +
    (t.parent_id ? "evaluation of " + trialLink(t.parent_id) : "") +
    (data.children.length ? "evaluated by " + data.children.map(trialLink).join(", ") : "") + "</dd></dl>");
  set("curves", data.curves.length ? data.curves.map(chart).join("") : '<p class="muted">No metrics yet.</p>');
  set("cells", (data.cells_note ? '<p class="muted">' + esc(data.cells_note) + "</p>" : "") + data.cells.join(""));
  set("attempts", data.attempts.length ? table(["attempt", "worker/slot", "started", "ended", "outcome"],
    data.attempts.map((a) => '<tr><td class="num">' + esc(a.epoch) + "</td><td>" + esc(a.worker) + "/" + esc(a.slot) +
      "</td><td>" + esc(when(a.started_unix_ms)) + "</td><td>" + esc(when(a.ended_unix_ms)) + "</td><td>" +
      esc(a.outcome || (a.ended_unix_ms ? "" : "running")) + "</td></tr>"), [true])
    : '<p class="muted">Not started yet.</p>');
  const log = document.getElementById("log");
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  const text = data.log_tail.map((l) => new Date(l.unix_ms).toLocaleTimeString() + "  " + l.line).join("\n");
  if (log.textContent !== text) {
    log.textContent = text || "(no log lines yet)";
    if (atBottom) log.scrollTop = log.scrollHeight;
  }
  const run = data.run_directory;
  set("checkpoints", (run ? '<p class="downloads"><a id="run-directory" href="' + esc(run.url) + '">Run directory</a> ' +
    '<span class="muted">(.tar, ' + esc((run.size / 1048576).toFixed(2)) + " MiB, " +
    (run.final ? "final artifacts" : "after epoch " + esc(run.epochs_done)) + ")</span></p>" : "") +
    (data.checkpoints.length ? table(["checkpoint", "epochs", "size", "final", "created", ""],
    data.checkpoints.map((c) => '<tr><td class="num">' + esc(c.id) + '</td><td class="num">' + esc(c.epochs_done) +
      '</td><td class="num">' + esc((c.size / 1048576).toFixed(2)) + " MiB</td><td>" + (c.final ? "yes" : "") + "</td><td>" +
      esc(when(c.created_unix_ms)) + '</td><td><a class="checkpoint" href="/api/trials/' + esc(t.id) + "/checkpoints/" + esc(c.id) +
      '">download</a></td></tr>'), [true, true, true])
    : '<p class="muted">No checkpoint yet.</p>'));
  return updateAlphas(t, data.alphas);
}

function drawWorkers(data) {
  const rows = data.workers.map((w) => "<tr><td>" + esc(w.name) + "</td><td>" +
    (w.alive ? (w.cordoned ? "cordoned" : "alive") : '<span class="stalled">lost</span>') + "</td><td>" +
    w.slots.map((s) => esc(s.index) + ": " + esc(s.device)).join("<br>") + "</td><td>" +
    (w.gpus.length ? w.gpus.map((g) => '<span class="gpu">' + esc(g.index) + " · " + esc(g.name) + " · " +
      esc((g.memory_total_bytes / 1073741824).toFixed(0)) + " GiB · " + esc(g.utilization_percent) + "% · " +
      esc(g.temperature_celsius) + " °C</span>").join("<br>") : '<span class="muted">no GPU</span>') + "</td><td>" +
    (w.trials.length ? w.trials.map(trialLink).join(", ") : '<span class="muted">idle</span>') + "</td><td>" +
    w.stalled.map((s) => '<span class="stalled">slot ' + esc(s.slot) + " (#" + esc(s.trial_id) + ") " +
      esc(duration(s.no_progress_ms / 1000)) + " without progress</span>").join("<br>") + '</td><td class="num">' +
    esc(duration(w.last_seen_ms_ago / 1000)) + " ago</td><td>" + esc(w.torch) + "</td></tr>");
  set("workers", rows.length ? table(["worker", "status", "slots", "GPUs (name, memory, utilisation, temperature)",
    "running trials", "stalled slots", "last heartbeat", "torch"], rows)
    : '<p class="muted">No worker has registered.</p>');
}

const page = document.body.dataset.page;
if (page === "grids") poll("/api/grids", drawGrids);
if (page === "grid") poll("/api/grids/" + encodeURIComponent(document.body.dataset.grid), drawGrid);
if (page === "trial") poll("/api/trials/" + encodeURIComponent(document.body.dataset.trial), drawTrial);
if (page === "workers") poll("/api/workers", drawWorkers);
