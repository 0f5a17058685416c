// The gallery page of `mmu-search serve`. Every value from the catalogue is
// put on the page as text (textContent, attributes through the DOM API),
// never as HTML. The page's state is its URL: /?like=ID&k=50&space=S,
// /?near=RA,DEC[,ARCSEC], /?hunt=ID&hunt=ID&unlike=ID, /?outliers=1.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const BAND_COLOURS = ["#6af", "#6d6", "#fd5", "#f84", "#f5a", "#c8f", "#8ff", "#fff"];
// Requests a grid's cutouts are split into: about as many as the server has cores, leaving connections for the rest.
const CUTOUT_BATCHES = 3;
const CUTOUT_BATCH_MAX = 100;  // the server's limit per request (POST /cutouts)
const state = { result: null, marks: new Map(), spaces: [], spacesLoaded: null, map: null };

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function status(text, isError) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

// /kind/<survey>/<id>.ext with both parts percent-encoded (an id may hold '/').
function objectUrl(kind, survey, id, ext) {
  return "/" + kind + "/" + encodeURIComponent(survey) + "/" + encodeURIComponent(id) + ext;
}

async function getJson(url, body) {
  const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(url, init);
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || ("HTTP " + r.status));
  return j;
}

// ---- URL <-> form ----

function readForm() {
  const p = new URLSearchParams();
  const q = document.getElementById("q").value.trim();
  const coords = q.split(",").map((x) => x.trim());
  const isPosition = coords.length >= 2 && coords.length <= 3 && coords.every((x) => x !== "" && !isNaN(Number(x)));
  p.set(isPosition ? "near" : "like", q);
  for (const name of ["survey", "space", "k", "in", "cone", "where"]) {
    const v = document.getElementById(name).value.trim();
    if (v) p.set(name, v);
  }
  return p;
}

function fillForm(p) {
  document.getElementById("q").value = p.get("like") || p.get("near") || "";
  for (const name of ["survey", "space", "k", "in", "cone", "where"]) {
    if (p.has(name)) document.getElementById(name).value = p.get(name);
  }
}

// The fields POST /query, /hunt and /outliers share, from the URL's parameters.
function commonFields(p) {
  const body = { k: Number(p.get("k") || 50) };
  if (p.get("space")) body.space = p.get("space");
  if (p.get("survey")) body.survey = p.get("survey");
  if (p.get("in")) body.in = p.get("in").split(",").map((s) => s.trim()).filter((s) => s);
  if (p.get("where")) body.where = p.get("where");
  if (p.get("cone")) {
    const c = p.get("cone").split(",").map(Number);
    if (c.length !== 3 || c.some(isNaN)) throw new Error("cone must be ra,dec,radius in degrees, got '" + p.get("cone") + "'");
    body.cone = { ra: c[0], dec: c[1], radius_deg: c[2] };
  }
  return body;
}

function navigate(p) {
  history.pushState(null, "", "/?" + p.toString());
  run();
}

// ---- results ----

async function run() {
  const p = new URLSearchParams(location.search);
  fillForm(p);
  state.marks.clear();
  updateMarks();
  let request;
  try {
    const body = commonFields(p);
    if (p.has("hunt")) {
      request = getJson("/hunt", Object.assign(body, { positives: p.getAll("hunt"), negatives: p.getAll("unlike") }));
    } else if (p.has("outliers")) {
      request = getJson("/outliers", body);
    } else if (p.has("near")) {
      const c = p.get("near").split(",").map(Number);
      if (c.length < 2 || c.some(isNaN)) throw new Error("near must be ra,dec[,radius in arcsec], got '" + p.get("near") + "'");
      body.near = { ra: c[0], dec: c[1] };
      if (c.length > 2) body.near.radius_arcsec = c[2];
      request = getJson("/query", body);
    } else if (p.has("like")) {
      body.like = p.get("like");
      request = getJson("/query", body);
    } else {
      status("enter an object id or a position, pick an object on the map, or take a random one");
      return;
    }
  } catch (e) {
    status(e.message, true);
    return;
  }
  status("searching…");
  try {
    const result = await request;
    await state.spacesLoaded;  // show() asks for cutouts at once when the space is of images
    show(result);
  } catch (e) {
    document.getElementById("grid").replaceChildren();
    status(e.message, true);
  }
}

function show(result) {
  state.result = result;
  const grid = document.getElementById("grid");
  grid.replaceChildren();
  const objects = (result.query ? [result.query] : []).concat(result.results);
  // Asked for in a few requests, not card by card: the browser opens 6 connections to a host, and 100
  // small requests would wait behind each other. Cutouts too when the space is of images (the server
  // reads each request's grouped by file), in CUTOUT_BATCHES requests drawn at once by the server's
  // threads; a card's linked images come one by one.
  const list = objects.map((o) => ({ survey: o.survey, object_id: o.object_id }));
  const infos = getJson("/objects", { objects: list }).then((j) => j.objects);
  const space = state.spaces.find((s) => s.name === result.space);
  const images = [];
  const per = Math.min(CUTOUT_BATCH_MAX, Math.ceil(list.length / CUTOUT_BATCHES));
  if (space && space.modality === "image") {
    for (let i = 0; i < list.length; i += per) images.push(getJson("/cutouts", { objects: list.slice(i, i + per) }).then((j) => j.cutouts));
  }
  const cards = objects.map((o, i) => {
    // A failed batch leaves each of its cards to ask for its own cutout.
    const cutout = images.length ? images[Math.floor(i / per)].then((all) => all[i % per], () => null) : null;
    const batch = { info: infos.then((all) => all[i]), cutout: cutout };
    return i === 0 && result.query ? card(o, "query", null, "query", batch) : card(o, o.rank, o.score, "neighbour", batch);
  });
  grid.append(...cards);
  let text = result.label + ": " + result.results.length + " results in space " + result.space + " (" + result.method + ")";
  if (result.note) text += "\n" + result.note;
  status(text);
  document.getElementById("csv").disabled = result.results.length === 0;
}

function card(o, rank, score, kind, batch) {
  const c = el("div", { class: "card " + kind });
  c.dataset.objectId = o.object_id;
  c.dataset.survey = o.survey;
  c.dataset.rank = String(rank);
  const media = el("div", { class: "media" });
  const id = el("div", { class: "oid", title: "search like this object" }, o.object_id);
  id.addEventListener("click", () => likeThis(o));
  const meta = el("div", { class: "meta" }, o.survey + "  ra " + Number(o.ra).toFixed(5) + "  dec " + Number(o.dec).toFixed(5));
  const rankLine = el("div", { class: "meta" }, kind === "query" ? "query" : "#" + rank + "  score " + Number(score).toFixed(4));
  c.append(media, id, meta, rankLine);
  if (kind === "neighbour") {
    const marks = el("div", { class: "marks" });
    const plus = el("button", { type: "button", title: "positive" }, "+");
    const minus = el("button", { type: "button", title: "negative" }, "\u2212");
    plus.addEventListener("click", () => mark(c, o, "positive"));
    minus.addEventListener("click", () => mark(c, o, "negative"));
    marks.append(plus, minus);
    c.append(marks);
  }
  const note = el("div", { class: "note" });
  c.append(note);
  fillMedia(o, media, note, batch).finally(() => {
    c.dataset.drawnAt = String(performance.now());  // read by bench/gallery_bench.py
    c.dataset.drawn = "1";
  });
  return c;
}

function likeThis(o) {
  const p = new URLSearchParams();
  p.set("like", o.object_id);
  p.set("survey", o.survey);
  const old = new URLSearchParams(location.search);
  for (const name of ["space", "k"]) if (old.get(name)) p.set(name, old.get(name));
  navigate(p);
}

// What a card draws: its own data, and that of its cross-matched objects of other modalities.
async function fillMedia(o, media, note, batch) {
  let info;
  try {
    info = await batch.info;
    if (info.error) throw new Error(info.error);
  } catch (e) {
    note.textContent = e.message;
    return;
  }
  // One drawing per modality (its own first, then its links'), fetched at once, shown in that order.
  const shown = new Set();
  const drawings = [];
  for (const d of [info].concat(info.linked)) {
    if (shown.has(d.modality) || !["image", "spectrum", "lightcurve"].includes(d.modality)) continue;
    shown.add(d.modality);
    const slot = el("div", { class: "slot" });
    media.append(slot);
    const draw = d.modality === "image" ? drawCutout(d, o, slot, note, d === info ? batch.cutout : null)
      : d.modality === "spectrum" ? drawSpectrum(d, slot, note) : drawLightCurve(d, slot, note);
    drawings.push(draw.catch((e) => { note.textContent = e.message; }));
  }
  await Promise.all(drawings);
}

// The object's cutout: from the grid's batch (POST /cutouts) when it has it, else GET /cutout.
async function drawCutout(d, o, media, note, fromBatch) {
  let c = fromBatch ? await fromBatch : null;
  if (c && c.error) throw new Error(c.error);
  let src;
  if (c) {
    src = "data:image/png;base64," + c.png;  // decoded by the browser itself: atob in script is slower
  } else {
    const r = await fetch(objectUrl("cutout", d.survey, d.object_id, ".png"));
    if (!r.ok) throw new Error((await r.json()).error);
    src = URL.createObjectURL(await r.blob());
    const header = (name) => decodeURIComponent(r.headers.get(name) || "");
    c = { note: header("X-MMU-Note"), bands: header("X-MMU-Bands") };
  }
  const img = el("img", { alt: "cutout", title: "search like this object" });
  img.addEventListener("click", () => likeThis(o));
  if (c.note) {
    img.classList.add("placeholder");
    note.textContent = c.note;
  }
  if (c.bands) img.title = c.bands + " (click: search like this)";
  media.append(img);
  // Drawn (decoded) before the card counts as done.
  img.src = src;
  await img.decode().catch(() => {});
}

// Scales [lo, hi] onto [a, b]; a flat range maps to the middle.
function scale(lo, hi, a, b) {
  return (v) => (hi > lo ? a + (v - lo) / (hi - lo) * (b - a) : (a + b) / 2);
}

function finiteRange(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (v !== null && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  return [lo, hi];
}

async function drawSpectrum(d, media, note) {
  const W = 300, H = 110;
  // Binned by the server to two points per pixel column: a whole spectrum is ~250 KB.
  const s = await getJson(objectUrl("spectrum", d.survey, d.object_id, ".json") + "?points=" + 2 * W);
  if (s.note) { note.textContent = s.note; return; }
  const svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", class: "spectrum" });
  const good = s.flux.filter((v, i) => !s.mask[i]);
  const [x0, x1] = finiteRange(s.wavelength);
  const [y0, y1] = finiteRange(good.length ? good : s.flux);
  const x = scale(x0, x1, 0, W), y = scale(y0, y1, H - 4, 4);
  // Masked runs shaded.
  for (let i = 0; i < s.mask.length; ) {
    if (!s.mask[i]) { ++i; continue; }
    let j = i;
    while (j + 1 < s.mask.length && s.mask[j + 1]) ++j;
    const a = x(s.wavelength[i]), b = x(s.wavelength[j]);
    if (isFinite(a) && isFinite(b)) svg.append(svgEl("rect", { class: "masked", x: a, y: 0, width: Math.max(b - a, 0.5), height: H, fill: "#533" }));
    i = j + 1;
  }
  // One point per pixel column at most: a path over every 7781 fluxes would weigh on the page.
  const step = Math.max(1, Math.floor(s.flux.length / (2 * W)));
  let path = "";
  for (let i = 0; i < s.flux.length; i += step) {
    if (s.mask[i] || s.flux[i] === null || !isFinite(s.wavelength[i])) continue;
    path += (path ? "L" : "M") + x(s.wavelength[i]).toFixed(1) + "," + y(s.flux[i]).toFixed(1);
  }
  svg.append(svgEl("path", { d: path, stroke: "#ddd", fill: "none", "stroke-width": 0.8 }));
  const label = svgEl("text", { x: 4, y: 12, fill: "#aaa", "font-size": 10 });
  label.textContent = Math.round(x0) + "–" + Math.round(x1) + " Å" + (s.redshift !== null && s.redshift !== undefined ? "  z = " + Number(s.redshift).toFixed(4) : "");
  svg.append(label);
  media.append(svg);
}

async function drawLightCurve(d, media, note) {
  const lc = await getJson(objectUrl("lightcurve", d.survey, d.object_id, ".json"));
  if (lc.note) { note.textContent = lc.note; return; }
  const W = 300, H = 110;
  const svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", class: "lightcurve" });
  const times = [], values = [];
  for (const b of lc.bands) {
    times.push(...b.time);
    b.value.forEach((v, i) => { values.push(v - b.error[i], v + b.error[i]); });
  }
  const [t0, t1] = finiteRange(times);
  let [v0, v1] = finiteRange(values);
  if (lc.magnitudes) [v0, v1] = [v1, v0];  // brighter is up
  const x = scale(t0, t1, 4, W - 4), y = scale(v0, v1, H - 4, 4);
  if (lc.band_note) note.textContent = lc.band_note;
  // The legend: each band's name as the file gives it (else its number), in its colour.
  const legend = svgEl("text", { x: 4, y: 12, "font-size": 10 });
  lc.bands.forEach((b, k) => {
    const colour = BAND_COLOURS[k % BAND_COLOURS.length];
    const label = svgEl("tspan", { fill: colour, class: "band" });
    label.textContent = (k ? " " : "") + (b.name === null || b.name === undefined ? "band " + b.band : b.name);
    legend.append(label);
    b.time.forEach((t, i) => {
      const cx = x(t);
      svg.append(svgEl("line", { x1: cx, x2: cx, y1: y(b.value[i] - b.error[i]), y2: y(b.value[i] + b.error[i]), stroke: colour, "stroke-width": 0.6 }));
      svg.append(svgEl("circle", { cx: cx, cy: y(b.value[i]), r: 1.6, fill: colour }));
    });
  });
  svg.append(legend);
  media.append(svg);
}

// ---- hunting ----

function mark(c, o, how) {
  const key = o.survey + "\u0000" + o.object_id;
  const was = state.marks.get(key);
  c.classList.remove("positive", "negative");
  if (was && was.how === how) {
    state.marks.delete(key);
  } else {
    state.marks.set(key, { how: how, object: o });
    c.classList.add(how);
  }
  updateMarks();
}

function updateMarks() {
  const marks = [...state.marks.values()];
  const pos = marks.filter((m) => m.how === "positive").length;
  document.getElementById("marks").textContent = pos + " positive, " + (marks.length - pos) + " negative";
  document.getElementById("hunt").disabled = pos === 0;
}

function huntMarked() {
  const p = new URLSearchParams();
  for (const m of state.marks.values()) p.append(m.how === "positive" ? "hunt" : "unlike", m.object.object_id);
  const old = new URLSearchParams(location.search);
  for (const name of ["space", "k", "in", "cone", "where"]) if (old.get(name)) p.set(name, old.get(name));
  navigate(p);
}

function downloadCsv() {
  const r = state.result;
  if (!r) return;
  const quote = (v) => { const s = String(v); return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; };
  const lines = ["rank,object_id,survey,ra,dec,score"];
  for (const n of r.results) lines.push([n.rank, n.object_id, n.survey, n.ra, n.dec, n.score].map(quote).join(","));
  const a = el("a", { download: "mmu-results.csv" });
  a.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
  document.body.append(a);
  a.click();
  a.remove();
}

// ---- the map of a space ----

function currentSpace() {
  const p = new URLSearchParams(location.search);
  return p.get("space") || (state.result && state.result.space) || (state.spaces[0] && state.spaces[0].name) || "";
}

async function loadMap() {
  const space = currentSpace();
  if (!space) throw new Error("the store has no space to map");
  const column = document.getElementById("map-colour").value.trim();
  if (!state.map || state.map.space !== space || state.map.column !== column)
    state.map = await getJson("/map/" + encodeURIComponent(space) + ".json" + (column ? "?colour=" + encodeURIComponent(column) : ""));
  return state.map;
}

async function toggleMap() {
  const panel = document.getElementById("map-panel");
  panel.hidden = !panel.hidden;
  if (panel.hidden) return;
  try {
    drawMap(await loadMap());
  } catch (e) {
    document.getElementById("map-status").textContent = e.message;
  }
}

function drawMap(m) {
  const W = 900, H = 500;
  const svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H });
  const [x0, x1] = finiteRange(m.points.map((q) => q.x));
  const [y0, y1] = finiteRange(m.points.map((q) => q.y));
  const x = scale(x0, x1, 10, W - 10), y = scale(y0, y1, H - 10, 10);
  // Colour: by survey, or by the column's value (numbers on a blue-to-yellow ramp, text by category, none grey).
  const byColumn = Boolean(m.column);
  const numbers = byColumn && m.points.every((q) => q.value === null || typeof q.value === "number");
  const [v0, v1] = numbers ? finiteRange(m.points.map((q) => q.value)) : [0, 0];
  const categories = [...new Set(m.points.map((q) => (byColumn ? q.value : q.survey)).filter((v) => v !== null))];
  const colourOf = (q) => {
    const v = byColumn ? q.value : q.survey;
    if (v === null || v === undefined) return "#555";
    if (numbers) {
      const t = v1 > v0 ? (v - v0) / (v1 - v0) : 0.5;
      return "rgb(" + Math.round(40 + 215 * t) + "," + Math.round(60 + 160 * t) + "," + Math.round(220 - 190 * t) + ")";
    }
    return BAND_COLOURS[categories.indexOf(v) % BAND_COLOURS.length];
  };
  const hover = el("img", { id: "map-hover", alt: "" });
  hover.hidden = true;
  for (const q of m.points) {
    const dot = svgEl("circle", { cx: x(q.x), cy: y(q.y), r: 4, fill: colourOf(q) });
    const tip = svgEl("title");
    tip.textContent = q.object_id + " (" + q.survey + ")" + (byColumn ? " " + m.column + " = " + q.value : "");
    dot.append(tip);
    dot.addEventListener("click", () => likeThis(q));
    if (m.modality === "image") {
      dot.addEventListener("mouseenter", (ev) => {
        hover.src = objectUrl("cutout", q.survey, q.object_id, ".png") + "?size=96";
        hover.style.left = ev.clientX + 12 + "px";
        hover.style.top = ev.clientY + 12 + "px";
        hover.hidden = false;
      });
      dot.addEventListener("mouseleave", () => { hover.hidden = true; });
    }
    svg.append(dot);
  }
  document.getElementById("map").replaceChildren(svg, hover);
  const names = ["blue", "green", "yellow", "orange", "pink", "violet", "cyan", "white"];
  const legend = numbers ? m.column + " from " + v0 + " (blue) to " + v1 + " (yellow), none grey"
    : categories.slice(0, 8).map((c, i) => c + " " + names[i % 8]).join(", ") + (categories.length > 8 ? ", …" : "");
  document.getElementById("map-status").textContent =
    "space " + m.space + ": " + m.points.length + " of " + m.count + " objects on the first two principal components; " + legend;
}

async function randomObject() {
  try {
    const m = await loadMap();
    if (!m.points.length) throw new Error("space " + m.space + " is empty");
    likeThis(m.points[Math.floor(Math.random() * m.points.length)]);
  } catch (e) {
    status(e.message, true);
  }
}

function outliers() {
  const p = new URLSearchParams();
  p.set("outliers", "1");
  const old = new URLSearchParams(location.search);
  for (const name of ["space", "k", "in", "cone", "where"]) if (old.get(name)) p.set(name, old.get(name));
  navigate(p);
}

async function init() {
  document.getElementById("query-form").addEventListener("submit", (ev) => { ev.preventDefault(); navigate(readForm()); });
  document.getElementById("hunt").addEventListener("click", huntMarked);
  document.getElementById("csv").addEventListener("click", downloadCsv);
  document.getElementById("map-toggle").addEventListener("click", toggleMap);
  document.getElementById("map-redraw").addEventListener("click", async () => {
    try { drawMap(await loadMap()); } catch (e) { document.getElementById("map-status").textContent = e.message; }
  });
  document.getElementById("random").addEventListener("click", randomObject);
  document.getElementById("outliers").addEventListener("click", outliers);
  window.addEventListener("popstate", run);
  state.spacesLoaded = loadSpaces();  // at the same time as the query
  await run();
  document.body.dataset.ready = "1";
}

async function loadSpaces() {
  try {
    state.spaces = (await getJson("/spaces")).spaces;
    const select = document.getElementById("space");
    for (const s of state.spaces) {
      const what = s.modality + ", " + s.count + (s.default ? ", the default for " + s.modality : "");
      select.append(el("option", { value: s.name }, s.name + " (" + what + ")"));
    }
    const p = new URLSearchParams(location.search);
    if (p.get("space")) select.value = p.get("space");
  } catch (e) {
    status(e.message, true);
  }
}

init();
