// A web map with no base map to fetch: a plain background, a bundled low-resolution world outline
// (Natural Earth, 1:110m), and panes for quicklooks under the features.

/* global L */

let world = null; // the outline, fetched once per page load

export const STATUS_COLOURS = {
  PENDING: "#8a94a6",
  DONE: "#2e9e4f",
  NO_DATA: "#d9a520",
  FATAL: "#d64545",
};

export function createMap(element) {
  const map = L.map(element, { zoomSnap: 0.25, worldCopyJump: true, minZoom: 1 });
  map.attributionControl.setPrefix(false);
  map.attributionControl.addAttribution("outline: Natural Earth");
  map.createPane("outline").style.zIndex = 250;
  map.createPane("quicklooks").style.zIndex = 350;
  map.getPane("quicklooks").style.pointerEvents = "none";
  map.setView([30, 10], 2);
  world = world || fetch("/static/vendor/world-atlas/land-110m.geojson").then((r) => r.json());
  world.then((land) =>
    L.geoJSON(land, {
      pane: "outline",
      interactive: false,
      style: { color: "#9fb3c8", weight: 0.8, fillColor: "#e8edf2", fillOpacity: 1 },
    }).addTo(map),
  );
  return map;
}

// The colour key of a feature: its status, or NO_DATA for a DONE feature without data.
export function featureKey(properties) {
  return properties.status === "DONE" && properties.error === "No data" ? "NO_DATA" : properties.status;
}

export function featureStyle(properties, selected = false) {
  const colour = STATUS_COLOURS[featureKey(properties)] || "#555";
  return {
    color: selected ? "#1d4e89" : colour,
    weight: selected ? 3 : 1.5,
    fillColor: colour,
    fillOpacity: 0.35,
  };
}

// A legend control with a count per status, updated with `legend.update(counts)`.
export function statusLegend(map) {
  const legend = L.control({ position: "bottomleft" });
  legend.onAdd = () => L.DomUtil.create("div", "legend");
  legend.addTo(map);
  legend.update = (counts) => {
    const element = legend.getContainer();
    element.replaceChildren();
    for (const [key, colour] of Object.entries(STATUS_COLOURS)) {
      const row = L.DomUtil.create("div", "legend-row", element);
      row.dataset.status = key;
      const swatch = L.DomUtil.create("span", "swatch", row);
      swatch.style.background = colour;
      row.append(`${key.replace("_", " ").toLowerCase()} `);
      const count = L.DomUtil.create("b", "count", row);
      count.textContent = counts[key] || 0;
    }
  };
  legend.update({});
  return legend;
}
