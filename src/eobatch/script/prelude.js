// Loaded once into every V8 context before any evalscript: the helpers scripts rely on (spec §8)
// and the `__eobatch` bridge the Python side drives. User scripts run wrapped in a function, so
// their `setup`/`evaluatePixel` never clash between scripts sharing one context.

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

var __eobatch = (function () {
  "use strict";
  const scripts = new Map();
  const slots = new Map();
  const loops = new Map();
  const TYPED = {
    float32: Float32Array, float64: Float64Array, uint8: Uint8Array, uint16: Uint16Array,
    int16: Int16Array, int8: Int8Array,
  };
  // Integer ranges of the sample types the loop converts to (spec §5); AUTO is UINT8 of v * 255.
  const UNROLL_SCENES = 16;  // up to this many scenes a loop is specialised to their number
  // Bands each script has been seen reading, per layout: only those are copied into the sample
  // objects pixel by pixel; the others are getters that read the input array when asked.
  const eagerBands = new Map();
  const LAZY_READS = 16;  // reads through a getter before its band is copied eagerly
  const enumerating = new Set();  // scripts that may list the properties of their samples
  const texts = new Map();  // script key -> its source text
  const ENUMERATES = /Object\s*\.\s*(keys|values|entries|assign|getOwnProperty|freeze)|JSON\s*\.\s*stringify|hasOwnProperty|Reflect\s*\.|\.\.\.\s*\w/;
  const REBUILD = "rebuild";
  const RANGES = {
    AUTO: [0, 255], UINT8: [0, 255], INT8: [-128, 127], UINT16: [0, 65535], INT16: [-32768, 32767],
  };

  // Where in the user script an error was thrown (line, column), from the V8 stack trace.
  function location(err) {
    const stack = err && typeof err.stack === "string" ? err.stack : "";
    const m = stack.match(/evalscript\.js:(\d+):(\d+)/);
    return m ? [Number(m[1]), Number(m[2])] : [null, null];
  }

  function describe(err, where) {
    let message;
    if (err instanceof Error) message = err.name + ": " + err.message;
    else message = "uncaught exception: " + String(err);
    const [line, column] = location(err);
    return JSON.stringify({ message: message, where: where, line: line, column: column });
  }

  function fail(message) {
    return JSON.stringify({ message: message, where: null, line: null, column: null });
  }

  // Non-finite numbers survive as strings, so `nodataValue: NaN` is not lost in JSON.
  function jsonReplacer(key, value) {
    if (typeof value === "number" && !Number.isFinite(value)) return String(value);
    return value;
  }

  return {
    // Runs the script's top-level code; "" on success, else a JSON error description.
    register: function (key, factory) {
      let fns;
      try {
        fns = factory();
      } catch (err) {
        return describe(err, "top-level code");
      }
      scripts.set(key, fns);
      // Lazy bands live on the samples' prototype, invisible to own-property enumeration: a
      // script that might enumerate its samples gets every band copied, as plain own fields.
      if (ENUMERATES.test(String(factory))) enumerating.add(key);
      texts.set(key, String(factory));
      return "";
    },

    // JSON text {ok: setup()} or {error: {...}}.
    setup: function (key) {
      const fns = scripts.get(key);
      if (typeof fns.setup !== "function") {
        return JSON.stringify({ error: { message: "the evalscript defines no setup() function" } });
      }
      let result;
      try {
        result = fns.setup();
      } catch (err) {
        return JSON.stringify({ error: JSON.parse(describe(err, "setup()")) });
      }
      if (result === undefined) result = null;
      return JSON.stringify({ ok: result }, jsonReplacer);
    },

    // A buffer that stays referenced here while Python holds a memoryview into it; kept for the
    // next call, since the features of a task all have the same size.
    alloc: function (slot, nbytes) {
      let buf = slots.get(slot);
      if (buf === undefined || buf.byteLength !== nbytes) {
        buf = new ArrayBuffer(nbytes);
        slots.set(slot, buf);
      }
      return buf;
    },

    // Evaluates every pixel; "" (or the userData JSON) on success, else a JSON error.
    // layout: {mode, fused, sources: [[id, nscenes, [[band, slot, dtype]]]],
    //          outputs: [[id, slot, dtype, nbands]], scenes: the `scenes` argument}
    run: function (key, layoutJson, npix, width, customJson) {
      const fns = scripts.get(key);
      if (typeof fns.evaluatePixel !== "function") {
        return fail("the evalscript defines no evaluatePixel() function");
      }
      const layout = JSON.parse(layoutJson);
      // One loop per script, layout and set of bands copied eagerly: the script's evaluatePixel
      // is a constant of the loop, which lets V8 inline it and drop the arrays it returns.
      const base = key + JSON.stringify([layout.mode, layout.fused, layout.outputs,
        layout.sources.map((src) => [src[0], src[1] <= UNROLL_SCENES ? src[1] : -1,
          src[2].map((b) => [b[0], b[2]])])]);
      let eager = eagerBands.get(base);
      if (eager === undefined) {
        // A first guess: bands the source names more than once (setup() lists each once), so
        // evaluatePixel usually never meets a getter (its inline caches then see one shape:
        // mixing shapes made V8's code for it up to 1.7x slower).
        eager = layout.sources.map((src) => src[2].map((b) => b[0])
          .filter((name) => enumerating.has(key) || mentions(texts.get(key), name) > 1).sort());
        eagerBands.set(base, eager);
      }
      const ins = layout.sources.map((src) => src[2].map((b) => new TYPED[b[2]](slots.get(b[1]))));
      const counts = layout.sources.map((src) => src[1]);
      const outs = layout.outputs.map((o) => new TYPED[o[2]](slots.get(o[1])));
      const state = { pixel: 0, rebuild: null };
      const where = () => "evaluatePixel() at pixel (row " + Math.floor(state.pixel / width) +
        ", column " + (state.pixel % width) + ")";
      const scenes = layout.scenes;
      const inputMetadata = { serviceVersion: "3.0", normalizationFactor: 0.0001 };
      const customData = JSON.parse(customJson);
      const outputMetadata = {};
      let result;
      let start = 0;
      for (;;) {
        const shape = base + JSON.stringify(eager);
        let loop = loops.get(shape);
        if (loop === undefined) {
          loop = compileLoop(layout, fns.evaluatePixel, eager);
          loops.set(shape, loop);
        }
        state.rebuild = null;
        try {
          result = loop(ins, counts, outs, start, npix, state, scenes, inputMetadata, customData,
            outputMetadata);
        } catch (err) {
          return describe(err, where());
        }
        if (result !== REBUILD) break;
        // The script reads bands the loop left to getters: copy those eagerly from now on
        // (pixel state.pixel is done; a new loop carries on with the next one).
        for (const [j, name] of state.rebuild) {
          if (!eager[j].includes(name)) eager[j] = [...eager[j], name].sort();
        }
        start = state.pixel + 1;
      }
      if (result !== "") {
        const error = JSON.parse(result);
        error.where = where();
        return JSON.stringify(error);
      }
      if (typeof fns.updateOutputMetadata === "function") {
        try {
          fns.updateOutputMetadata(scenes, inputMetadata, outputMetadata);
        } catch (err) {
          return describe(err, "updateOutputMetadata()");
        }
      }
      let userData;
      try {
        userData = JSON.stringify(outputMetadata.userData === undefined ? null
          : outputMetadata.userData, jsonReplacer);
      } catch (err) {
        return fail("outputMetadata.userData cannot be written as JSON: " + String(err));
      }
      return JSON.stringify({ userData: userData === undefined ? null : JSON.parse(userData) });
    },

    // Runs preProcessScenes on the scene lists; JSON {kept: [[indices] per source]} or {error}.
    // collections: {scenes: {orbits|tiles: [...]}}, or keyed by datasource id when fused.
    preProcess: function (key, layoutJson) {
      const fns = scripts.get(key);
      const layout = JSON.parse(layoutJson);
      if (typeof fns.preProcessScenes !== "function") return JSON.stringify({ kept: null });
      const field = layout.mode === "ORBIT" ? "orbits" : "tiles";
      const lists = layout.sources.map((src) => src[1].map((scene, n) => {
        Object.defineProperty(scene, "__index", { value: n, enumerable: false });
        return scene;
      }));
      let collections;
      if (layout.fused) {
        collections = {};
        layout.sources.forEach((src, j) => {
          collections[src[0]] = { scenes: { [field]: lists[j] } };
        });
      } else {
        collections = { scenes: { [field]: lists[0] } };
      }
      let out;
      try {
        out = fns.preProcessScenes(collections);
      } catch (err) {
        return JSON.stringify({ error: JSON.parse(describe(err, "preProcessScenes()")) });
      }
      if (out === undefined) out = collections;  // a script may filter in place
      const kept = layout.sources.map((src, j) => {
        const holder = layout.fused ? out && out[src[0]] : out;
        const list = holder && holder.scenes && holder.scenes[field];
        if (!Array.isArray(list)) return null;
        return list.map((scene) => (scene && typeof scene.__index === "number" ? scene.__index
          : lists[j].findIndex((orig) => JSON.stringify(orig) === JSON.stringify(scene))));
      });
      if (kept.some((k) => k === null)) {
        return JSON.stringify({ error: { message: "preProcessScenes() must return the " +
          "collections object with scenes." + field + " as an array", where: null } });
      }
      return JSON.stringify({ kept: kept });
    },
  };

  // Builds a loop specialised to the source, band and output layout, and to the bands the
  // script has been seen reading (`eager`).
  //
  // Sample objects have a fixed shape and are reused from pixel to pixel (one per scene for
  // ORBIT/TILE), and the script's evaluatePixel is a constant of the loop, so V8 optimises the
  // loop as a whole: it inlines evaluatePixel and drops the arrays it returns. Only eager bands
  // are copied into the objects each pixel; a band the script never reads (setup() often asks
  // for more than evaluatePixel uses) costs nothing. The others are getters on the objects'
  // prototype, correct whenever read; read often, they make the loop return REBUILD so `run`
  // compiles one copying them too and carries on with the next pixel (no pixel runs twice).
  // (Getters for every band, or own accessors, were tried: V8 does not inline them, 5-40x
  // slower.)
  //
  // Values are converted to the output's sample type as they are stored (round half away from
  // zero, clamp, non-finite to 0; AUTO scales by 255), straight into a TypedArray of that type.
  function compileLoop(layout, evaluatePixel, eager) {
    const single = layout.outputs.length === 1;
    const multi = layout.mode !== "SIMPLE";
    const body = [];
    const names = [];
    const lazyAny = [];
    body.push("const cursor = { i: 0 };");  // the pixel lazy bands read (one store per pixel)
    layout.sources.forEach((src, j) => {
      const bands = src[2];
      bands.forEach((b, m) => body.push("const in" + j + "_" + m + " = ins[" + j + "][" + m + "];"));
      // Eager float bands start as a non-integer so their fields are doubles from the start (a
      // field that changes representation later makes V8 throw away its optimised loop).
      const isLazy = bands.map((b) => !eager[j].includes(b[0]));
      const lazy = isLazy.some((x) => x);
      // Lazy bands are getters on a shared prototype, so the objects' own shape holds only
      // data fields (V8 keeps those fast; own accessors made the loop 5x slower).
      if (lazy) {
        body.push("const proto" + j + " = {};");
        bands.forEach((b, m) => {
          if (isLazy[m]) body.push("Object.defineProperty(proto" + j + ", " +
            JSON.stringify(b[0]) + ", lazyBand(state, cursor, npix, in" + j + "_" + m + ", " + j +
            ", " + JSON.stringify(b[0]) + "));");
        });
      }
      const fields = bands.filter((b, m) => !isLazy[m]).map((b) => JSON.stringify(b[0]) + ": " +
        (b[2].startsWith("float") ? "0.5" : "0")).join(", ");
      const make = ["function make" + j + "(k) { const o = " + (lazy ? "Object.assign(" +
        "Object.create(proto" + j + "), {" + fields + "})" : "{" + fields + "}") + ";"];
      lazyAny.push(lazy);
      // The scene index: a lazy band of this object is at cursor.i + k * npix.
      if (lazy) make.push("Object.defineProperty(o, '__k', { value: k });");
      make.push("return o; }");
      body.push(make.join(" "));
      if (multi) {
        body.push("const s" + j + " = [];");
        body.push("const n" + j + " = counts[" + j + "];");
        body.push("for (let k = 0; k < n" + j + "; k++) s" + j + ".push(make" + j + "(k));");
      } else {
        body.push("const s" + j + " = make" + j + "(0);");
      }
      names.push([src[0], "s" + j, isLazy]);
    });
    layout.outputs.forEach((o, k) => body.push("const out" + k + " = outs[" + k + "];"));
    if (layout.fused) {
      body.push("const samples = {" + names.map((n) => JSON.stringify(n[0]) + ": " + n[1])
        .join(", ") + "};");
    } else {
      body.push("const samples = s0;");
    }
    body.push("let i = start;");
    body.push("try {");
    body.push("for (; i < npix; i++) {");
    if (lazyAny.some((x) => x)) body.push("cursor.i = i;");
    layout.sources.forEach((src, j) => {
      const bands = src[2];
      const isLazy = names[j][2];
      const fill = (o, off) => {
        bands.forEach((b, m) => {
          if (!isLazy[m]) body.push(o + "[" + JSON.stringify(b[0]) + "] = in" + j + "_" + m +
            "[" + off + "];");
        });
      };
      if (multi && src[1] <= UNROLL_SCENES) {
        // Unrolled per scene: constant offsets, no inner loop (2-3x faster in V8).
        for (let k = 0; k < src[1]; k++) {
          body.push("{ const o = s" + j + "[" + k + "]; const off = i + " + k + " * npix;");
          fill("o", "off");
          body.push("}");
        }
      } else if (multi) {
        body.push("for (let k = 0, off = i; k < n" + j + "; k++, off += npix) {");
        body.push("const o = s" + j + "[k];");
        fill("o", "off");
        body.push("}");
      } else {
        fill("s" + j, "i");
      }
    });
    body.push("const r = evaluatePixel(samples, scenes, inputMetadata, customData, " +
      "outputMetadata);");
    if (!single) {
      body.push("if (r === null || typeof r !== 'object') { state.pixel = i; return wrongType(r); }");
    }
    layout.outputs.forEach((o, k) => {
      const id = JSON.stringify(o[0]);
      const n = o[3];
      const type = o[4];
      const v = "v" + k;
      body.push((single ? "let " : "const ") + v + " = " + (single ? "r" : "r[" + id + "]") + ";");
      // The hot path checks one length; anything unusual is sorted out off it.
      body.push("if (" + v + " == null || " + v + ".length !== " + n + ") {");
      if (single) {
        // A single output may also be returned keyed by its id.
        body.push("if (" + v + " != null && typeof " + v + " === 'object' && " + v +
          ".length === undefined && " + id + " in " + v + ") " + v + " = " + v + "[" + id + "];");
      }
      body.push("if (" + v + " == null || typeof " + v + " !== 'object' || " + v + ".length !== " +
        n + ") { state.pixel = i; return wrongLength(" + id + ", " + n + ", " + v + ", " +
        !single + "); }");
      body.push("}");
      for (let c = 0; c < n; c++) {
        const x = "x" + k + "_" + c;
        body.push("let " + x + " = " + v + "[" + c + "];");
        body.push("if (typeof " + x + " !== 'number') {");
        body.push("if (typeof " + x + " === 'boolean') " + x + " = " + x + " ? 1 : 0;");
        body.push("else { state.pixel = i; return notNumber(" + id + ", " + c + ", " + x + "); }");
        body.push("}");
        const slot = "out" + k + "[" + (c === 0 ? "i" : c + " * npix + i") + "]";
        if (type === "FLOAT32") {
          body.push(slot + " = " + x + ";");
        } else {
          const [lo, hi] = RANGES[type];
          // Non-finite -> 0, clamp, round half away from zero; written so that the branches
          // are almost never taken (mispredicted branches cost more than the arithmetic here).
          // `| 0` truncates; shifting by `lo` first makes it a floor. The addition can round a
          // value just below k + 0.5 up to k + 1 (first fix); floor(y + 0.5) rounds negative
          // ties up, away-from-zero wants them down (second fix).
          const y = "y" + k + "_" + c;
          const r = "r" + k + "_" + c;
          body.push("let " + y + " = " + (type === "AUTO" ? x + " * 255" : x) + ";");
          body.push("if (!(" + y + " - " + y + " === 0)) " + y + " = 0; else if (" + y + " > " + hi +
            ") " + y + " = " + hi + "; else if (" + y + " < " + lo + ") " + y + " = " + lo + ";");
          body.push("let " + r + " = ((" + y + " + " + (0.5 - lo) + ") | 0) + " + lo + ";");
          // (`r - 0.5` is exact for these integers; `r - y` would not always be.)
          body.push("if (" + y + " < " + r + " - 0.5) " + r + " -= 1;");
          if (lo < 0) {
            body.push("else if (" + y + " === " + r + " - 0.5 && " + y + " < 0) " + r + " -= 1;");
          }
          body.push(slot + " = " + r + ";");
        }
      }
    });
    if (lazyAny.some((x) => x)) {
      // A getter read often enough (or a write) asks for a loop copying that band eagerly.
      body.push("if (state.rebuild !== null) { state.pixel = i; return REBUILD; }");
    }
    body.push("}");
    body.push("} catch (err) { state.pixel = i; throw err; }");
    body.push("return '';");
    const make = new Function(
      "wrongType", "wrongLength", "notNumber", "evaluatePixel", "lazyBand", "REBUILD",
      "return function (ins, counts, outs, start, npix, state, scenes, inputMetadata, " +
      "customData, outputMetadata) {\n" + body.join("\n") + "\n};",
    );
    return make(wrongType, wrongLength, notNumber, evaluatePixel, lazyBand, REBUILD);
  }

  // The property descriptor of a band not copied into the sample objects: reads come from the
  // input array; after LAZY_READS reads, or any write, the band is asked to be copied eagerly.
  function lazyBand(state, cursor, npix, values, source, name) {
    let reads = 0;
    const ask = () => {
      if (state.rebuild === null) state.rebuild = [];
      state.rebuild.push([source, name]);
    };
    return {
      get: function () {
        if (++reads === LAZY_READS) ask();
        return values[cursor.i + this.__k * npix];
      },
      set: function (v) {
        ask();  // the script writes into its samples: from the next pixel the band is data
        Object.defineProperty(this, name, { value: v, writable: true, enumerable: true,
          configurable: true });
      },
      enumerable: true,
      configurable: true,
    };
  }

  // How often `name` occurs as a word in `text`.
  function mentions(text, name) {
    const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return (text.match(new RegExp("(^|[^\\w$])" + escaped + "(?![\\w$])", "g")) || []).length;
  }

  function shown(v) {
    if (v === undefined) return "undefined";
    try {
      const s = JSON.stringify(v);
      return s.length > 80 ? s.slice(0, 77) + "..." : s;
    } catch (e) {
      return String(v);
    }
  }

  function wrongType(r) {
    return fail("evaluatePixel() must return an object keyed by output id (the script has " +
      "several outputs), got " + shown(r));
  }

  function wrongLength(id, n, v, multi) {
    const got = v !== null && typeof v === "object" && typeof v.length === "number"
      ? "an array of " + v.length + " value(s)"
      : shown(v);
    const what = multi ? "evaluatePixel() result for output '" + id + "'" : "evaluatePixel() result";
    return fail(what + " must be an array of " + n + " value(s) (output '" + id + "' has bands: " +
      n + "), got " + got);
  }

  function notNumber(id, c, x) {
    return fail("evaluatePixel() value " + c + " of output '" + id + "' must be a number, got " +
      shown(x));
  }
})();
