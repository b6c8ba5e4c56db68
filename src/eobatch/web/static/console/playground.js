// The script playground: an evalscript and an area drawn on the map, sent to the Process API
// (POST /api/v1/process) for a PNG preview laid over the map.

/* global L */

import { call } from "./api.js";
import { fill, h, notice } from "./dom.js";
import { createMap } from "./map.js";

const WEB_MERCATOR = "http://www.opengis.net/def/crs/EPSG/0/3857";
const MAX_SIDE = 512;

export const DEFAULT_SCRIPT = `//VERSION=3
function setup() {
  return {
    input: ["B04", "B08", "dataMask"],
    output: { bands: 4, sampleType: "UINT8" }
  };
}

function evaluatePixel(s) {
  const ndvi = (s.B08 - s.B04) / (s.B08 + s.B04);
  const rgb = colorBlend(ndvi, [0, 0.4, 0.8], [[0.75, 0.3, 0.1], [0.95, 0.9, 0.3], [0.1, 0.55, 0.15]]);
  return [255 * rgb[0], 255 * rgb[1], 255 * rgb[2], 255 * s.dataMask];
}
`;

// The request the playground sends for `bounds` (a Leaflet LatLngBounds), in Web Mercator so the
// PNG lies on the map's own grid.
export function processRequest(bounds, dataType, from, to, evalscript) {
  const sw = L.Projection.SphericalMercator.project(bounds.getSouthWest());
  const ne = L.Projection.SphericalMercator.project(bounds.getNorthEast());
  const ratio = (ne.x - sw.x) / (ne.y - sw.y);
  const width = Math.max(1, Math.round(ratio >= 1 ? MAX_SIDE : MAX_SIDE * ratio));
  const height = Math.max(1, Math.round(ratio >= 1 ? MAX_SIDE / ratio : MAX_SIDE));
  return {
    input: {
      bounds: { bbox: [sw.x, sw.y, ne.x, ne.y], properties: { crs: WEB_MERCATOR } },
      data: [{ type: dataType, dataFilter: { timeRange: { from: `${from}T00:00:00Z`, to: `${to}T23:59:59Z` } } }],
    },
    output: { width, height, responses: [{ identifier: "default", format: { type: "image/png" } }] },
    evalscript,
  };
}

export function playgroundView(container) {
  let corner = null; // first corner while drawing
  let area = null; // the drawn rectangle
  let preview = null; // the image overlay
  let previewUrl = null;

  const message = h("div", { class: "notice", hidden: true });
  const script = h("textarea", { id: "evalscript", spellcheck: "false", rows: 18 }, DEFAULT_SCRIPT);
  const collection = h("select", { id: "collection" });
  const dataType = h("input", { id: "data-type", placeholder: "or a type, e.g. sentinel-2-l2a" });
  const from = h("input", { id: "from", type: "date", value: "2024-01-01" });
  const to = h("input", { id: "to", type: "date", value: "2024-12-31" });
  const drawButton = h("button", { type: "button", id: "draw" }, "Draw area");
  const runButton = h("button", { type: "button", id: "run", disabled: true }, "Run");
  const image = h("img", { id: "preview", alt: "", hidden: true });
  const mapElement = h("div", { class: "map", id: "playground-map" });

  container.append(
    h(
      "div",
      { class: "task-body" },
      mapElement,
      h(
        "aside",
        { class: "panel card" },
        h("h1", {}, "Script playground"),
        h("p", { class: "muted" }, "Draw an area (two clicks on the map), pick the data and run the evalscript through the Process API."),
        h("label", {}, "Collection", collection),
        dataType,
        h("div", { class: "row" }, h("label", {}, "From", from), h("label", {}, "To", to)),
        h("label", {}, "Evalscript", script),
        h("div", { class: "row" }, drawButton, runButton),
        message,
        image,
      ),
    ),
  );
  const map = createMap(mapElement);

  // The chosen collection's extent, outlined, and the map brought to it.
  let extent = null;
  async function showExtent() {
    if (extent) extent.remove();
    extent = null;
    if (!collection.value.startsWith("byoc-")) return;
    const chosen = await call(`/api/v1/byoc/collections/${collection.value.slice(5)}`);
    const outline = chosen.data.additionalData && chosen.data.additionalData.extent;
    if (!outline) return;
    extent = L.geoJSON(outline, { interactive: false, style: { color: "#1d4e89", weight: 1, dashArray: "4 4", fill: false } }).addTo(map);
    map.fitBounds(extent.getBounds(), { padding: [30, 30] });
  }
  collection.addEventListener("change", () => showExtent().catch((error) => notice(message, error.details)));

  call("/api/v1/byoc/collections?count=100")
    .then((page) => {
      fill(
        collection,
        page.data.map((c) => h("option", { value: `byoc-${c.id}` }, `${c.name} (${c.id.slice(0, 8)})`)),
      );
      return showExtent();
    })
    .then(() => {
      mapElement.dataset.ready = "true"; // collections listed, map on the chosen one
    })
    .catch((error) => notice(message, error.details));

  drawButton.addEventListener("click", () => {
    corner = null;
    mapElement.classList.add("drawing");
    notice(message, "Click the first corner of the area, then the opposite one.", "info");
  });
  map.on("click", (event) => {
    if (!mapElement.classList.contains("drawing")) return;
    if (!corner) {
      corner = event.latlng;
      return;
    }
    const bounds = L.latLngBounds(corner, event.latlng);
    corner = null;
    mapElement.classList.remove("drawing");
    if (area) area.remove();
    area = L.rectangle(bounds, { color: "#1d4e89", weight: 2, fill: false, interactive: false }).addTo(map);
    runButton.disabled = false;
    notice(message, "");
  });

  runButton.addEventListener("click", async () => {
    const type = dataType.value.trim() || collection.value;
    if (!area || !type) {
      notice(message, "Draw an area and choose a collection first.");
      return;
    }
    const body = processRequest(area.getBounds(), type, from.value, to.value, script.value);
    runButton.disabled = true;
    notice(message, "Running…", "info");
    try {
      const response = await call("/api/v1/process", { method: "POST", json: body, accept: "image/png", raw: true });
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = URL.createObjectURL(await response.blob());
      if (preview) preview.remove();
      preview = L.imageOverlay(previewUrl, area.getBounds(), { pane: "quicklooks", className: "preview" }).addTo(map);
      image.src = previewUrl;
      image.hidden = false;
      const spent = response.headers.get("x-processingunits-spent");
      notice(message, spent ? `Done: ${Number(spent).toFixed(3)} PU` : "Done.", "info");
    } catch (error) {
      notice(message, error.details);
    } finally {
      runButton.disabled = false;
    }
  });

  return () => {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    map.remove();
  };
}
