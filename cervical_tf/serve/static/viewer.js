// The cervical-tf web viewer: one image, its detected cells drawn on top, filtered live.
//
// Flow: a dropped or picked file goes to POST /v1/detect?min_score=0.05 once; the image itself
// is shown from the local file (URL.createObjectURL). Everything after that (threshold, counts,
// list, zoom, downloads) happens in the browser on the one response. Boxes arrive as
// [xmin, ymin, xmax, ymax] in original-image pixels and stay in those units: the canvas draws
// in image coordinates through one transform (view.scale, view.x, view.y), so zoom and pan
// never move a box off its cell. The model card (what the model learned from) comes from the
// model's metadata when the page opens and with every answer; a model trained on synthetic
// images gets a red banner above everything.
"use strict";

(() => {
  const SERVER_MIN_SCORE = "0.05";
  const EXTENSIONS = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp"];
  const LIST_LIMIT = 500; // list items drawn at most; the rest are counted below the list
  const MAX_SCALE = 16; // zoom in up to 16 screen pixels per image pixel
  const LABEL_MIN_WIDTH = 44; // screen px a box needs before its class tag is drawn
  // matplotlib's tab10, the colours outputs.py gives label-map ids 1, 2, ...; used only when
  // the response has no colour for a class.
  const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const context = canvas.getContext("2d");

  const state = {
    request: 0, // increases per file, so a slow answer for an older file is dropped
    file: null,
    result: null, // the /v1/detect response
    picture: null, // {image: HTMLImageElement, url} or null when the browser cannot decode it
    threshold: 0.5,
    shown: [], // indexes into result.detections scoring >= threshold, abnormal first
    selected: null, // index into result.detections
    view: { scale: 1, x: 0, y: 0, fitted: true },
    animation: 0,
  };

  main();

  function main() {
    $("file-input").addEventListener("change", (event) => {
      const file = event.target.files[0];
      if (file) analyse(file);
    });
    $("threshold").addEventListener("input", onThreshold);
    $("download-json").addEventListener("click", downloadJson);
    $("download-csv").addEventListener("click", downloadCsv);
    $("download-geojson").addEventListener("click", downloadGeojson);
    $("zoom-in").addEventListener("click", () => zoomAt(1.5, canvasWidth() / 2, canvasHeight() / 2));
    $("zoom-out").addEventListener("click", () => zoomAt(1 / 1.5, canvasWidth() / 2, canvasHeight() / 2));
    $("zoom-fit").addEventListener("click", () => { fit(); draw(); });
    wireDragAndDrop();
    wireCanvas();
    new ResizeObserver(resizeCanvas).observe(canvas);
    onThreshold();
    loadModelCard();
  }

  // ---- the model card: what the model learned from; a banner when it never saw a real cell ----

  /** The card of the model /v1/detect will use (?model=NAME, else the server's first), before any image. */
  async function loadModelCard() {
    try {
      let name = new URLSearchParams(window.location.search).get("model");
      if (!name) name = ((await getJson("/readyz")).models || [])[0];
      const metadata = await getJson(`/v1/models/${encodeURIComponent(name)}/metadata`);
      if (!state.result) showModelCard(metadata.model_card);
    } catch (error) {
      $("model-card").textContent = `The model card could not be read (${error.message}).`;
    }
  }

  async function getJson(url) {
    const response = await fetch(url);
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  function showModelCard(card) {
    const warning = card && card.warning;
    const banner = $("model-warning");
    banner.hidden = !warning;
    banner.textContent = warning ? `This model was ${warning}.` : "";
    $("model-card").textContent = card && card.summary ? card.summary : "The server sent no model card.";
  }

  // ---- one file: detect on the server, show it from the local file ----

  async function analyse(file) {
    const request = ++state.request;
    clearResult();
    state.file = file;
    $("image-name").textContent = file.name;
    if (!isSupported(file)) {
      showStatus(`${file.name}: not a supported image. Open a PNG, JPEG, BMP, TIFF or WebP file.`, "error");
      draw();
      return;
    }
    showStatus(`Detecting cells in ${file.name}…`, "busy");
    $("busy").hidden = false;
    const picture = loadPicture(file);
    let result = null;
    let failure = null;
    try {
      result = await detect(file);
    } catch (error) {
      failure = error;
    }
    const loaded = await picture;
    if (request !== state.request) {
      if (loaded) URL.revokeObjectURL(loaded.url);
      return;
    }
    $("busy").hidden = true;
    state.picture = loaded;
    if (failure) {
      showStatus(failure.message, "error");
      fit();
      draw();
      return;
    }
    state.result = result;
    $("threshold").min = String(Math.min(Number(result.min_score) || 0.05, state.threshold));
    showResult();
  }

  async function detect(file) {
    const parameters = new URLSearchParams({ min_score: SERVER_MIN_SCORE });
    const model = new URLSearchParams(window.location.search).get("model");
    if (model) parameters.set("model", model);
    const form = new FormData();
    form.append("image", file, file.name);
    let response;
    try {
      response = await fetch(`/v1/detect?${parameters}`, { method: "POST", body: form });
    } catch (error) {
      throw new Error(`Could not reach the cervical-tf server (${error.message}).`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null; // not JSON: reported below by status code
    }
    if (!response.ok) {
      const message = body && body.error ? body.error : response.statusText || "no message";
      throw new Error(`Server error ${response.status}: ${message}`);
    }
    if (!body || !Array.isArray(body.detections)) {
      throw new Error("The server's answer has no detections list.");
    }
    return body;
  }

  function loadPicture(file) {
    return new Promise((resolve) => {
      const url = URL.createObjectURL(file);
      const image = new Image();
      image.onload = () => resolve({ image, url });
      image.onerror = () => {
        URL.revokeObjectURL(url);
        resolve(null);
      };
      image.src = url;
    });
  }

  function isSupported(file) {
    const extension = file.name.includes(".") ? file.name.split(".").pop().toLowerCase() : "";
    return EXTENSIONS.includes(extension) || /^image\/(png|jpeg|bmp|tiff|webp)$/.test(file.type);
  }

  function clearResult() {
    cancelAnimationFrame(state.animation);
    if (state.picture) URL.revokeObjectURL(state.picture.url);
    Object.assign(state, { file: null, result: null, picture: null, shown: [], selected: null });
    for (const id of ["image-size", "model-name", "abnormal-summary"]) $(id).textContent = "–";
    $("abnormal-summary").className = "";
    refresh();
  }

  function showResult() {
    const result = state.result;
    $("image-size").textContent = `${result.width} × ${result.height} px`;
    $("model-name").textContent = result.model || "–";
    showModelCard(result.model_card);
    const count = result.detections.length;
    const found = `${result.image}: ${count} cell${count === 1 ? "" : "s"} detected (score ≥ ${result.min_score}).`;
    if (state.picture) {
      showStatus(found, "ok");
    } else {
      showStatus(`${found} This browser cannot display this image format: boxes are drawn on a blank area.`, "notice");
    }
    fit();
    refresh();
  }

  function showStatus(message, kind) {
    const status = $("status");
    status.textContent = message;
    status.className = kind;
  }

  // ---- the threshold filters everything shown, without asking the server again ----

  function onThreshold() {
    const slider = $("threshold");
    state.threshold = Number(slider.value);
    $("threshold-value").textContent = state.threshold.toFixed(2);
    refresh();
  }

  function refresh() {
    state.shown = shownIndexes();
    if (state.selected !== null && !state.shown.includes(state.selected)) state.selected = null;
    renderCounts();
    renderList();
    renderAbnormalSummary();
    const ready = state.result !== null;
    $("total-count").textContent = ready ? String(state.shown.length) : "";
    for (const id of ["download-json", "download-csv", "download-geojson"]) $(id).disabled = !ready;
    draw();
  }

  /** Indexes of the detections at or above the threshold: abnormal ones first (in the server's
   * abnormal_first order, highest score first), then the others by score. */
  function shownIndexes() {
    if (!state.result) return [];
    const detections = state.result.detections;
    const passes = (index) => detections[index].score >= state.threshold;
    const abnormal = (state.result.abnormal_first || []).filter(passes);
    const placed = new Set(abnormal);
    const rest = detections
      .map((_, index) => index)
      .filter((index) => passes(index) && !placed.has(index))
      .sort((a, b) => Number(detections[b].abnormal) - Number(detections[a].abnormal) ||
        detections[b].score - detections[a].score);
    return abnormal.concat(rest);
  }

  function renderCounts() {
    const body = $("counts").tBodies[0];
    body.replaceChildren();
    if (!state.result) return;
    const counts = new Map(classNames().map((name) => [name, 0]));
    for (const index of state.shown) {
      const name = state.result.detections[index].class;
      counts.set(name, (counts.get(name) || 0) + 1);
    }
    const abnormalClasses = new Set((state.result.abnormal && state.result.abnormal.classes) || []);
    for (const [name, count] of counts) {
      const row = body.insertRow();
      row.className = count === 0 ? "empty" : "";
      const label = row.insertCell();
      label.append(swatch(colorOf(name)), document.createTextNode(name));
      if (abnormalClasses.has(name)) label.append(badge("abnormal"));
      const cell = row.insertCell();
      cell.className = "number";
      cell.textContent = String(count);
    }
    const total = body.insertRow();
    total.className = "total";
    total.insertCell().textContent = "Total";
    const cell = total.insertCell();
    cell.className = "number";
    cell.textContent = String(state.shown.length);
  }

  /** Every class the response names: those with a colour (the model's classes), then any other
   * class a detection has. */
  function classNames() {
    const names = Object.keys(state.result.colors || {});
    for (const detection of state.result.detections) {
      if (!names.includes(detection.class)) names.push(detection.class);
    }
    return names;
  }

  function renderList() {
    const list = $("abnormal-list");
    list.replaceChildren();
    const more = $("list-more");
    more.hidden = true;
    if (!state.result) return;
    if (state.shown.length === 0) {
      const empty = document.createElement("li");
      empty.className = "placeholder";
      empty.textContent = "No cell scores at least this threshold.";
      list.append(empty);
      return;
    }
    for (const index of state.shown.slice(0, LIST_LIMIT)) {
      const detection = state.result.detections[index];
      const [xmin, ymin, xmax, ymax] = detection.box;
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.index = String(index);
      if (index === state.selected) button.setAttribute("aria-current", "true");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = detection.class;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = detection.score.toFixed(2);
      const where = document.createElement("span");
      where.className = "where";
      where.textContent = `at ${Math.round((xmin + xmax) / 2)}, ${Math.round((ymin + ymax) / 2)}`;
      button.append(swatch(colorOf(detection.class)), name);
      if (detection.abnormal) button.append(badge("abnormal"));
      button.append(where, score);
      button.setAttribute("aria-label",
        `${detection.abnormal ? "Abnormal " : ""}${detection.class}, score ${score.textContent}, ` +
        `centred at x ${Math.round((xmin + xmax) / 2)}, y ${Math.round((ymin + ymax) / 2)}: show it`);
      button.addEventListener("click", () => select(index, true));
      item.append(button);
      list.append(item);
    }
    if (state.shown.length > LIST_LIMIT) {
      more.hidden = false;
      more.textContent = `and ${state.shown.length - LIST_LIMIT} more (raise the threshold to list them).`;
    }
  }

  function renderAbnormalSummary() {
    const summary = $("abnormal-summary");
    if (!state.result) return;
    const abnormal = state.result.abnormal || {};
    const classes = abnormal.classes || [];
    summary.title = abnormal.chosen_by ? `abnormal classes chosen by: ${abnormal.chosen_by}` : "";
    if (classes.length === 0) {
      summary.textContent = "no abnormal classes for this model";
      summary.className = "";
      return;
    }
    const count = state.shown.filter((index) => state.result.detections[index].abnormal).length;
    summary.textContent = `${count} cell${count === 1 ? "" : "s"} (${classes.join(", ")})`;
    summary.className = count > 0 ? "alert" : "";
  }

  function select(index, centre) {
    state.selected = index;
    for (const button of $("abnormal-list").querySelectorAll("button")) {
      if (Number(button.dataset.index) === index) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
    if (centre) centreOn(state.result.detections[index].box);
    else draw();
  }

  // ---- downloads: the detections shown, built here from the filtered response ----

  function shownDetections() {
    // The server's order (by detection), not the list's order.
    return [...state.shown].sort((a, b) => a - b).map((index) => state.result.detections[index]);
  }

  function downloadJson() {
    const detections = shownDetections();
    const counts = {};
    for (const detection of detections) counts[detection.class] = (counts[detection.class] || 0) + 1;
    const { image, width, height, model } = state.result;
    const modelCard = state.result.model_card;
    const document_ = {
      image, width, height, model, min_score: state.threshold, detections, counts, model_card: modelCard,
    };
    save(JSON.stringify(document_, null, 1), "json", "application/json");
  }

  function downloadCsv() {
    const lines = ["image,class,class_id,score,xmin,ymin,xmax,ymax"];
    for (const detection of shownDetections()) {
      lines.push([state.result.image, detection.class, detection.class_id, detection.score, ...detection.box]
        .map(csvField).join(","));
    }
    save(lines.join("\n") + "\n", "csv", "text/csv");
  }

  /** QuPath GeoJSON, the shape `cervical-tf predict` writes: a closed ring per box, in pixels, and
   * the model card as a foreign member. */
  function downloadGeojson() {
    const features = shownDetections().map((detection) => {
      const [xmin, ymin, xmax, ymax] = detection.box;
      return {
        type: "Feature",
        geometry: {
          type: "Polygon",
          coordinates: [[[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax], [xmin, ymin]]],
        },
        properties: {
          objectType: "detection",
          classification: { name: detection.class, color: rgbOf(colorOf(detection.class)) },
          measurements: { score: detection.score },
          image: state.result.image,
        },
      };
    });
    const collection = { type: "FeatureCollection", features, model_card: state.result.model_card };
    save(JSON.stringify(collection), "geojson", "application/geo+json");
  }

  function save(text, extension, type) {
    const stem = String(state.result.image || "image").replace(/\.[^.]*$/, "");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type }));
    link.download = `${stem}_detections.${extension}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  function csvField(value) {
    const text = String(value);
    return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  }

  // ---- colours ----

  function colorOf(name) {
    const colors = (state.result && state.result.colors) || {};
    if (/^#[0-9a-f]{6}$/i.test(colors[name] || "")) return colors[name];
    const detection = state.result && state.result.detections.find((each) => each.class === name);
    return TAB10[(((detection ? detection.class_id : 1) - 1) % 10 + 10) % 10];
  }

  function rgbOf(hex) {
    return [1, 3, 5].map((start) => parseInt(hex.slice(start, start + 2), 16));
  }

  function swatch(color) {
    const element = document.createElement("span");
    element.className = "swatch";
    element.style.background = color;
    element.setAttribute("aria-hidden", "true");
    return element;
  }

  function badge(text) {
    const element = document.createElement("span");
    element.className = "badge";
    element.textContent = text;
    return element;
  }

  // ---- the canvas: image coordinates through one transform ----

  function imageSize() {
    if (state.result) return { width: state.result.width, height: state.result.height };
    if (state.picture) return { width: state.picture.image.naturalWidth, height: state.picture.image.naturalHeight };
    return null;
  }

  function canvasWidth() {
    return canvas.clientWidth;
  }

  function canvasHeight() {
    return canvas.clientHeight;
  }

  function resizeCanvas() {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvasWidth() * ratio));
    const height = Math.max(1, Math.round(canvasHeight() * ratio));
    if (canvas.width === width && canvas.height === height) return;
    const centre = screenToImage(canvas.width / ratio / 2, canvas.height / ratio / 2);
    canvas.width = width;
    canvas.height = height;
    if (state.view.fitted) fit();
    else placeCentre(centre.x, centre.y, state.view.scale);
    draw();
  }

  function fitScale() {
    const size = imageSize();
    if (!size) return 1;
    return Math.min(canvasWidth() / size.width, canvasHeight() / size.height) * 0.97;
  }

  function fit() {
    const size = imageSize();
    if (!size) return;
    placeCentre(size.width / 2, size.height / 2, fitScale());
    state.view.fitted = true;
  }

  /** Put image point (x, y) at the centre of the canvas at `scale` screen px per image px. */
  function placeCentre(x, y, scale) {
    state.view.scale = scale;
    state.view.x = canvasWidth() / 2 - x * scale;
    state.view.y = canvasHeight() / 2 - y * scale;
  }

  function screenToImage(x, y) {
    return { x: (x - state.view.x) / state.view.scale, y: (y - state.view.y) / state.view.scale };
  }

  function clampScale(scale) {
    return Math.min(Math.max(scale, fitScale() / 4), Math.max(MAX_SCALE, fitScale()));
  }

  /** Zoom by `factor` keeping the image point under screen point (x, y) where it is. */
  function zoomAt(factor, x, y) {
    if (!imageSize()) return;
    cancelAnimationFrame(state.animation);
    const view = state.view;
    const scale = clampScale(view.scale * factor);
    view.x = x - (x - view.x) * (scale / view.scale);
    view.y = y - (y - view.y) * (scale / view.scale);
    view.scale = scale;
    view.fitted = false;
    draw();
  }

  /** Centre a box [xmin, ymin, xmax, ymax] (image px), zoomed so it fills about a third of the view. */
  function centreOn(box) {
    const [xmin, ymin, xmax, ymax] = box;
    const target = clampScale(Math.min(
      canvasWidth() / (3 * Math.max(xmax - xmin, 1)),
      canvasHeight() / (3 * Math.max(ymax - ymin, 1)),
    ));
    const start = { ...state.view };
    const centre = { x: (xmin + xmax) / 2, y: (ymin + ymax) / 2 };
    const end = { scale: target, x: canvasWidth() / 2 - centre.x * target, y: canvasHeight() / 2 - centre.y * target };
    state.view.fitted = false;
    cancelAnimationFrame(state.animation);
    const reduced = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    const duration = reduced ? 0 : 250;
    const began = performance.now();
    const step = (now) => {
      const t = duration === 0 ? 1 : Math.min(1, (now - began) / duration);
      const ease = 1 - (1 - t) ** 3;
      // Interpolate the scale geometrically and the image point at the centre linearly.
      const scale = start.scale * (end.scale / start.scale) ** ease;
      const from = { x: (canvasWidth() / 2 - start.x) / start.scale, y: (canvasHeight() / 2 - start.y) / start.scale };
      placeCentre(from.x + (centre.x - from.x) * ease, from.y + (centre.y - from.y) * ease, scale);
      draw();
      if (t < 1) state.animation = requestAnimationFrame(step);
    };
    state.animation = requestAnimationFrame(step);
  }

  function draw() {
    const ratio = window.devicePixelRatio || 1;
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.clearRect(0, 0, canvas.width, canvas.height);
    const size = imageSize();
    $("zoom-value").textContent = size ? `${Math.round(state.view.scale * 100)}%` : "–";
    if (!size) {
      caption(state.file ? "No image to show" : "Open or drop a Pap smear image", canvasHeight() / 2);
      return;
    }
    const { scale, x, y } = state.view;
    context.setTransform(ratio * scale, 0, 0, ratio * scale, ratio * x, ratio * y);
    if (state.picture) {
      context.imageSmoothingEnabled = scale < 4; // past 4x show the pixels as they are
      context.drawImage(state.picture.image, 0, 0);
    } else {
      context.fillStyle = "#d9d6cf";
      context.fillRect(0, 0, size.width, size.height);
    }
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    if (!state.picture) caption("Preview not available in this browser", Math.max(y, 0) + 28);
    if (!state.result) return;
    const detections = state.result.detections;
    // Lowest score first, so the strongest boxes end up on top.
    const order = [...state.shown].sort((a, b) => detections[a].score - detections[b].score);
    context.setTransform(ratio * scale, 0, 0, ratio * scale, ratio * x, ratio * y);
    for (const index of order) drawBox(detections[index], index === state.selected, scale);
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    for (const index of order) drawTag(detections[index]);
  }

  function drawBox(detection, selected, scale) {
    // At least 6 screen px a side, so a small cell stays visible on a large field zoomed out.
    const [xmin, ymin, xmax, ymax] = atLeast(detection.box, 6 / scale);
    const line = (detection.abnormal ? 3 : 2) / scale; // screen px, whatever the zoom
    if (selected) {
      // A black-and-white halo that shows on any background.
      for (const [extra, color] of [[7, "#000000"], [4, "#ffffff"]]) {
        context.lineWidth = line + extra / scale;
        context.strokeStyle = color;
        context.strokeRect(xmin, ymin, xmax - xmin, ymax - ymin);
      }
    }
    context.lineWidth = line;
    context.strokeStyle = colorOf(detection.class);
    context.strokeRect(xmin, ymin, xmax - xmin, ymax - ymin);
  }

  /** `box` grown around its centre to at least `side` on each axis (image px). */
  function atLeast(box, side) {
    const [xmin, ymin, xmax, ymax] = box;
    const growX = Math.max(0, side - (xmax - xmin)) / 2;
    const growY = Math.max(0, side - (ymax - ymin)) / 2;
    return [xmin - growX, ymin - growY, xmax + growX, ymax + growY];
  }

  /** "class 0.93" on a filled tag above the box's top-left corner, in screen coordinates. */
  function drawTag(detection) {
    const { scale, x, y } = state.view;
    const [xmin, ymin, xmax] = detection.box;
    if ((xmax - xmin) * scale < LABEL_MIN_WIDTH) return;
    const text = `${detection.class} ${detection.score.toFixed(2)}`;
    context.font = "12px system-ui, sans-serif";
    const width = context.measureText(text).width + 8;
    const left = x + xmin * scale;
    const top = Math.max(0, y + ymin * scale - 18);
    context.fillStyle = colorOf(detection.class);
    context.fillRect(left, top, width, 18);
    context.fillStyle = textColor(colorOf(detection.class));
    context.fillText(text, left + 4, top + 13);
  }

  /** A line of text centred across the canvas at screen height `top` (screen coordinates). */
  function caption(text, top) {
    const ratio = window.devicePixelRatio || 1;
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.font = "16px system-ui, sans-serif";
    context.textAlign = "center";
    context.fillStyle = state.result || state.picture ? "#4a4f55" : "#c9ced4";
    context.fillText(text, canvasWidth() / 2, top);
    context.textAlign = "start";
  }

  function textColor(hex) {
    const [red, green, blue] = rgbOf(hex);
    return 0.299 * red + 0.587 * green + 0.114 * blue > 150 ? "#000000" : "#ffffff";
  }

  /** The smallest shown box under screen point (x, y), or null. */
  function boxAt(x, y) {
    if (!state.result) return null;
    const point = screenToImage(x, y);
    let best = null;
    let bestArea = Infinity;
    for (const index of state.shown) {
      const [xmin, ymin, xmax, ymax] = state.result.detections[index].box;
      const area = (xmax - xmin) * (ymax - ymin);
      if (point.x >= xmin && point.x <= xmax && point.y >= ymin && point.y <= ymax && area < bestArea) {
        best = index;
        bestArea = area;
      }
    }
    return best;
  }

  function wireCanvas() {
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      const pixels = event.deltaY * (event.deltaMode === 1 ? 40 : event.deltaMode === 2 ? 800 : 1);
      const rect = canvas.getBoundingClientRect();
      zoomAt(Math.exp(-pixels * 0.0015), event.clientX - rect.left, event.clientY - rect.top);
    }, { passive: false });

    let drag = null;
    canvas.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 || !imageSize()) return;
      cancelAnimationFrame(state.animation);
      canvas.setPointerCapture(event.pointerId);
      drag = { x: event.clientX, y: event.clientY, viewX: state.view.x, viewY: state.view.y, moved: false };
      canvas.classList.add("dragging");
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      if (!drag.moved) return;
      state.view.x = drag.viewX + dx;
      state.view.y = drag.viewY + dy;
      state.view.fitted = false;
      draw();
    });
    const end = (event) => {
      if (!drag) return;
      const clicked = !drag.moved;
      drag = null;
      canvas.classList.remove("dragging");
      if (clicked && event.type === "pointerup") {
        const rect = canvas.getBoundingClientRect();
        const index = boxAt(event.clientX - rect.left, event.clientY - rect.top);
        if (index !== null) {
          select(index, false);
          const button = $("abnormal-list").querySelector(`button[data-index="${index}"]`);
          if (button) button.scrollIntoView({ block: "nearest" });
        }
      }
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);

    canvas.addEventListener("keydown", (event) => {
      const centreX = canvasWidth() / 2;
      const centreY = canvasHeight() / 2;
      const pan = { ArrowLeft: [60, 0], ArrowRight: [-60, 0], ArrowUp: [0, 60], ArrowDown: [0, -60] }[event.key];
      if (event.key === "+" || event.key === "=") zoomAt(1.25, centreX, centreY);
      else if (event.key === "-") zoomAt(0.8, centreX, centreY);
      else if (event.key === "0") { fit(); draw(); }
      else if (pan && imageSize()) {
        state.view.x += pan[0];
        state.view.y += pan[1];
        state.view.fitted = false;
        draw();
      } else return;
      event.preventDefault();
    });
  }

  function wireDragAndDrop() {
    const hint = $("drop-hint");
    window.addEventListener("dragover", (event) => {
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      hint.hidden = false;
    });
    window.addEventListener("dragleave", (event) => {
      if (event.relatedTarget === null) hint.hidden = true;
    });
    window.addEventListener("drop", (event) => {
      event.preventDefault();
      hint.hidden = true;
      const file = event.dataTransfer.files[0];
      if (file) analyse(file);
    });
  }
})();
