/* The cervical-tf slide viewer: a slide of `serve --slides DIR` in OpenSeadragon, predict's
 * detections drawn over it by class, a legend whose checkboxes show or hide each class, and the
 * gallery of the most suspicious cells: clicking one flies the view to its box.
 *
 * Everything comes from the server (slide_routes.py): /v1/slides, /v1/slides/NAME (size, pixel
 * size), NAME/image.dzi and its tiles, NAME/detections.geojson, NAME/gallery.json and .png.
 * Boxes are level-0 pixels [xmin, ymin, xmax, ymax] everywhere; the overlay draws them in those
 * units inside one SVG group, which `placeOverlay` maps onto the screen after every frame.
 * `window.slideViewer` exposes the state for tests; body[data-state] is "ready" once drawn.
 */
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const state = { viewer: null, cells: 0, classes: new Map(), focus: null };
  window.slideViewer = state;

  main().catch((error) => setStatus(error.message, "error"));

  async function main() {
    const listing = await getJSON("/v1/slides");
    const select = $("slide-select");
    // Most suspicious first: by slide score (slide_report.json), slides without one last, by name.
    const ranked = [...listing.slides].sort((a, b) =>
      (b.score ?? -1) - (a.score ?? -1) || a.name.localeCompare(b.name));
    for (const slide of ranked) {
      const label = slide.score === null ? slide.name : `${slide.name} · score ${slide.score.toFixed(3)}`;
      select.add(new Option(label, slide.name));
    }
    if (!listing.slides.length) {
      setStatus("The slide folder holds no slides (SVS, NDPI, MRXS, SCN, DICOM, tiled or OME TIFF).", "notice");
      return;
    }
    const wanted = new URLSearchParams(location.search).get("slide");
    const slide = ranked.find((item) => item.name === wanted) || ranked[0];
    select.value = slide.name;
    select.disabled = false;
    select.addEventListener("change", () => {
      location.search = "?slide=" + encodeURIComponent(select.value);
    });
    await openSlide(slide, listing.results_folder);
  }

  async function openSlide(slide, hasResults) {
    const base = "/v1/slides/" + encodeURIComponent(slide.name);
    setStatus(`Opening ${slide.name}…`, "busy");
    const info = await getJSON(base);
    $("slide-name").textContent = slide.name;
    $("slide-size").textContent = `${info.width.toLocaleString()} × ${info.height.toLocaleString()} px, ${info.levels.length} level(s)`;
    $("slide-mpp").textContent = info.mpp ? `${info.mpp[0].toFixed(3)} µm/px` : "not in the file";

    const viewer = OpenSeadragon({
      element: $("slide-view"),
      tileSources: `${base}/image.dzi?v=${slide.version}`,
      drawer: "canvas",
      showNavigationControl: false, // our own buttons: no button images needed
      showNavigator: true,
      navigatorPosition: "TOP_LEFT",
      animationTime: 0.6,
      maxZoomPixelRatio: 4,
      gestureSettingsMouse: { clickToZoom: false },
    });
    state.viewer = viewer;
    $("zoom-in").onclick = () => viewer.viewport.zoomBy(1.5);
    $("zoom-out").onclick = () => viewer.viewport.zoomBy(1 / 1.5);
    $("zoom-home").onclick = () => viewer.viewport.goHome();

    const opened = new Promise((resolve, reject) => {
      viewer.addOnceHandler("open", resolve);
      viewer.addOnceHandler("open-failed", (event) => reject(new Error(`${slide.name}: ${event.message}`)));
    });
    const [detections, gallery, report] = await Promise.all([
      slide.files.includes("detections.geojson") ? getJSON(`${base}/detections.geojson`) : null,
      slide.files.includes("gallery.json") ? getJSON(`${base}/gallery.json`) : null,
      slide.files.includes("slide_report.json") ? getJSON(`${base}/slide_report.json`) : null,
    ]);
    showReport(report);
    await opened;

    const overlay = document.createElementNS(SVG, "svg");
    overlay.id = "overlay";
    overlay.setAttribute("aria-hidden", "true");
    const layer = document.createElementNS(SVG, "g");
    overlay.appendChild(layer);
    viewer.canvas.appendChild(overlay);
    state.layer = layer;
    for (const name of ["animation", "update-viewport", "resize", "open"]) {
      viewer.addHandler(name, placeOverlay);
    }

    drawDetections(detections ? detections.features : []);
    drawLegend();
    drawGallery(gallery ? gallery.cells : [], `${base}/gallery.png?v=${slide.version}`);
    placeOverlay();

    if (!hasResults) {
      setStatus("Slide only: start serve with --slide-results RESULTS (predict's --output) to see its cells.", "notice");
    } else if (!detections) {
      setStatus(`No detections for ${slide.name} in the results folder: run cervical-tf predict on it.`, "notice");
    } else {
      setStatus(`${state.cells} cells detected on ${slide.name}.`, "ok");
    }
    document.body.dataset.state = "ready";
  }

  /* The report's score and abnormal count; its model's warning (e.g. trained on synthetic
   * cells only) as a banner above everything, as the field viewer shows it. */
  function showReport(report) {
    if (!report) return;
    $("slide-score").textContent = report.score === null ? "n/a" : Number(report.score).toFixed(3);
    $("abnormal-cells").textContent = `${report.abnormal_cells} (${(report.abnormal_classes || []).join(", ")})`;
    const warning = report.model && report.model.warning;
    if (warning) {
      $("model-warning").textContent = `The model behind these detections was ${warning}.`;
      $("model-warning").hidden = false;
    }
  }

  /* One group per class, one rect per detection, in level-0 pixels. */
  function drawDetections(features) {
    for (const feature of features) {
      const ring = feature.geometry.coordinates[0];
      const xs = ring.map((point) => point[0]);
      const ys = ring.map((point) => point[1]);
      const box = [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
      const properties = feature.properties || {};
      const name = (properties.classification && properties.classification.name) || "unclassified";
      const rgb = (properties.classification && properties.classification.color) || [255, 0, 0];
      const score = properties.measurements ? properties.measurements.score : null;
      classGroup(name, `rgb(${rgb.join(",")})`).count += 1;
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", box[0]);
      rect.setAttribute("y", box[1]);
      rect.setAttribute("width", box[2] - box[0]);
      rect.setAttribute("height", box[3] - box[1]);
      rect.setAttribute("stroke", state.classes.get(name).color);
      if (score !== null) {
        const title = document.createElementNS(SVG, "title");
        title.textContent = `${name} ${Number(score).toFixed(2)}`;
        rect.appendChild(title);
      }
      state.classes.get(name).group.appendChild(rect);
      state.cells += 1;
    }
    updateShownCount();
  }

  function classGroup(name, color) {
    if (!state.classes.has(name)) {
      const group = document.createElementNS(SVG, "g");
      group.dataset.class = name;
      state.layer.appendChild(group);
      state.classes.set(name, { group, color, count: 0, shown: true });
    }
    return state.classes.get(name);
  }

  function drawLegend() {
    const body = $("legend").tBodies[0];
    body.replaceChildren();
    const names = [...state.classes.keys()].sort();
    for (const name of names) {
      const entry = state.classes.get(name);
      const row = body.insertRow();
      const label = document.createElement("label");
      const toggle = document.createElement("input");
      toggle.type = "checkbox";
      toggle.checked = true;
      toggle.dataset.class = name;
      toggle.addEventListener("change", () => {
        entry.shown = toggle.checked;
        entry.group.setAttribute("display", toggle.checked ? "inline" : "none");
        updateShownCount();
      });
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = entry.color;
      label.append(toggle, swatch, name);
      row.insertCell().appendChild(label);
      const count = row.insertCell();
      count.className = "number";
      count.textContent = entry.count;
    }
    if (!names.length) {
      body.insertRow().insertCell().textContent = "No detections";
      return;
    }
    const total = body.insertRow();
    total.className = "total";
    total.insertCell().textContent = "Total";
    const count = total.insertCell();
    count.className = "number";
    count.textContent = state.cells;
  }

  function updateShownCount() {
    let shown = 0;
    for (const entry of state.classes.values()) {
      if (entry.shown) shown += entry.count;
    }
    $("shown-count").textContent = String(shown);
  }

  /* Each gallery cell is its crop of gallery.png (its `mosaic` rectangle) drawn on a canvas. */
  function drawGallery(cells, pngUrl) {
    const list = $("gallery");
    list.replaceChildren();
    if (!cells.length) {
      $("gallery-help").textContent = "No gallery for this slide.";
      return;
    }
    const mosaic = new Image();
    const buttons = cells.map((cell) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.rank = cell.rank;
      button.title = `#${cell.rank} ${cell["class"]} ${Number(cell.score).toFixed(2)}: go to the cell`;
      const canvas = document.createElement("canvas");
      canvas.width = 84;
      canvas.height = 84;
      const known = state.classes.get(cell["class"]);
      canvas.style.borderTopColor = known ? known.color : "transparent";
      const rank = document.createElement("span");
      rank.className = "label";
      rank.textContent = `#${cell.rank} · ${Number(cell.score).toFixed(2)}`;
      const name = document.createElement("span");
      name.className = "label";
      name.textContent = cell["class"];
      button.append(canvas, rank, name);
      button.addEventListener("click", () => flyTo(cell, button));
      item.appendChild(button);
      list.appendChild(item);
      return { cell, canvas };
    });
    mosaic.onload = () => {
      for (const { cell, canvas } of buttons) {
        const [x, y, width, height] = cell.mosaic;
        const scale = Math.min(canvas.width / width, canvas.height / height);
        const context = canvas.getContext("2d");
        context.fillStyle = "#fff";
        context.fillRect(0, 0, canvas.width, canvas.height);
        const drawWidth = width * scale;
        const drawHeight = height * scale;
        context.drawImage(mosaic, x, y, width, height,
          (canvas.width - drawWidth) / 2, (canvas.height - drawHeight) / 2, drawWidth, drawHeight);
      }
    };
    mosaic.onerror = () => setStatus("gallery.png could not be loaded; the cells still go to their boxes.", "notice");
    mosaic.src = pngUrl;
  }

  /* Fit the view to the cell's box with a margin of two boxes (at least 100 px) on each side, so
   * its neighbours show too; outline the box. */
  function flyTo(cell, button) {
    const [xmin, ymin, xmax, ymax] = cell.box;
    const margin = Math.max(100, 2 * Math.max(xmax - xmin, ymax - ymin));
    const item = state.viewer.world.getItemAt(0);
    const bounds = item.imageToViewportRectangle(
      xmin - margin, ymin - margin, xmax - xmin + 2 * margin, ymax - ymin + 2 * margin);
    state.viewer.viewport.fitBounds(bounds);
    if (!state.focus) {
      state.focus = document.createElementNS(SVG, "rect");
      state.focus.setAttribute("class", "focus");
      state.layer.appendChild(state.focus);
    }
    state.focus.setAttribute("x", xmin);
    state.focus.setAttribute("y", ymin);
    state.focus.setAttribute("width", xmax - xmin);
    state.focus.setAttribute("height", ymax - ymin);
    for (const other of $("gallery").querySelectorAll("button[aria-current]")) {
      other.removeAttribute("aria-current");
    }
    button.setAttribute("aria-current", "true");
  }

  /* Map level-0 pixels onto the viewer's pixels: one translate and one scale for the whole layer. */
  function placeOverlay() {
    const viewer = state.viewer;
    const item = viewer && viewer.world.getItemAt(0);
    if (!item || !state.layer) return;
    const span = 1000;
    const origin = viewer.viewport.pixelFromPoint(item.imageToViewportCoordinates(0, 0), true);
    const across = viewer.viewport.pixelFromPoint(item.imageToViewportCoordinates(span, 0), true);
    const scale = (across.x - origin.x) / span;
    state.layer.setAttribute("transform", `translate(${origin.x} ${origin.y}) scale(${scale})`);
  }

  /* The visible part of the slide in level-0 pixels [x, y, width, height] (for tests and people). */
  state.visibleImageRect = function () {
    const item = state.viewer.world.getItemAt(0);
    const rect = item.viewportToImageRectangle(state.viewer.viewport.getBounds(true));
    return [rect.x, rect.y, rect.width, rect.height];
  };

  async function getJSON(url) {
    const response = await fetch(url);
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error ? body.error : response.statusText;
      throw new Error(`${url}: ${response.status} ${message}`);
    }
    return body;
  }

  function setStatus(message, kind) {
    const status = $("status");
    status.textContent = message;
    status.className = kind;
  }
})();
