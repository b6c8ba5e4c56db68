// Loaded into every V8 context after bridge.js, before any evalscript: the helper functions,
// visualizers and constants Sentinel Hub gives scripts (spec §8-10). Scripts may replace them
// (in their own task's context only). Declared with `var`/`function`, never `let`/`const`/
// `class`, so that a script may declare the same names itself.
//
// Colours are [r, g, b] arrays in 0..1 (a colour given as 0xRRGGBB is turned into one); every
// colour a helper returns is a new array, so scripts may push an alpha value onto it.

var Mosaicking = Object.freeze({ SIMPLE: "SIMPLE", ORBIT: "ORBIT", TILE: "TILE" });
var SampleType = Object.freeze({
  AUTO: "AUTO", INT8: "INT8", UINT8: "UINT8", INT16: "INT16", UINT16: "UINT16",
  FLOAT32: "FLOAT32",
});

var JAVA_DOUBLE_MAX_VAL = 1.7976931348623157e308;

// Ramps of the visualizer presets: [position, colour], position 1 at the preset's minimum.
var blueRed = [[1.0, 0x000080], [0.875, 0x0000FF], [0.625, 0x00FFFF], [0.375, 0xFFFF00],
  [0.125, 0xFF0000], [0.0, 0x800000]];
var redTemperature = [[1.0, 0x000000], [0.525, 0xAE0000], [0.3, 0xFF6E00], [0.25, 0xFF8600],
  [0.0, 0xFFFFFF]];
var greenWhite = [[1.0, 0x000000], [0.6, 0x006600], [0.3, 0x80B300], [0.0, 0xFFFFFF]];
var oceanColor = [
  [0.0, [147, 0, 108]], [0.0471, [111, 0, 144]], [0.098, [72, 0, 183]], [0.149, [33, 0, 222]],
  [0.2, [0, 10, 255]], [0.2471, [0, 74, 255]], [0.298, [0, 144, 255]], [0.349, [0, 213, 255]],
  [0.4, [0, 255, 215]], [0.4471, [0, 255, 119]], [0.498, [0, 255, 15]], [0.549, [96, 255, 0]],
  [0.6, [200, 255, 0]], [0.6471, [255, 235, 0]], [0.698, [255, 183, 0]], [0.749, [255, 131, 0]],
  [0.8, [255, 79, 0]], [0.8471, [255, 31, 0]], [0.898, [230, 0, 0]], [0.949, [165, 0, 0]],
  [1.0, [105, 0, 0]],
].map(function (stop) { return [stop[0], normalizeRGB(stop[1])]; });

// EO Browser's overrides of the HighlightCompressVisualizer parameters; unset here.
var gainOverride, offsetOverride, gammaOverride, rangeOverrides;

// -- functions (spec §9) ------------------------------------------------------------------------

function index(x, y) {
  var sum = x + y;
  return sum === 0 ? 0 : (x - y) / sum;
}

function inverse(x) {
  return x === 0 ? JAVA_DOUBLE_MAX_VAL : 1 / x;
}

function int2rgb(color) {
  return [(color >> 16) & 0xff, (color >> 8) & 0xff, color & 0xff];
}

function rgb2int(rgb) {
  return (rgb[0] << 16) + (rgb[1] << 8) + rgb[2];
}

function normalizeRGB(rgb) {
  var out = [];
  for (var i = 0; i < rgb.length; i++) out.push(rgb[i] / 255);
  return out;
}

// c1 * alpha + c2 * (1 - alpha) per component; two 0xRRGGBB numbers give one (rounded).
function combine(c1, c2, alpha) {
  if (typeof c1 === "number" && typeof c2 === "number") {
    var a = int2rgb(c1);
    var b = int2rgb(c2);
    var mixed = [];
    for (var i = 0; i < 3; i++) mixed.push(Math.round(a[i] * alpha + b[i] * (1 - alpha)));
    return rgb2int(mixed);
  }
  var out = [];
  for (var k = 0; k < c1.length; k++) out.push(c1[k] * alpha + c2[k] * (1 - alpha));
  return out;
}

function _copy(value) {
  return Array.isArray(value) ? value.slice() : value;
}

// The value of the first limit at or above v; the first below every limit, the last above.
function valueMap(v, limits, values) {
  if (!Array.isArray(limits) || !Array.isArray(values)) return v;
  if (v <= limits[0]) return _copy(values[0]);
  for (var i = 1; i < limits.length; i++) {
    if (v <= limits[i]) return _copy(values[i]);
  }
  return _copy(values[values.length - 1]);
}

// Piecewise linear: values[0] up to stops[0], linear on (stops[i-1], stops[i]], and the last
// element of `values` above the last stop (it may have one more element than `stops`). Values
// are numbers or colour arrays (interpolated per component, no rounding); NaN gives the last.
function valueInterpolate(v, stops, values) {
  if (!Array.isArray(stops) || !Array.isArray(values)) return v;
  if (v <= stops[0]) return _copy(values[0]);
  for (var i = 1; i < stops.length; i++) {
    if (v <= stops[i]) {
      var t = (v - stops[i - 1]) / (stops[i] - stops[i - 1]);
      return _lerp(values[i - 1], values[i], t);
    }
  }
  return _copy(values[values.length - 1]);
}

function _lerp(a, b, t) {
  if (typeof a === "number") return a + t * (b - a);
  if (!Array.isArray(a) || !Array.isArray(b)) {
    throw new TypeError("colours must be numbers or arrays of numbers, got " + a + " and " + b);
  }
  var out = [];
  for (var k = 0; k < a.length; k++) out.push(a[k] + t * (b[k] - a[k]));
  return out;
}

// Deprecated name of valueInterpolate, for colours.
function colorBlend(v, limits, colors) {
  return valueInterpolate(v, limits, colors);
}

// Legacy: the colour of the first limit above v, else the last colour.
function colorMap(v, limits, colors) {
  if (!Array.isArray(limits) || !Array.isArray(colors)) return v;
  for (var i = 0; i < limits.length; i++) {
    if (v < limits[i]) return _copy(colors[i]);
  }
  return _copy(colors[colors.length - 1]);
}

function _bits(value, shift, width) {
  return (value >>> shift) & ((1 << width) - 1);
}

// Landsat Collection 2 QA_PIXEL.
function decodeL8C2Qa(value) {
  return {
    fill: _bits(value, 0, 1), dilatedCloud: _bits(value, 1, 1), cirrus: _bits(value, 2, 1),
    cloud: _bits(value, 3, 1), cloudShadow: _bits(value, 4, 1), snow: _bits(value, 5, 1),
    clear: _bits(value, 6, 1), water: _bits(value, 7, 1), cloudConfidence: _bits(value, 8, 2),
    cloudShadowConfidence: _bits(value, 10, 2), snowIceConfidence: _bits(value, 12, 2),
    cirrusConfidence: _bits(value, 14, 2),
  };
}

// Legacy Landsat Collection 1 QA band.
function decodeLs8Qa(value) {
  return {
    designatedFill: _bits(value, 0, 1), terrainOcclusion: _bits(value, 1, 1),
    radiometricSaturation: _bits(value, 2, 2), cloud: _bits(value, 4, 1),
    cloudConfidence: _bits(value, 5, 2), cloudShadowConfidence: _bits(value, 7, 2),
    snowIceConfidence: _bits(value, 9, 2), cirrusConfidence: _bits(value, 11, 2),
  };
}

// Sentinel-3 OLCI QUALITY_FLAGS, in the OLCI level-1 bit layout (land is bit 31).
function decodeS3OLCIQualityFlags(value) {
  var names = ["land", "coastline", "fresh_inland_water", "tidal_region", "bright",
    "straylight_risk", "invalid", "cosmetic", "duplicated", "sun_glint_risk", "dubious"];
  var flags = {};
  for (var i = 0; i < names.length; i++) flags[names[i]] = _bits(value, 31 - i, 1);
  for (var band = 1; band <= 21; band++) {
    flags["saturatedB" + (band < 10 ? "0" : "") + band] = _bits(value, 21 - band, 1);
  }
  return flags;
}

// -- visualizers (spec §8) ----------------------------------------------------------------------

function _rgb(color) {
  if (Array.isArray(color)) return color;
  return [((color >> 16) & 0xff) / 255, ((color >> 8) & 0xff) / 255, (color & 0xff) / 255];
}

function _processList(values) {
  var out = [];
  for (var i = 0; i < values.length; i++) out.push(this.process(values[i], i));
  return out;
}

// Linear colour ramp over [[value, colour], ...] (any order). Hex colours are interpolated per
// channel in 0..255 and rounded; array colours linearly, as they are. minValue/maxValue move
// the ramp's ends there. Below the first stop the first colour, above (and NaN) the last.
function ColorRampVisualizer(ramp, minValue, maxValue) {
  var sorted = ramp.slice().sort(function (a, b) { return a[0] - b[0]; });
  var stops = [];
  for (var i = 0; i < sorted.length; i++) stops.push(sorted[i][0]);
  if (minValue !== undefined && maxValue !== undefined && stops.length > 1) {
    var low = stops[0];
    var span = stops[stops.length - 1] - low;
    for (var j = 0; j < stops.length; j++) {
      stops[j] = minValue + ((stops[j] - low) / span) * (maxValue - minValue);
    }
  }
  this.ramp = sorted;
  this.minValue = minValue;
  this.maxValue = maxValue;
  this.stops = stops;
  this.colors = [];
  this.hex = [];
  for (var k = 0; k < sorted.length; k++) {
    var color = sorted[k][1];
    this.hex.push(!Array.isArray(color));
    this.colors.push(Array.isArray(color) ? color : int2rgb(color));
  }
}

ColorRampVisualizer.prototype.process = function (value) {
  var stops = this.stops;
  var colors = this.colors;
  if (value <= stops[0]) return this._color(0);
  for (var i = 1; i < stops.length; i++) {
    if (value < stops[i]) {
      var t = (value - stops[i - 1]) / (stops[i] - stops[i - 1]);
      var a = colors[i - 1];
      var b = colors[i];
      var out = [];
      if (this.hex[i - 1] && this.hex[i]) {
        for (var c = 0; c < 3; c++) out.push(Math.round(a[c] + t * (b[c] - a[c])) / 255);
      } else {
        var x = this._color(i - 1);
        var y = this._color(i);
        for (var d = 0; d < x.length; d++) out.push(x[d] + t * (y[d] - x[d]));
      }
      return out;
    }
  }
  return this._color(stops.length - 1);
};

ColorRampVisualizer.prototype._color = function (n) {
  var color = this.colors[n];
  var out = [];
  for (var c = 0; c < color.length; c++) out.push(this.hex[n] ? color[c] / 255 : color[c]);
  return out;
};

ColorRampVisualizer.prototype.processList = _processList;

// The same stops with the colours in reverse order.
ColorRampVisualizer.prototype.inverse = function () {
  var flipped = [];
  for (var i = 0; i < this.ramp.length; i++) {
    flipped.push([this.ramp[i][0], this.ramp[this.ramp.length - 1 - i][1]]);
  }
  return new ColorRampVisualizer(flipped, this.minValue, this.maxValue);
};

// A preset's [position, colour] pairs at values: position p at min·p + max·(1 − p).
function _atValues(pairs, minValue, maxValue) {
  var low = minValue === undefined ? 0 : minValue;
  var high = maxValue === undefined ? 1 : maxValue;
  var out = [];
  for (var i = 0; i < pairs.length; i++) {
    out.push([low * pairs[i][0] + high * (1 - pairs[i][0]), pairs[i][1]]);
  }
  return out;
}

ColorRampVisualizer.createRedTemperature = function (minValue, maxValue) {
  return new ColorRampVisualizer(_atValues(redTemperature, minValue, maxValue));
};
ColorRampVisualizer.createWhiteGreen = function (minValue, maxValue) {
  return new ColorRampVisualizer(_atValues(greenWhite, minValue, maxValue));
};
ColorRampVisualizer.createBlueRed = function (minValue, maxValue) {
  return new ColorRampVisualizer(_atValues(blueRed, minValue, maxValue));
};
// The ocean ramp is written low to high: position p at min + p·(max − min).
ColorRampVisualizer.createOceanColor = function (minValue, maxValue) {
  var low = minValue === undefined ? 0 : minValue;
  var high = maxValue === undefined ? 1 : maxValue;
  var pairs = [];
  for (var i = 0; i < oceanColor.length; i++) {
    pairs.push([low + oceanColor[i][0] * (high - low), oceanColor[i][1]]);
  }
  return new ColorRampVisualizer(pairs);
};

// Deprecated: [position, colour] pairs, position p at minValue·p + maxValue·(1 − p).
function ColorGradientVisualizer(valColPairs, minValue, maxValue) {
  ColorRampVisualizer.call(this, _atValues(valColPairs, minValue, maxValue));
}
ColorGradientVisualizer.prototype = Object.create(ColorRampVisualizer.prototype);
ColorGradientVisualizer.prototype.constructor = ColorGradientVisualizer;
ColorGradientVisualizer.createRedTemperature = function (minValue, maxValue) {
  return new ColorGradientVisualizer(redTemperature, minValue, maxValue);
};
ColorGradientVisualizer.createWhiteGreen = function (minValue, maxValue) {
  return new ColorGradientVisualizer(greenWhite, minValue, maxValue);
};
ColorGradientVisualizer.createBlueRed = function (minValue, maxValue) {
  return new ColorGradientVisualizer(blueRed, minValue, maxValue);
};

// Discrete colours: the colour of the last threshold at or below the value (the first colour
// below every threshold). [[threshold, colour], ...] in ascending order.
function ColorMapVisualizer(valColPairs) {
  this.thresholds = [];
  this.colors = [];
  for (var i = 0; i < valColPairs.length; i++) {
    this.thresholds.push(valColPairs[i][0]);
    this.colors.push(_rgb(valColPairs[i][1]));
  }
}

ColorMapVisualizer.prototype.process = function (value) {
  var n = 0;
  for (var i = 1; i < this.thresholds.length; i++) {
    if (this.thresholds[i] <= value) n = i;
  }
  return this.colors[n].slice();
};

ColorMapVisualizer.prototype.processList = _processList;

ColorMapVisualizer.createDefaultColorMap = function () {
  return new ColorMapVisualizer([
    [-1.0, 0x000000], [-0.2, 0xFF0000], [-0.1, 0x9A0000], [0.0, 0x660000], [0.1, 0xFFFF33],
    [0.2, 0xCCCC33], [0.3, 0x666600], [0.4, 0x33FFFF], [0.5, 0x33CCCC], [0.6, 0x006666],
    [0.7, 0x33FF33], [0.8, 0x33CC33], [0.9, 0x006600],
  ]);
};

function _stretch(self, value) {
  var gain = gainOverride !== undefined ? gainOverride : self.gain;
  var offset = offsetOverride !== undefined ? offsetOverride : self.offset;
  return gain * (value - self.minValue) / (self.maxValue - self.minValue) + offset;
}

function _gamma(self, value) {
  var gamma = gammaOverride !== undefined ? gammaOverride : self.gamma;
  return gamma === 1 ? value : Math.pow(Math.max(0, value), gamma);
}

// Stretch [minValue, maxValue] to [0, 1] with gain, offset and gamma; for a maximum below 1,
// values above 0.92 are compressed (so bright clouds keep some texture); clamped to [0, 1].
function HighlightCompressVisualizer(minValue, maxValue, gain, offset, gamma) {
  this.minValue = minValue === undefined ? 0 : minValue;
  this.maxValue = maxValue === undefined ? 1 : maxValue;
  this.gain = gain === undefined ? 1 : gain;
  this.offset = offset === undefined ? 0 : offset;
  this.gamma = gamma === undefined ? 1 : gamma;
}

HighlightCompressVisualizer.prototype.process = function (value) {
  var v = _gamma(this, _stretch(this, value));
  if (this.maxValue > 0 && this.maxValue < 1 && v > 0.92) {
    v = 0.92 + (v - 0.92) * (0.08 / 1.08);
  }
  return v < 0 ? 0 : v > 1 ? 1 : v;
};

HighlightCompressVisualizer.prototype.processList = _processList;

// The same, returning a one-element array (scripts push dataMask onto it).
function HighlightCompressVisualizerSingle(minValue, maxValue, gain, offset, gamma) {
  HighlightCompressVisualizer.call(this, minValue, maxValue, gain, offset, gamma);
}
HighlightCompressVisualizerSingle.prototype = Object.create(
  HighlightCompressVisualizer.prototype);
HighlightCompressVisualizerSingle.prototype.constructor = HighlightCompressVisualizerSingle;
HighlightCompressVisualizerSingle.prototype.process = function (value) {
  return [HighlightCompressVisualizer.prototype.process.call(this, value)];
};

// The stretch without highlight compression; with a gamma, not clamped.
function DefaultVisualizer(minValue, maxValue, gain, offset, gamma) {
  HighlightCompressVisualizer.call(this, minValue, maxValue, gain, offset, gamma);
}

DefaultVisualizer.prototype.process = function (value) {
  var v = _stretch(this, value);
  var gamma = gammaOverride !== undefined ? gammaOverride : this.gamma;
  if (gamma !== 1) return Math.pow(Math.max(0, v), gamma);
  return v < 0 ? 0 : v > 1 ? 1 : v;
};

DefaultVisualizer.prototype.processList = _processList;

function Identity() {}

Identity.prototype.process = function (value) {
  return Array.isArray(value) ? value : [value];
};

Identity.prototype.processList = _processList;
