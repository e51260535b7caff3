// Progressive enhancement of the upload page: send the file to the JSON API with fetch() and draw the
// result on a canvas whose overlay opacity the user can change, without reloading. Without this script the
// form posts to the page route and the server renders the same figures (templates/index.html), so the text
// formats below match the template's.
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
  const colour = canvas.dataset.colour;
  const outlineWidth = Number(canvas.dataset.outline);
  let view = null; // {image, tint, contours} of the result on show
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
      statusLine.textContent = "Analysing the image…";
    }
  }

  function pngBytes(base64) {
    const binary = atob(base64);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes;
  }

  function pngUrl(base64) {
    const url = URL.createObjectURL(new Blob([pngBytes(base64)], { type: "image/png" }));
    blobUrls.push(url);
    return url;
  }

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const image = new Image();
      image.onload = () => resolve(image);
      image.onerror = () => reject(new Error("The result image could not be shown."));
      image.src = url;
    });
  }

  // The mask PNG (0 or 255) as an image of the overlay colour, transparent outside the mask.
  function tint(mask) {
    const layer = document.createElement("canvas");
    layer.width = mask.naturalWidth;
    layer.height = mask.naturalHeight;
    const context = layer.getContext("2d");
    context.drawImage(mask, 0, 0);
    const pixels = context.getImageData(0, 0, layer.width, layer.height);
    const [red, green, blue] = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
    const data = pixels.data;
    for (let i = 0; i < data.length; i += 4) {
      const inside = data[i] > 127;
      data[i] = red;
      data[i + 1] = green;
      data[i + 2] = blue;
      data[i + 3] = inside ? 255 : 0;
    }
    context.putImageData(pixels, 0, 0);
    return layer;
  }

  function draw() {
    if (!view) {
      return;
    }
    const context = canvas.getContext("2d");
    context.globalAlpha = 1;
    context.drawImage(view.image, 0, 0);
    context.globalAlpha = Number(slider.value) / 100;
    context.drawImage(view.tint, 0, 0);
    context.globalAlpha = 1;
    context.strokeStyle = colour;
    context.lineWidth = outlineWidth;
    context.lineJoin = "round";
    for (const contour of view.contours) {
      context.beginPath();
      contour.forEach(([x, y], i) => (i ? context.lineTo(x + 0.5, y + 0.5) : context.moveTo(x + 0.5, y + 0.5)));
      context.closePath();
      context.stroke();
    }
    sliderValue.textContent = `${slider.value}%`;
    canvas.dataset.drawn = "true";
  }

  async function render(result) {
    blobUrls.forEach((url) => URL.revokeObjectURL(url));
    blobUrls = [];
    const [image, mask] = await Promise.all([loadImage(pngUrl(result.image_png)), loadImage(pngUrl(result.mask_png))]);
    view = { image, tint: tint(mask), contours: result.contours };
    canvas.width = result.width;
    canvas.height = result.height;
    draw();

    byId("decision").textContent = result.nerve_present ? "Nerve found" : "No nerve found";
    byId("decision").classList.toggle("present", result.nerve_present);
    byId("probability").textContent = result.nerve_probability.toFixed(3);
    byId("area").textContent = `${result.mask_area_px} px`;
    byId("bbox").textContent = result.bbox ? result.bbox.join(", ") : "none";
    byId("size").textContent = `${result.width} × ${result.height} px`;
    byId("timing").textContent =
      `${result.timing_ms.infer.toFixed(1)} ms (total ${result.timing_ms.total.toFixed(1)} ms)`;
    byId("model").textContent = `${result.model.name} ${result.model.version}`;
    byId("download-mask").href = pngUrl(result.mask_png);
    byId("download-overlay").href = pngUrl(result.overlay_png);

    serverImage.hidden = true;
    canvas.hidden = false;
    byId("opacity-control").hidden = false;
    resultSection.hidden = false;
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
    body.append("include", form.dataset.include);
    setBusy(true);
    try {
      const response = await fetch(form.dataset.api, {
        method: "POST",
        body,
        headers: { Accept: "application/json", "X-CSRFToken": form.elements.csrf_token.value },
      });
      let payload;
      try {
        payload = await response.json();
      } catch (_) {
        throw new Error(`The service answered HTTP ${response.status} without a result.`);
      }
      if (!response.ok) {
        throw new Error(payload.error ? payload.error.message : `HTTP ${response.status}`);
      }
      await render(payload);
      statusLine.textContent = "Done.";
      resultSection.scrollIntoView({ behavior: "smooth", block: "start" });
    } catch (error) {
      showError(error.message || "The request failed.");
    } finally {
      setBusy(false);
    }
  }

  form.addEventListener("submit", analyse);
  slider.addEventListener("input", draw);

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
