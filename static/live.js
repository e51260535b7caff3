// Live mode (templates/live.html): frames from a camera or capture card, a shared screen or window, or a local
// video file are cropped to the ultrasound image, sent to the page's endpoint one at a time, and the answer's
// outline is drawn on a canvas over the video.
//
// At most one request is in flight. A video frame that arrives while an answer is awaited waits; a newer one
// replaces it (the older is dropped, never queued), so the outline is at most one answer behind the probe.
// The page authenticates with its session's CSRF token (never the API token); the endpoint answers with the
// /predict fields asked for, here only `contours`, the smallest that draw fill and outline.
//
// Frames go as an 8-bit grey BMP built here (lossless: ultrasound is grey, and colour is reduced with the
// server's own ITU-R 601 weights), or as the browser's PNG; docs/live.md has the measurements behind the default.
"use strict";

(function () {
  const root = document.getElementById("live");
  if (!root || !window.fetch) {
    return;
  }
  const byId = (id) => document.getElementById(id);
  const video = byId("live-video");
  const overlay = byId("live-overlay");
  const overlayContext = overlay.getContext("2d");
  const startButton = byId("live-start");
  const stopButton = byId("live-stop");
  const cropButton = byId("live-crop");
  const cropResetButton = byId("live-crop-reset");
  const recordButton = byId("live-record");
  const deviceSelect = byId("live-device");
  const fileInput = byId("live-file");
  const encodingSelect = byId("live-encoding");
  const thresholdInput = byId("live-threshold");
  const opacitySlider = byId("live-opacity");
  const statusLine = byId("live-status");
  const errorBox = byId("live-error");
  const verdict = byId("live-verdict");
  const colour = root.dataset.colour;
  const outlineWidth = Number(root.dataset.outline);
  const WINDOW = 100; // answers behind the frames/s and latency figures
  const RETRY_MS = 1000; // pause after a failure the next frame may not repeat (overload, network)
  const MIN_CROP_PX = 16;
  const STORAGE = { crop: "nerve-live-crop", device: "nerve-live-device", encoding: "nerve-live-encoding" };

  let csrfToken = root.dataset.csrf;
  let stream = null; // the camera's or screen's MediaStream, or null for a file / when stopped
  let fileUrl = null;
  let running = false;
  let inFlight = false;
  let waiting = false; // a frame arrived while busy: send the newest one as soon as the answer is in
  let retryTimer = null;
  let frameCallback = null;
  let last = null; // {result, crop} of the newest answer, redrawn when the opacity changes
  let crop = loadCrop(); // fractions of the frame {x, y, w, h}
  let dragging = null;
  let cropMode = false;
  const latencies = new Float64Array(WINDOW);
  const answeredAt = new Float64Array(WINDOW);
  const counts = { answered: 0, dropped: 0, errors: 0 };
  const grab = document.createElement("canvas");
  const grabContext = grab.getContext("2d", { willReadFrequently: true });
  let bmp = null; // reused buffer of the grey BMP: header, grey palette, then the rows
  let recorder = null;
  let recordCanvas = null;
  let recordRows = null;
  let recordStart = 0;
  let recordUrls = [];

  function loadCrop() {
    try {
      const saved = JSON.parse(localStorage.getItem(STORAGE.crop));
      if (saved && [saved.x, saved.y, saved.w, saved.h].every((v) => Number.isFinite(v) && v >= 0 && v <= 1)
          && saved.w > 0 && saved.h > 0 && saved.x + saved.w <= 1 && saved.y + saved.h <= 1) {
        return saved;
      }
    } catch (_) { /* unreadable: the whole frame */ }
    return null;
  }

  function saveCrop(value) {
    crop = value;
    try {
      if (value) {
        localStorage.setItem(STORAGE.crop, JSON.stringify(value));
      } else {
        localStorage.removeItem(STORAGE.crop);
      }
    } catch (_) { /* storage off: remembered for this page only */ }
    showCropLabel();
  }

  function remember(key, value) {
    try { localStorage.setItem(key, value); } catch (_) { /* storage off */ }
  }

  function recalled(key) {
    try { return localStorage.getItem(key); } catch (_) { return null; }
  }

  // The crop in video pixels; the whole frame when none is set.
  function cropPixels() {
    const width = video.videoWidth;
    const height = video.videoHeight;
    if (!crop) {
      return { x: 0, y: 0, w: width, h: height };
    }
    const x = Math.round(crop.x * width);
    const y = Math.round(crop.y * height);
    return {
      x, y, w: Math.max(1, Math.min(width - x, Math.round(crop.w * width))),
      h: Math.max(1, Math.min(height - y, Math.round(crop.h * height))),
    };
  }

  function showCropLabel() {
    byId("live-crop-label").textContent = crop
      ? `Analysing the marked area (${Math.round(crop.w * 100)}% x ${Math.round(crop.h * 100)}% of the frame).`
      : "Whole frame analysed.";
  }

  function setStatus(message) {
    statusLine.textContent = message;
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function sourceKind() {
    return document.querySelector("input[name='live-source']:checked").value;
  }

  function showSourceDetail() {
    byId("live-camera-detail").hidden = sourceKind() !== "camera";
    byId("live-file-detail").hidden = sourceKind() !== "file";
  }

  async function listDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) {
      return;
    }
    const wanted = deviceSelect.value || recalled(STORAGE.device) || "";
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
    const options = [new Option("Default camera", "")];
    devices.forEach((device, i) => {
      if (device.deviceId) {
        options.push(new Option(device.label || `Camera ${i + 1}`, device.deviceId));
      }
    });
    deviceSelect.replaceChildren(...options);
    deviceSelect.value = options.some((o) => o.value === wanted) ? wanted : "";
  }

  // Plain words for what getUserMedia / getDisplayMedia refuse with.
  function mediaProblem(error, kind) {
    const name = error && error.name;
    if (kind === "screen") {
      return name === "NotAllowedError"
        ? "Screen sharing was cancelled or is not allowed in this browser. Press Start and choose a screen or window."
        : `Screen sharing could not start (${error.message || name}).`;
    }
    if (name === "NotAllowedError" || name === "SecurityError") {
      return "The browser is not allowed to use a camera on this page. Allow camera access for this site (the "
        + "camera icon in the address bar or the site settings), then press Start again.";
    }
    if (name === "NotFoundError" || name === "OverconstrainedError") {
      return "No camera or capture device was found. Connect the capture card (it appears as a camera) and press "
        + "Start again, or choose \"Screen or window\".";
    }
    if (name === "NotReadableError" || name === "AbortError") {
      return "The camera could not be started: another program may be using it. Close it and press Start again.";
    }
    return `The camera could not be started (${(error && (error.message || name)) || "unknown error"}).`;
  }

  async function openSource(kind) {
    if (kind === "file") {
      const file = fileInput.files[0];
      if (!file) {
        throw new Error("Choose a video file first.");
      }
      fileUrl = URL.createObjectURL(file);
      video.srcObject = null;
      video.src = fileUrl;
      video.loop = true;
      return;
    }
    const media = navigator.mediaDevices;
    if (!media || (kind === "camera" && !media.getUserMedia) || (kind === "screen" && !media.getDisplayMedia)) {
      throw new Error(window.isSecureContext
        ? "This browser offers no camera or screen capture."
        : "Browsers allow camera and screen capture only on https:// pages or on http://localhost.");
    }
    // Ask for a capture card's full resolution: without it browsers default to 640 x 480.
    const size = { width: { ideal: 1920 }, height: { ideal: 1080 }, frameRate: { ideal: 60 } };
    try {
      if (kind === "screen") {
        stream = await media.getDisplayMedia({ video: { frameRate: { ideal: 60 } }, audio: false });
      } else {
        const deviceId = deviceSelect.value;
        stream = await media.getUserMedia({ video: deviceId ? { ...size, deviceId: { exact: deviceId } } : size, audio: false });
      }
    } catch (error) {
      throw new Error(mediaProblem(error, kind));
    }
    stream.getVideoTracks().forEach((track) => track.addEventListener("ended", () => {
      if (running) {
        stop(kind === "screen" ? "Screen sharing ended." : "The camera stopped sending video.");
      }
    }));
    video.srcObject = stream;
    if (kind === "camera") {
      remember(STORAGE.device, deviceSelect.value);
      listDevices().catch(() => {});
    }
  }

  async function start() {
    if (running) {
      return;
    }
    showError("");
    const threshold = thresholdInput.value.trim();
    if (threshold && !(Number(threshold) > 0 && Number(threshold) < 1)) {
      showError("The threshold must be a number between 0 and 1, or empty for the model's own.");
      return;
    }
    startButton.disabled = true;
    const kind = sourceKind();
    setStatus(kind === "screen" ? "Choose the scanner's window…" : "Starting…");
    try {
      await openSource(kind);
      await video.play();
    } catch (error) {
      release();
      startButton.disabled = false;
      setStatus("Stopped.");
      showError(error.message || "The source could not be started.");
      return;
    }
    running = true;
    latencies.fill(0);
    answeredAt.fill(0);
    counts.answered = 0;
    counts.dropped = 0;
    counts.errors = 0;
    showCounts(true);
    [stopButton, cropButton, recordButton].forEach((button) => { button.disabled = false; });
    setStatus("Running.");
    nextFrame();
  }

  function release() {
    if (stream) {
      stream.getTracks().forEach((track) => track.stop());
      stream = null;
    }
    video.pause();
    video.srcObject = null;
    if (fileUrl) {
      video.removeAttribute("src");
      video.load();
      URL.revokeObjectURL(fileUrl);
      fileUrl = null;
    }
  }

  function stop(message) {
    const wasRunning = running;
    running = false;
    waiting = false;
    clearTimeout(retryTimer);
    retryTimer = null;
    if (frameCallback !== null) {
      if (video.cancelVideoFrameCallback) {
        video.cancelVideoFrameCallback(frameCallback);
      } else {
        cancelAnimationFrame(frameCallback);
      }
      frameCallback = null;
    }
    if (recorder) {
      stopRecording();
    }
    release();
    last = null;
    overlayContext.clearRect(0, 0, overlay.width, overlay.height);
    verdict.textContent = "";
    verdict.className = "decision";
    setCropMode(false);
    startButton.disabled = false;
    [stopButton, cropButton, recordButton].forEach((button) => { button.disabled = true; });
    if (wasRunning || message) {
      setStatus(typeof message === "string" ? message : "Stopped.");
    }
  }

  // One callback per frame the video presents (every animation frame where that API is missing).
  function nextFrame() {
    if (!running) {
      return;
    }
    frameCallback = video.requestVideoFrameCallback
      ? video.requestVideoFrameCallback(onFrame)
      : requestAnimationFrame(onFrame);
  }

  function onFrame() {
    frameCallback = null;
    if (!running) {
      return;
    }
    fitOverlay();
    if (recorder) {
      composite();
    }
    if (inFlight || retryTimer !== null) {
      if (waiting) {
        counts.dropped += 1; // superseded by this newer frame before it could be sent
      }
      waiting = true;
    } else if (video.videoWidth > 0) {
      send();
    }
    nextFrame();
  }

  function fitOverlay() {
    if (overlay.width !== video.videoWidth || overlay.height !== video.videoHeight) {
      overlay.width = video.videoWidth;
      overlay.height = video.videoHeight;
      draw();
    }
  }

  // The crop of the current video frame as an 8-bit grey BMP (top-down rows, grey palette: read as 'L').
  function greyBmp(box) {
    const rowBytes = (box.w + 3) & ~3;
    const offset = 14 + 40 + 1024;
    const size = offset + rowBytes * box.h;
    if (!bmp || bmp.byteLength !== size) {
      bmp = new Uint8Array(size);
      const view = new DataView(bmp.buffer);
      view.setUint16(0, 0x4d42, true);
      view.setUint32(2, size, true);
      view.setUint32(10, offset, true);
      view.setUint32(14, 40, true);
      view.setInt32(18, box.w, true);
      view.setInt32(22, -box.h, true);
      view.setUint16(26, 1, true);
      view.setUint16(28, 8, true);
      view.setUint32(34, rowBytes * box.h, true);
      view.setUint32(46, 256, true);
      for (let level = 0; level < 256; level += 1) {
        bmp[54 + 4 * level] = level;
        bmp[55 + 4 * level] = level;
        bmp[56 + 4 * level] = level;
      }
    }
    const rgba = new Uint32Array(grabContext.getImageData(0, 0, box.w, box.h).data.buffer);
    for (let y = 0, p = 0; y < box.h; y += 1) {
      const row = offset + y * rowBytes;
      for (let x = 0; x < box.w; x += 1, p += 1) {
        const q = rgba[p]; // little-endian RGBA: red in the low byte
        bmp[row + x] = ((q & 255) * 19595 + ((q >>> 8) & 255) * 38470 + ((q >>> 16) & 255) * 7471 + 32768) >>> 16;
      }
    }
    return new Blob([bmp], { type: "image/bmp" });
  }

  function encodeFrame(box) {
    if (grab.width !== box.w || grab.height !== box.h) {
      grab.width = box.w;
      grab.height = box.h;
    }
    grabContext.drawImage(video, box.x, box.y, box.w, box.h, 0, 0, box.w, box.h);
    if (encodingSelect.value === "png") {
      return new Promise((resolve) => grab.toBlob(resolve, "image/png"));
    }
    return Promise.resolve(greyBmp(box));
  }

  function predictUrl() {
    const threshold = thresholdInput.value.trim();
    return `${root.dataset.predict}?include=contours${threshold ? `&threshold=${encodeURIComponent(threshold)}` : ""}`;
  }

  // A Blob body: measured faster here than the same bytes as an ArrayBuffer (docs/live.md).
  async function post(body) {
    const response = await fetch(predictUrl(), {
      method: "POST",
      body,
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken },
    });
    let payload = null;
    try {
      payload = await response.json();
    } catch (_) { /* not JSON: reported by status below */ }
    return { response, payload };
  }

  async function refreshToken() {
    const response = await fetch(root.dataset.csrfUrl, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) {
      return false;
    }
    csrfToken = (await response.json()).csrf_token;
    return true;
  }

  async function send() {
    inFlight = true;
    waiting = false;
    const grabbed = performance.now();
    const box = cropPixels();
    try {
      const body = await encodeFrame(box);
      let { response, payload } = await post(body);
      if (response.status === 400 && payload && payload.error && payload.error.code === "csrf_failed"
          && await refreshToken()) {
        ({ response, payload } = await post(body)); // the token outlived its hour: once with a fresh one
      }
      if (!running) {
        return;
      }
      if (response.ok && payload) {
        answered(payload, box, grabbed);
      } else {
        failed(response.status, payload && payload.error);
      }
    } catch (error) {
      if (running) {
        failed(0, { code: "network", message: `the service could not be reached (${error.message})` });
      }
    } finally {
      inFlight = false;
    }
    if (running && waiting && retryTimer === null) {
      send();
    }
  }

  function answered(result, box, grabbed) {
    last = { result, box };
    draw();
    const now = performance.now();
    const slot = counts.answered % WINDOW;
    latencies[slot] = now - grabbed;
    answeredAt[slot] = now;
    counts.answered += 1;
    if (slot === 0) {
      // Every fetch leaves a resource-timing entry the page never reads; the browser keeps up to 250 of them
      // (~70 kB), which a long session would otherwise carry as heap.
      performance.clearResourceTimings();
    }
    showVerdict(result);
    showCounts(false);
    if (recordRows) {
      recordRows.push(csvRow(now, now - grabbed, result, box, ""));
    }
    if (!errorBox.hidden) {
      showError("");
    }
  }

  // Overload, a lost connection or the request budget: shown, and the loop goes on after a pause. Anything
  // else (a refused threshold, a crop over the size limit, an expired session) would fail on every frame:
  // the loop stops and says why.
  function failed(status, error) {
    counts.errors += 1;
    showCounts(true);
    const message = (error && error.message) || `the service answered HTTP ${status}`;
    if (recordRows) {
      recordRows.push(csvRow(performance.now(), NaN, null, cropPixels(), (error && error.code) || `http_${status}`));
    }
    if (status === 0 || status === 429 || status >= 500) {
      showError(`Frame not analysed: ${message}. Retrying…`);
      retryTimer = setTimeout(() => {
        retryTimer = null;
        if (running && waiting && !inFlight) {
          send();
        }
      }, RETRY_MS);
      return;
    }
    stop("Stopped after an error.");
    showError(`Stopped: ${message}.`);
  }

  function showVerdict(result) {
    let text;
    let kind;
    if (result.reliable === false) {
      text = "Uncertain: do not rely on this outline";
      kind = "uncertain";
    } else {
      text = result.nerve_present ? "Nerve found" : "No nerve found";
      kind = result.nerve_present ? "present" : "";
    }
    if (typeof result.expected_dice === "number") {
      text += ` (expected Dice ${result.expected_dice.toFixed(2)})`;
    }
    if (verdict.textContent !== text) {
      verdict.textContent = text;
      verdict.className = `decision ${kind}`.trim();
    }
  }

  function showCounts(force) {
    const filled = Math.min(counts.answered, WINDOW);
    byId("live-frames").textContent = String(counts.answered);
    byId("live-dropped").textContent = String(counts.dropped);
    byId("live-errors").textContent = String(counts.errors);
    if (filled === 0) {
      if (force) {
        byId("live-fps").textContent = "0";
        byId("live-latency").textContent = "0";
      }
      return;
    }
    const newest = (counts.answered - 1) % WINDOW;
    const oldest = counts.answered > WINDOW ? counts.answered % WINDOW : 0;
    const span = answeredAt[newest] - answeredAt[oldest];
    byId("live-fps").textContent = filled > 1 && span > 0 ? ((filled - 1) * 1000 / span).toFixed(1) : "0";
    const sorted = latencies.slice(0, filled).sort();
    const middle = filled >> 1;
    const median = filled % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
    byId("live-latency").textContent = median.toFixed(0);
  }

  // The newest answer's outline over the video, in video pixels (the crop's offset added back), and the crop
  // rectangle while it is being marked. An answer the model rates unreliable is drawn dashed and labelled.
  function draw() {
    const context = overlayContext;
    context.clearRect(0, 0, overlay.width, overlay.height);
    if (last) {
      const { result, box } = last;
      const uncertain = result.reliable === false;
      context.save();
      context.translate(box.x, box.y);
      context.beginPath();
      context.rect(0, 0, box.w, box.h);
      context.clip(); // the outline of a region at the crop's edge stays inside the area analysed
      context.beginPath();
      for (const contour of result.contours || []) {
        contour.forEach(([x, y], i) => (i ? context.lineTo(x + 0.5, y + 0.5) : context.moveTo(x + 0.5, y + 0.5)));
        context.closePath();
      }
      context.globalAlpha = (Number(opacitySlider.value) / 100) * (uncertain ? 0.5 : 1);
      context.fillStyle = colour;
      context.fill();
      context.globalAlpha = 1;
      context.strokeStyle = colour;
      context.lineWidth = outlineWidth;
      context.lineJoin = "round";
      context.setLineDash(uncertain ? [6, 4] : []);
      context.stroke();
      if (uncertain && result.bbox) {
        context.setLineDash([]);
        context.font = "bold 14px system-ui, sans-serif";
        context.fillStyle = colour;
        context.fillText("uncertain", result.bbox[0], Math.max(14, result.bbox[1] - 4));
      }
      context.restore();
    }
    const marked = dragging || (cropMode && crop);
    if (marked) {
      const rect = dragging ? dragRect() : cropPixels();
      context.save();
      context.strokeStyle = "#ffffff";
      context.lineWidth = 2;
      context.setLineDash([8, 6]);
      context.strokeRect(rect.x + 1, rect.y + 1, rect.w - 2, rect.h - 2);
      context.restore();
    }
  }

  // Marking the ultrasound image inside the frame: one drag over the video, kept in localStorage.
  function setCropMode(on) {
    cropMode = on;
    dragging = null;
    cropButton.setAttribute("aria-pressed", String(on));
    overlay.classList.toggle("cropping", on);
    if (on) {
      setStatus("Drag a rectangle over the ultrasound image.");
    }
    draw();
  }

  function videoPoint(event) {
    const bounds = overlay.getBoundingClientRect();
    const x = ((event.clientX - bounds.left) / bounds.width) * overlay.width;
    const y = ((event.clientY - bounds.top) / bounds.height) * overlay.height;
    return { x: Math.max(0, Math.min(overlay.width, x)), y: Math.max(0, Math.min(overlay.height, y)) };
  }

  function dragRect() {
    const { from, to } = dragging;
    return {
      x: Math.round(Math.min(from.x, to.x)), y: Math.round(Math.min(from.y, to.y)),
      w: Math.round(Math.abs(to.x - from.x)), h: Math.round(Math.abs(to.y - from.y)),
    };
  }

  overlay.addEventListener("pointerdown", (event) => {
    if (!cropMode || !overlay.width) {
      return;
    }
    overlay.setPointerCapture(event.pointerId);
    const point = videoPoint(event);
    dragging = { from: point, to: point };
  });
  overlay.addEventListener("pointermove", (event) => {
    if (dragging) {
      dragging.to = videoPoint(event);
      draw();
    }
  });
  overlay.addEventListener("pointerup", (event) => {
    if (!dragging) {
      return;
    }
    dragging.to = videoPoint(event);
    const rect = dragRect();
    dragging = null;
    if (rect.w < MIN_CROP_PX || rect.h < MIN_CROP_PX) {
      setStatus("That area is too small; drag a larger rectangle over the ultrasound image.");
      draw();
      return;
    }
    saveCrop({ x: rect.x / overlay.width, y: rect.y / overlay.height, w: rect.w / overlay.width, h: rect.h / overlay.height });
    last = null;
    setCropMode(false);
    setStatus("Area marked and remembered for next time.");
  });

  // Recording: the video with the overlay composited on a canvas, encoded by MediaRecorder as WebM, and one
  // CSV row per answer. Rows are kept only while recording, so a long session without one holds no history.
  function composite() {
    if (recordCanvas.width !== video.videoWidth || recordCanvas.height !== video.videoHeight) {
      recordCanvas.width = video.videoWidth;
      recordCanvas.height = video.videoHeight;
    }
    const context = recordCanvas.getContext("2d");
    context.drawImage(video, 0, 0);
    context.drawImage(overlay, 0, 0);
  }

  const CSV_HEADER = "time_ms,latency_ms,nerve_present,nerve_probability,mask_area_px,bbox_x,bbox_y,bbox_w,bbox_h,"
    + "crop_x,crop_y,crop_w,crop_h,expected_dice,reliable,server_total_ms,error";

  function csvRow(now, latency, result, box, error) {
    const value = (v) => (v === undefined || v === null || Number.isNaN(v) ? "" : String(v));
    const bbox = (result && result.bbox) || [null, null, null, null];
    return [
      (now - recordStart).toFixed(1), Number.isNaN(latency) ? "" : latency.toFixed(1),
      result ? String(result.nerve_present) : "", result ? value(result.nerve_probability) : "",
      result ? value(result.mask_area_px) : "", ...bbox.map(value), box.x, box.y, box.w, box.h,
      result ? value(result.expected_dice) : "", result ? value(result.reliable) : "",
      result && result.timing_ms ? value(result.timing_ms.total) : "", error,
    ].join(",");
  }

  function pickMimeType() {
    const types = ["video/webm;codecs=vp9", "video/webm;codecs=vp8", "video/webm"];
    return types.find((type) => window.MediaRecorder && MediaRecorder.isTypeSupported(type));
  }

  function startRecording() {
    const mimeType = pickMimeType();
    if (!mimeType || !HTMLCanvasElement.prototype.captureStream) {
      showError("This browser cannot record video (no WebM MediaRecorder); the results can still be watched.");
      return;
    }
    recordUrls.forEach((url) => URL.revokeObjectURL(url));
    recordUrls = [];
    ["live-save-video", "live-save-csv"].forEach((id) => { byId(id).hidden = true; });
    recordCanvas = document.createElement("canvas");
    composite();
    const chunks = [];
    recorder = new MediaRecorder(recordCanvas.captureStream(), { mimeType });
    recorder.addEventListener("dataavailable", (event) => { if (event.data.size) { chunks.push(event.data); } });
    const rows = [CSV_HEADER];
    recordRows = rows;
    recordStart = performance.now();
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    recorder.addEventListener("stop", () => {
      // A recording stopped within moments of its start can hold no encoded frame: no empty file is offered.
      if (chunks.length) {
        offer("live-save-video", new Blob(chunks, { type: "video/webm" }), `live-session-${stamp}.webm`);
      } else {
        showError("The recording was too short to hold any video; its per-frame results can still be saved.");
      }
      offer("live-save-csv", new Blob([rows.join("\n") + "\n"], { type: "text/csv" }), `live-session-${stamp}.csv`);
    });
    recorder.start(1000);
    recordButton.textContent = "Stop recording";
    recordButton.setAttribute("aria-pressed", "true");
  }

  function stopRecording() {
    recorder.stop();
    recorder.stream.getTracks().forEach((track) => track.stop());
    recorder = null;
    recordRows = null;
    recordCanvas = null;
    recordButton.textContent = "Record";
    recordButton.setAttribute("aria-pressed", "false");
  }

  function offer(id, blob, name) {
    const link = byId(id);
    const url = URL.createObjectURL(blob);
    recordUrls.push(url);
    link.href = url;
    link.download = name;
    link.hidden = false;
  }

  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", () => stop());
  cropButton.addEventListener("click", () => setCropMode(!cropMode));
  cropResetButton.addEventListener("click", () => {
    saveCrop(null);
    last = null;
    setCropMode(false);
    setStatus(running ? "Running on the whole frame." : "The whole frame will be analysed.");
  });
  recordButton.addEventListener("click", () => (recorder ? stopRecording() : startRecording()));
  opacitySlider.addEventListener("input", () => {
    byId("live-opacity-value").textContent = `${opacitySlider.value}%`;
    draw();
  });
  document.querySelectorAll("input[name='live-source']").forEach((radio) => radio.addEventListener("change", showSourceDetail));
  encodingSelect.value = recalled(STORAGE.encoding) === "png" ? "png" : "bmp";
  encodingSelect.addEventListener("change", () => remember(STORAGE.encoding, encodingSelect.value));
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener("devicechange", () => listDevices().catch(() => {}));
  }
  listDevices().catch(() => {});
  showSourceDetail();
  showCropLabel();
}());
