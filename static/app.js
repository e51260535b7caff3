// Progressive enhancement of the upload page: send the file with fetch() to the page endpoint (/page/predict:
// the JSON API's answer, authenticated as this page with its session and CSRF token, never with the API token)
// and draw the result on a canvas without reloading. The user can change the overlay opacity, switch between
// the mask and the probability heatmap, re-threshold the probability map in the browser (no new request), and, for
// a cine loop (frames=all), play the frames with a per-frame presence strip. A single frame is shown as a
// loop of one. Without this script the form posts to the page route and the server renders the same figures
// (templates/index.html), so the text formats below match the template's.
"use strict";

(function () {
  const form = document.getElementById("upload-form");
  if (!form || !window.fetch || !window.FormData) {
    return;
  }
  const byId = (id) => document.getElementById(id);
  const input = byId("image");
  const dropzone = byId("dropzone");
  const statusLine = byId("status");
  const errorBox = byId("error");
  const submitButton = byId("submit");
  const resultSection = byId("result");
  const canvas = byId("overlay-canvas");
  const serverImage = byId("overlay-image");
  const slider = byId("opacity");
  const sliderValue = byId("opacity-value");
  const cutSlider = byId("display-threshold");
  const cutValue = byId("display-threshold-value");
  const player = byId("player");
  const playButton = byId("play");
  const frameSlider = byId("frame-slider");
  const frameLabel = byId("frame-label");
  const strip = byId("presence-strip");
  const colour = canvas.dataset.colour;
  const rgb = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
  const outlineWidth = Number(canvas.dataset.outline);
  const FRAMES_PER_SECOND = 15;

  let frames = []; // per frame: {result, image, tint, probability: Uint8ClampedArray, layers: Map}
  let current = 0;
  let serverCut = 0.5; // the threshold the server's masks were made with
  let timer = null;
  let blobUrls = [];

  document.querySelectorAll(".js-only").forEach((element) => { element.hidden = false; });

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    statusLine.textContent = "";
  }

  function setBusy(busy) {
    submitButton.disabled = busy;
    form.setAttribute("aria-busy", String(busy));
    if (busy) {
      errorBox.hidden = true;
      statusLine.textContent = "Analysing…";
    }
  }

  function blobUrl(base64, type) {
    const binary = atob(base64);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) {
      bytes[i] = binary.charCodeAt(i);
    }
    const url = URL.createObjectURL(new Blob([bytes], { type }));
    blobUrls.push(url);
    return url;
  }

  function pngUrl(base64) {
    return blobUrl(base64, "image/png");
  }

  // A DICOM Part 10 file has "DICM" after its 128-byte preamble; for one, the page also asks for a DICOM SEG.
  async function isDicom(file) {
    const magic = new Uint8Array(await file.slice(128, 132).arrayBuffer());
    return String.fromCharCode(...magic) === "DICM";
  }

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const image = new Image();
      image.onload = () => resolve(image);
      image.onerror = () => reject(new Error("The result image could not be shown."));
      image.src = url;
    });
  }

  function pixelsOf(image) {
    const layer = document.createElement("canvas");
    layer.width = image.naturalWidth;
    layer.height = image.naturalHeight;
    const context = layer.getContext("2d");
    context.drawImage(image, 0, 0);
    return context.getImageData(0, 0, layer.width, layer.height);
  }

  // A layer of the overlay colour whose alpha (0..255) per pixel is alphaAt(pixel index).
  function layerOf(width, height, alphaAt) {
    const layer = document.createElement("canvas");
    layer.width = width;
    layer.height = height;
    const context = layer.getContext("2d");
    const pixels = context.createImageData(width, height);
    const data = pixels.data;
    for (let p = 0, i = 0; p < width * height; p += 1, i += 4) {
      data[i] = rgb[0];
      data[i + 1] = rgb[1];
      data[i + 2] = rgb[2];
      data[i + 3] = alphaAt(p);
    }
    context.putImageData(pixels, 0, 0);
    return layer;
  }

  // The browser's own mask at threshold `cut` (probability PNG byte >= cut x 255), its fill and its edge
  // (mask pixels with a 4-neighbour outside), cached per frame and threshold so playback stays smooth.
  function rethresholded(frame, cut) {
    const key = `cut:${cut}`;
    if (!frame.layers.has(key)) {
      const { width, height } = frame.result;
      const level = cut * 255;
      const inside = new Uint8Array(width * height);
      frame.probability.forEach((value, p) => { inside[p] = value >= level ? 1 : 0; });
      const edge = (p) => {
        if (!inside[p]) { return 0; }
        const x = p % width;
        const y = (p - x) / width;
        return x === 0 || y === 0 || x === width - 1 || y === height - 1 || !inside[p - 1] || !inside[p + 1]
          || !inside[p - width] || !inside[p + width] ? 255 : 0;
      };
      frame.layers.set(key, { fill: layerOf(width, height, (p) => inside[p] * 255), outline: layerOf(width, height, edge) });
    }
    return frame.layers.get(key);
  }

  function heatmap(frame) {
    if (!frame.layers.has("heat")) {
      frame.layers.set("heat", layerOf(frame.result.width, frame.result.height, (p) => frame.probability[p]));
    }
    return frame.layers.get("heat");
  }

  function viewMode() {
    return form.ownerDocument.querySelector("input[name='view-mode']:checked").value;
  }

  function draw() {
    const frame = frames[current];
    if (!frame) {
      return;
    }
    const cut = Number(cutSlider.value);
    const context = canvas.getContext("2d");
    context.globalAlpha = 1;
    context.drawImage(frame.image, 0, 0);
    context.globalAlpha = Number(slider.value) / 100;
    if (viewMode() === "heatmap") {
      context.drawImage(heatmap(frame), 0, 0);
    } else if (Math.abs(cut - serverCut) < 1e-9) {
      // At the server's threshold: its own mask (after the minimum-area gate) and contours.
      context.drawImage(frame.tint, 0, 0);
      context.globalAlpha = 1;
      context.strokeStyle = colour;
      context.lineWidth = outlineWidth;
      context.lineJoin = "round";
      for (const contour of frame.result.contours) {
        context.beginPath();
        contour.forEach(([x, y], i) => (i ? context.lineTo(x + 0.5, y + 0.5) : context.moveTo(x + 0.5, y + 0.5)));
        context.closePath();
        context.stroke();
      }
    } else {
      const layers = rethresholded(frame, cut);
      context.drawImage(layers.fill, 0, 0);
      context.globalAlpha = 1;
      context.drawImage(layers.outline, 0, 0);
    }
    context.globalAlpha = 1;
    sliderValue.textContent = `${slider.value}%`;
    cutValue.textContent = cut.toFixed(3);
    canvas.dataset.drawn = "true";
    canvas.dataset.frame = String(current);
  }

  // Three verdicts: an answer the model itself rates unreliable is never shown as a plain finding.
  function verdictOf(result) {
    if (result.reliable === false) {
      return { text: "Uncertain: do not rely on this outline", kind: "uncertain" };
    }
    return result.nerve_present ? { text: "Nerve found", kind: "present" } : { text: "No nerve found", kind: "absent" };
  }

  function confidenceOf(result) {
    if (typeof result.expected_dice !== "number") {
      return "This model gives no confidence estimate: judge the outline yourself";
    }
    return `Confidence: expected Dice ${result.expected_dice.toFixed(2)}, the model's own estimate of how closely `
      + "this answer matches an expert's outline (1 = exactly; for \"no nerve found\", the chance that none is "
      + "in view)";
  }

  function showFigures(result) {
    const verdict = verdictOf(result);
    const decision = byId("decision");
    decision.textContent = verdict.text;
    decision.classList.toggle("present", verdict.kind === "present");
    decision.classList.toggle("uncertain", verdict.kind === "uncertain");
    byId("confidence").textContent = confidenceOf(result);
    byId("probability").textContent = result.nerve_probability.toFixed(3);
    byId("area").textContent = `${result.mask_area_px} px`;
    byId("bbox").textContent = result.bbox ? result.bbox.join(", ") : "none";
    byId("size").textContent = `${result.width} × ${result.height} px`;
    byId("timing").textContent =
      `${result.timing_ms.infer.toFixed(1)} ms (total ${result.timing_ms.total.toFixed(1)} ms)`;
    byId("model").textContent = `${result.model.name} ${result.model.version}`;
    byId("download-mask").href = frames[current].maskUrl;
    byId("download-overlay").href = frames[current].overlayUrl;
  }

  function show(index) {
    current = Math.max(0, Math.min(index, frames.length - 1));
    frameSlider.value = String(current);
    frameLabel.textContent = `Frame ${current + 1} of ${frames.length}`;
    strip.querySelectorAll("li").forEach((cell, i) => cell.classList.toggle("current", i === current));
    showFigures(frames[current].result);
    draw();
  }

  function stop() {
    if (timer !== null) {
      clearInterval(timer);
      timer = null;
    }
    playButton.textContent = "Play";
    playButton.setAttribute("aria-pressed", "false");
  }

  function togglePlay() {
    if (timer !== null) {
      stop();
      return;
    }
    playButton.textContent = "Pause";
    playButton.setAttribute("aria-pressed", "true");
    timer = setInterval(() => show((current + 1) % frames.length), 1000 / FRAMES_PER_SECOND);
  }

  function buildStrip() {
    strip.replaceChildren(...frames.map((frame, i) => {
      const cell = document.createElement("li");
      const verdict = verdictOf(frame.result);
      cell.className = verdict.kind; // the strip marks unreliable frames apart from found and not found
      cell.title = `Frame ${i + 1}: ${verdict.text.toLowerCase()}`;
      cell.tabIndex = 0;
      cell.dataset.frame = String(i);
      return cell;
    }));
  }

  async function prepare(result) {
    const [image, mask, probability] = await Promise.all(
      [result.image_png, result.mask_png, result.probability_png].map((png) => loadImage(pngUrl(png))));
    const maskPixels = pixelsOf(mask).data;
    const probabilityPixels = pixelsOf(probability).data;
    const values = new Uint8ClampedArray(result.width * result.height);
    values.forEach((_, p) => { values[p] = probabilityPixels[p * 4]; });
    return {
      result,
      image,
      tint: layerOf(result.width, result.height, (p) => (maskPixels[p * 4] > 127 ? 255 : 0)),
      probability: values,
      layers: new Map(),
      maskUrl: pngUrl(result.mask_png),
      overlayUrl: pngUrl(result.overlay_png),
    };
  }

  async function render(payload) {
    stop();
    blobUrls.forEach((url) => URL.revokeObjectURL(url));
    blobUrls = [];
    const results = payload.frames || [payload];
    frames = await Promise.all(results.map(prepare));
    canvas.width = results[0].width;
    canvas.height = results[0].height;
    const sent = byId("threshold").value.trim();
    serverCut = sent ? Number(sent) : Number(form.dataset.threshold);
    cutSlider.value = String(serverCut);
    serverCut = Number(cutSlider.value); // the range input's own rounding of the value
    frameSlider.max = String(frames.length - 1);
    const segLink = byId("download-seg");
    segLink.hidden = !payload.dicom_seg; // one SEG for the whole answer (every frame of a loop)
    segLink.href = payload.dicom_seg ? blobUrl(payload.dicom_seg, "application/dicom") : "#";
    buildStrip();
    player.hidden = frames.length < 2;
    show(0);

    serverImage.hidden = true;
    canvas.hidden = false;
    ["opacity-control", "view-control", "display-threshold-control"].forEach((id) => { byId(id).hidden = false; });
    resultSection.hidden = false;
  }

  async function post(body) {
    const response = await fetch(form.dataset.predict, {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": form.elements.csrf_token.value },
    });
    let payload = null;
    try {
      payload = await response.json();
    } catch (_) { /* not JSON: reported by status */ }
    return { response, payload };
  }

  // A fresh token for this session, kept in the form where every later request reads it.
  async function refreshToken() {
    const response = await fetch(form.dataset.csrfUrl, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) {
      return false;
    }
    form.elements.csrf_token.value = (await response.json()).csrf_token;
    return true;
  }

  async function analyse(event) {
    event.preventDefault();
    if (!input.files.length) {
      showError("Choose an image file first.");
      return;
    }
    const body = new FormData();
    body.append("image", input.files[0]);
    const threshold = byId("threshold").value.trim();
    if (threshold) {
      body.append("threshold", threshold);
    }
    if (byId("all-frames").checked) {
      body.append("frames", "all");
    }
    const dicom = await isDicom(input.files[0]);
    body.append("include", dicom ? `${form.dataset.include},dicom_seg` : form.dataset.include);
    setBusy(true);
    try {
      let { response, payload } = await post(body);
      if (response.status === 400 && payload && payload.error && payload.error.code === "csrf_failed"
          && await refreshToken()) {
        ({ response, payload } = await post(body)); // the page outlived its token's hour: once with a fresh one
      }
      if (!payload) {
        throw new Error(`The service answered HTTP ${response.status} without a result.`);
      }
      if (!response.ok) {
        throw new Error(payload.error ? payload.error.message : `HTTP ${response.status}`);
      }
      await render(payload);
      statusLine.textContent = payload.frames ? `Done: ${payload.frame_count} frames.` : "Done.";
      resultSection.scrollIntoView({ behavior: "smooth", block: "start" });
    } catch (error) {
      showError(error.message || "The request failed.");
    } finally {
      setBusy(false);
    }
  }

  form.addEventListener("submit", analyse);
  slider.addEventListener("input", draw);
  cutSlider.addEventListener("input", draw);
  document.querySelectorAll("input[name='view-mode']").forEach((radio) => radio.addEventListener("change", draw));
  playButton.addEventListener("click", togglePlay);
  frameSlider.addEventListener("input", () => { stop(); show(Number(frameSlider.value)); });
  const seek = (event) => {
    const cell = event.target.closest("li");
    if (cell && (event.type === "click" || event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      stop();
      show(Number(cell.dataset.frame));
    }
  };
  strip.addEventListener("click", seek);
  strip.addEventListener("keydown", seek);

  ["dragenter", "dragover"].forEach((type) => dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    dropzone.classList.add("dragging");
  }));
  ["dragleave", "drop"].forEach((type) => dropzone.addEventListener(type, () => dropzone.classList.remove("dragging")));
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      statusLine.textContent = `Chosen: ${input.files[0].name}`;
    }
  });
}());
