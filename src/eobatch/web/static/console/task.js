// One task: its features on a map coloured by status (updated live while it runs), a feature's
// status, error, cost and files with their quicklooks, the request JSON, the estimate and the
// task's PU ledger.

/* global L */

import { call, download } from "./api.js";
import { description, fill, h, notice, pu, statusBadge, when } from "./dom.js";
import { createMap, featureKey, featureStyle, statusLegend } from "./map.js";
import { actionButtons, busy, progressBar } from "./tasks.js";

const POLL_MS = 1000;
const BEFORE_FEATURES = new Set(["CREATED", "ANALYSING"]);

export function taskView(container, taskId) {
  const base = `/api/v2/batch/process/${encodeURIComponent(taskId)}`;
  let disposed = false;
  let timer = null;
  let task = null;
  let featuresLoaded = false;
  let selected = null;
  const layers = new Map(); // feature id -> Leaflet layer
  const properties = new Map(); // feature id -> GeoJSON properties
  const quicklooks = new Map(); // "feature/output" -> image overlay

  const message = h("div", { class: "notice", hidden: true });
  const head = h("div", { class: "task-head" });
  const mapElement = h("div", { class: "map", id: "map" });
  const tabs = {
    feature: h("div", { class: "tab-body", id: "tab-feature" }, h("p", { class: "muted" }, "Click a feature on the map.")),
    request: h("div", { class: "tab-body", id: "tab-request", hidden: true }),
    estimate: h("div", { class: "tab-body", id: "tab-estimate", hidden: true }),
    ledger: h("div", { class: "tab-body", id: "tab-ledger", hidden: true }),
  };
  const tabButtons = Object.keys(tabs).map((name) =>
    h("button", { type: "button", class: "tab", dataset: { tab: name }, onclick: () => showTab(name) }, name[0].toUpperCase() + name.slice(1)),
  );
  container.append(
    h("section", { class: "card" }, head, message),
    h(
      "div",
      { class: "task-body" },
      mapElement,
      h("aside", { class: "panel card" }, h("div", { class: "tabs" }, tabButtons), Object.values(tabs)),
    ),
  );
  const map = createMap(mapElement);
  const legend = statusLegend(map);
  const featureLayer = L.geoJSON(null, {
    style: (feature) => featureStyle(feature.properties),
    onEachFeature: (feature, layer) => {
      layers.set(feature.id, layer);
      properties.set(feature.id, feature.properties);
      layer.on("click", () => select(feature.id));
    },
  }).addTo(map);
  showTab("feature");

  function showTab(name) {
    for (const [key, element] of Object.entries(tabs)) element.hidden = key !== name;
    for (const button of tabButtons) button.classList.toggle("active", button.dataset.tab === name);
    if (name === "ledger") loadLedger();
  }

  function renderHead() {
    fill(head,
      h("div", { class: "row" }, h("a", { href: "#/tasks" }, "‹ Tasks"), h("span", { class: "spacer" }), actionButtons(task, message, poll)),
      h("h1", {}, description(task) || "Task"),
      h("div", { class: "muted mono" }, task.id),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Status"),
        h("dd", { id: "task-status", dataset: { status: task.status } }, statusBadge(task.status), task.stoppedStatusReason ? ` (${task.stoppedStatusReason})` : ""),
        h("dt", {}, "Progress"),
        h("dd", {}, progressBar(task.completionPercentage)),
        h("dt", {}, "Cost"),
        h("dd", { id: "task-cost" }, pu(task.costPU)),
        h("dt", {}, "Created"),
        h("dd", {}, when(task.created)),
      ),
      task.error ? h("pre", { class: "task-error" }, task.error) : null,
    );
    fill(tabs.request, h("pre", { class: "json", id: "request-json" }, JSON.stringify(task.request, null, 2)));
    const estimate = task.estimate;
    fill(tabs.estimate,
      estimate
        ? h(
            "table",
            { class: "kv", id: "estimate" },
            h("tr", {}, h("th", {}, "Features"), h("td", {}, estimate.featureCount)),
            h("tr", {}, h("th", {}, "Least"), h("td", {}, pu(estimate.minPU))),
            h("tr", {}, h("th", {}, "Expected"), h("td", {}, pu(estimate.expectedPU))),
            h("tr", {}, h("th", {}, "Most"), h("td", {}, pu(estimate.maxPU))),
          )
        : h("p", { class: "muted" }, "The estimate is made by the analysis."),
    );
  }

  async function loadLedger() {
    try {
      const ledger = await call(`${base}/ledger`);
      const total = ledger.data.reduce((sum, entry) => sum + entry.amountPU, 0);
      fill(tabs.ledger,
        h(
          "table",
          { class: "ledger", id: "ledger" },
          h("thead", {}, h("tr", {}, ["#", "Time", "Kind", "Amount", "Balance after", "Note"].map((t) => h("th", {}, t)))),
          h(
            "tbody",
            {},
            ledger.data.map((entry) =>
              h(
                "tr",
                {},
                h("td", {}, entry.id),
                h("td", {}, when(entry.created)),
                h("td", {}, entry.kind),
                h("td", { class: "num" }, pu(entry.amountPU)),
                h("td", { class: "num" }, pu(entry.balanceAfterPU)),
                h("td", {}, entry.note || ""),
              ),
            ),
          ),
        ),
        h("p", {}, ledger.data.length ? `Charged for this task: ${pu(-total)}` : "Nothing charged yet."),
      );
    } catch (error) {
      notice(message, error.details);
    }
  }

  function applyStatuses(features) {
    const counts = {};
    for (const feature of features) {
      const layer = layers.get(feature.id);
      properties.set(feature.id, feature.properties);
      const key = featureKey(feature.properties);
      counts[key] = (counts[key] || 0) + 1;
      if (!layer) continue;
      layer.feature.properties = feature.properties;
      layer.setStyle(featureStyle(feature.properties, feature.id === selected));
      const element = layer.getElement();
      if (element) {
        element.dataset.featureId = feature.id;
        element.dataset.status = key;
      }
    }
    legend.update(counts);
  }

  async function loadFeatures() {
    const collection = await call(`${base}/features/geojson`);
    if (disposed) return;
    featureLayer.clearLayers();
    layers.clear();
    featureLayer.addData(collection);
    featuresLoaded = true;
    applyStatuses(collection.features);
    if (collection.features.length) map.fitBounds(featureLayer.getBounds(), { padding: [20, 20] });
  }

  async function refreshStatuses() {
    const collection = await call(`${base}/features/geojson?geometry=false`);
    if (!disposed) applyStatuses(collection.features);
  }

  async function select(featureId) {
    const previous = selected;
    selected = featureId;
    for (const id of [previous, featureId]) {
      const layer = layers.get(id);
      if (layer) layer.setStyle(featureStyle(properties.get(id), id === selected));
    }
    showTab("feature");
    try {
      renderFeature(await call(`${base}/features/${featureId}`));
    } catch (error) {
      notice(message, error.details);
    }
  }

  function renderFeature(feature) {
    const key = featureKey(feature);
    fill(tabs.feature,
      h("h2", {}, `Feature ${feature.name}`),
      h(
        "table",
        { class: "kv", id: "feature", dataset: { featureId: feature.id, status: key } },
        h("tr", {}, h("th", {}, "Id"), h("td", {}, feature.id)),
        h("tr", {}, h("th", {}, "Status"), h("td", {}, statusBadge(feature.status))),
        h("tr", {}, h("th", {}, "Attempts"), h("td", {}, feature.attempts)),
        h("tr", {}, h("th", {}, "Cost"), h("td", {}, pu(feature.costPU))),
        h("tr", {}, h("th", {}, "Transfer"), h("td", {}, pu(feature.transferPU))),
        h("tr", {}, h("th", {}, "Size"), h("td", {}, `${feature.width} × ${feature.height} px`)),
        h("tr", {}, h("th", {}, "Samples"), h("td", {}, feature.samples ?? "–")),
        h("tr", {}, h("th", {}, "Written"), h("td", {}, `${feature.bytesWritten} bytes`)),
      ),
      feature.error ? h("div", {}, h("h3", {}, "Error"), h("pre", { class: "feature-error", id: "feature-error" }, feature.error)) : null,
      h("h3", {}, "Outputs"),
      feature.outputs.length
        ? h("ul", { class: "outputs" }, feature.outputs.map((output) => outputItem(feature, output)))
        : h("p", { class: "muted" }, feature.delivered ? "Zarr outputs are one store per task." : "Nothing delivered."),
    );
  }

  function outputItem(feature, output) {
    const info = h("div", { class: "muted quicklook-info" });
    const filename = output.url.split("/").pop();
    return h(
      "li",
      { dataset: { output: output.identifier } },
      h("div", { class: "mono" }, output.url),
      h(
        "a",
        {
          href: output.download,
          class: "download",
          onclick: (event) => {
            event.preventDefault();
            download(output.download, filename).catch((error) => notice(message, error.details));
          },
        },
        `Download ${filename}`,
      ),
      output.quicklook
        ? h("button", { type: "button", class: "quicklook-button", onclick: () => toggleQuicklook(feature, output, info) }, "Quicklook")
        : null,
      info,
    );
  }

  async function toggleQuicklook(feature, output, info) {
    const key = `${feature.id}/${output.identifier}`;
    if (quicklooks.has(key)) {
      const overlay = quicklooks.get(key);
      URL.revokeObjectURL(overlay.getElement()?.src);
      overlay.remove();
      quicklooks.delete(key);
      info.textContent = "";
      return;
    }
    try {
      const response = await call(output.quicklook, { raw: true });
      const [west, south, east, north] = response.headers.get("X-Bounds").split(",").map(Number);
      const url = URL.createObjectURL(await response.blob());
      const overlay = L.imageOverlay(url, [[south, west], [north, east]], { pane: "quicklooks", className: "quicklook" });
      overlay.addTo(map);
      overlay.getElement().dataset.featureId = feature.id;
      quicklooks.set(key, overlay);
      const stretch = response.headers.get("X-Stretch").split(";").map((pair) => pair.replace(",", " – "));
      info.textContent = `Stretched 2–98 %: ${stretch.join(" | ")}`;
    } catch (error) {
      notice(message, error.details);
    }
  }

  async function poll() {
    clearTimeout(timer);
    try {
      task = await call(base);
      if (disposed) return;
      renderHead();
      if (!featuresLoaded && !BEFORE_FEATURES.has(task.status)) await loadFeatures();
      else if (featuresLoaded) await refreshStatuses();
      if (!tabs.ledger.hidden) loadLedger();
      if (!disposed && busy(task)) timer = setTimeout(poll, POLL_MS);
    } catch (error) {
      if (!disposed) notice(message, error.details);
    }
  }

  poll();
  return () => {
    disposed = true;
    clearTimeout(timer);
    for (const overlay of quicklooks.values()) URL.revokeObjectURL(overlay.getElement()?.src);
    map.remove();
  };
}
