// Loaded into every V8 context after bridge.js, before any evalscript: the helper functions
// and constants scripts call (spec §8). Scripts may replace them, in their own task's context only.

var Mosaicking = Object.freeze({ SIMPLE: "SIMPLE", ORBIT: "ORBIT", TILE: "TILE" });
var SampleType = Object.freeze({
  AUTO: "AUTO", INT8: "INT8", UINT8: "UINT8", INT16: "INT16", UINT16: "UINT16",
  FLOAT32: "FLOAT32",
});

function index(a, b) {
  const sum = a + b;
  return sum === 0 ? 0 : (a - b) / sum;
}

function _segment(v, stops) {
  // Index i such that stops[i] <= v < stops[i + 1], with clamping at both ends.
  if (v <= stops[0]) return -1;
  const last = stops.length - 1;
  if (v >= stops[last]) return last;
  let i = 0;
  while (i < last - 1 && v >= stops[i + 1]) i++;
  return i;
}

function valueInterpolate(v, stops, values) {
  const i = _segment(v, stops);
  if (i < 0) return values[0];
  if (i >= stops.length - 1) return values[values.length - 1];
  const t = (v - stops[i]) / (stops[i + 1] - stops[i]);
  return values[i] + t * (values[i + 1] - values[i]);
}

function colorBlend(v, stops, colors) {
  const i = _segment(v, stops);
  if (i < 0) return colors[0].slice();
  if (i >= stops.length - 1) return colors[colors.length - 1].slice();
  const t = (v - stops[i]) / (stops[i + 1] - stops[i]);
  const a = colors[i];
  const b = colors[i + 1];
  return a.map((c, k) => c + t * (b[k] - c));
}

function _hexToRgb(hex) {
  return [((hex >> 16) & 0xff) / 255, ((hex >> 8) & 0xff) / 255, (hex & 0xff) / 255];
}

function ColorRampVisualizer(ramp, minValue, maxValue) {
  const sorted = ramp.slice().sort((a, b) => a[0] - b[0]);
  let stops = sorted.map((r) => r[0]);
  if (minValue !== undefined && maxValue !== undefined && stops.length > 1) {
    // Rescale the ramp's own stops onto [minValue, maxValue].
    const lo = stops[0];
    const span = stops[stops.length - 1] - lo;
    stops = stops.map((s) => minValue + ((s - lo) / span) * (maxValue - minValue));
  }
  const colors = sorted.map((r) => (Array.isArray(r[1]) ? r[1] : _hexToRgb(r[1])));
  this.process = function (v) {
    return colorBlend(v, stops, colors);
  };
}
var ColorGradientVisualizer = ColorRampVisualizer;

function HighlightCompressVisualizer(minValue, maxValue) {
  const lo = minValue === undefined ? 0 : minValue;
  const hi = maxValue === undefined ? 1 : maxValue;
  this.process = function (v) {
    let x = (v - lo) / (hi - lo);
    if (x > 0.92) x = 0.92 + 0.08 * (1 - Math.exp(-(x - 0.92) / 0.08));
    return Math.min(1, Math.max(0, x));
  };
}

function DefaultVisualizer(minValue, maxValue) {
  const lo = minValue === undefined ? 0 : minValue;
  const hi = maxValue === undefined ? 1 : maxValue;
  this.process = function (v) {
    return Math.min(1, Math.max(0, (v - lo) / (hi - lo)));
  };
}

function Identity() {
  this.process = function (v) {
    return v;
  };
}
