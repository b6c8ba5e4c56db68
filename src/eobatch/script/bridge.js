// The `__eobatch` bridge the Python side drives: it registers scripts, calls setup(),
// preProcessScenes() and updateOutputMetadata(), and runs evaluatePixel over whole rasters.
//
// Evalscripts run in this same realm and may replace any built-in (`Array.prototype.push`,
// `JSON.stringify`, `Object.defineProperty`, iterators, ...). The bridge therefore never looks
// a built-in up after a script has run: it captures what it needs here, before any script is
// loaded, and otherwise uses only plain loops, indexing and object literals (no array methods,
// spread, for-of or destructuring, which consult replaceable prototypes and iterators). A script
// can still break itself, never the bridge's report of what it did.

(function (global) {
  "use strict";
  // -- built-ins, captured before any evalscript runs -------------------------------------------
  const call = Function.prototype.call;
  const uncurry = (f) => call.bind(f);
  const ObjectCtor = Object;
  const ArrayCtor = Array;
  const ErrorCtor = Error;
  const StringCtor = String;
  const NumberCtor = Number;
  const FunctionCtor = Function;
  const MapCtor = Map;
  const ArrayBufferCtor = ArrayBuffer;
  const TYPED = {
    float32: Float32Array, float64: Float64Array, uint8: Uint8Array, uint16: Uint16Array,
    int16: Int16Array, int8: Int8Array,
  };
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const defineProperty = ObjectCtor.defineProperty;
  const create = ObjectCtor.create;
  const assign = ObjectCtor.assign;
  const freeze = ObjectCtor.freeze;
  const isArray = ArrayCtor.isArray;
  const isFinite = NumberCtor.isFinite;
  const floor = Math.floor;
  const mapGet = uncurry(MapCtor.prototype.get);
  const mapSet = uncurry(MapCtor.prototype.set);
  const mapHas = uncurry(MapCtor.prototype.has);
  const sort = uncurry(ArrayCtor.prototype.sort);
  const indexOf = uncurry(StringCtor.prototype.indexOf);
  const charCodeAt = uncurry(StringCtor.prototype.charCodeAt);
  const slice = uncurry(StringCtor.prototype.slice);
  const functionText = uncurry(FunctionCtor.prototype.toString);
  const isPrototypeOf = uncurry(ObjectCtor.prototype.isPrototypeOf);
  const byteLength = uncurry(
    ObjectCtor.getOwnPropertyDescriptor(ArrayBufferCtor.prototype, "byteLength").get);

  // -- plain-loop replacements for the array methods the bridge needs ---------------------------
  // Defined, not assigned: an assignment would run a setter a script put on Array.prototype.
  function push(array, value) {
    defineProperty(array, array.length, { value: value, writable: true, enumerable: true,
      configurable: true });
  }

  function mapped(array, f) {
    const out = [];
    for (let i = 0; i < array.length; i++) push(out, f(array[i], i));
    return out;
  }

  function contains(array, value) {
    for (let i = 0; i < array.length; i++) if (array[i] === value) return true;
    return false;
  }

  function join(array, separator) {
    let out = "";
    for (let i = 0; i < array.length; i++) out += (i === 0 ? "" : separator) + array[i];
    return out;
  }

  // -- state of this context (one task's scripts: Python never shares a context between tasks) --
  const scripts = new MapCtor();  // script key -> its functions
  const texts = new MapCtor();  // script key -> its source text
  const enumerating = new MapCtor();  // script key -> may list the properties of its samples
  const slots = new MapCtor();  // buffer name -> ArrayBuffer Python holds a view into
  const loops = new MapCtor();  // loop shape -> compiled loop
  // Bands each script has been seen reading, per layout: only those are copied into the sample
  // objects pixel by pixel; the others are getters that read the input array when asked.
  const eagerBands = new MapCtor();
  const UNROLL_SCENES = 16;  // up to this many scenes a loop is specialised to their number
  const LAZY_READS = 16;  // reads through a getter before its band is copied eagerly
  const REBUILD = "rebuild";
  // Integer ranges of the sample types the loop converts to (spec §5); AUTO is UINT8 of v * 255.
  const RANGES = {
    AUTO: [0, 255], UINT8: [0, 255], INT8: [-128, 127], UINT16: [0, 65535], INT16: [-32768, 32767],
  };
  // Words in a script's text that suggest it lists the properties of its samples.
  const ENUMERATING_WORDS = ["Object.keys", "Object.values", "Object.entries", "Object.assign",
    "Object.getOwnProperty", "Object.freeze", "JSON.stringify", "hasOwnProperty", "Reflect.",
    "..."];

  // -- reports to Python ------------------------------------------------------------------------
  // Where in the user script an error was thrown (line, column), from the V8 stack trace.
  function location(stack) {
    const marker = "evalscript.js:";
    const at = indexOf(stack, marker);
    if (at < 0) return null;
    let i = at + marker.length;
    let line = 0;
    let column = 0;
    let digits = 0;
    for (; i < stack.length && isDigit(charCodeAt(stack, i)); i++, digits++) {
      line = line * 10 + (charCodeAt(stack, i) - 48);
    }
    if (digits === 0 || charCodeAt(stack, i) !== 58) return null;  // ':'
    for (i++, digits = 0; i < stack.length && isDigit(charCodeAt(stack, i)); i++, digits++) {
      column = column * 10 + (charCodeAt(stack, i) - 48);
    }
    return digits === 0 ? null : { line: line, column: column };
  }

  function isDigit(code) {
    return code >= 48 && code <= 57;
  }

  // A field of a thrown value, or `fallback` if reading it fails (a script controls the value).
  function field(value, name, fallback) {
    try {
      const v = value[name];
      return typeof v === "string" ? v : fallback;
    } catch (e) {
      return fallback;
    }
  }

  function describe(err, where) {
    let message;
    let at = null;
    let isError = false;
    try {
      isError = err !== null && typeof err === "object" && isPrototypeOf(ErrorCtor.prototype, err);
    } catch (e) {
      isError = false;
    }
    if (isError) {
      message = field(err, "name", "Error") + ": " + field(err, "message", "");
      at = location(field(err, "stack", ""));
    } else {
      message = "uncaught exception: " + shown(err);
    }
    return stringify({ message: message, where: where, line: at === null ? null : at.line,
      column: at === null ? null : at.column });
  }

  function fail(message) {
    return stringify({ message: message, where: null, line: null, column: null });
  }

  // A short text for a value the script produced, whatever it is.
  function shown(v) {
    if (v === undefined) return "undefined";
    let s;
    try {
      s = stringify(v);
    } catch (e) {
      s = undefined;
    }
    if (typeof s !== "string") {
      try {
        s = typeof v === "object" || typeof v === "function" ? "a " + typeof v : StringCtor(v);
      } catch (e) {
        s = "a value that cannot be shown";
      }
    }
    return s.length > 80 ? slice(s, 0, 77) + "..." : s;
  }

  // Non-finite numbers survive as strings, so `nodataValue: NaN` is not lost in JSON.
  function jsonReplacer(key, value) {
    if (typeof value === "number" && !isFinite(value)) return StringCtor(value);
    return value;
  }

  // How often `name` occurs as a word (not part of a longer identifier) in `text`.
  function mentions(text, name) {
    let count = 0;
    for (let at = indexOf(text, name); at >= 0; at = indexOf(text, name, at + 1)) {
      if (!isWordChar(at > 0 ? charCodeAt(text, at - 1) : 32) &&
          !isWordChar(at + name.length < text.length ? charCodeAt(text, at + name.length) : 32)) {
        count++;
      }
    }
    return count;
  }

  function isWordChar(code) {
    return isDigit(code) || (code >= 65 && code <= 90) || (code >= 97 && code <= 122) ||
      code === 95 || code === 36 || code > 127;
  }

  function mayEnumerate(text) {
    for (let i = 0; i < ENUMERATING_WORDS.length; i++) {
      if (indexOf(text, ENUMERATING_WORDS[i]) >= 0) return true;
    }
    return false;
  }

  // -- the entry points Python calls ------------------------------------------------------------
  const bridge = {
    // Runs the script's top-level code; "" on success, else a JSON error description.
    register: function (key, factory) {
      // Read the text before the script's own code can replace Function.prototype.toString.
      const text = functionText(factory);
      let fns;
      try {
        fns = factory();
      } catch (err) {
        return describe(err, "top-level code");
      }
      mapSet(scripts, key, fns);
      mapSet(texts, key, text);
      // Lazy bands live on the samples' prototype, invisible to own-property enumeration: a
      // script that might enumerate its samples gets every band copied, as plain own fields.
      mapSet(enumerating, key, mayEnumerate(text));
      return "";
    },

    // JSON text {ok: setup()} or {error: {...}}.
    setup: function (key) {
      const fns = mapGet(scripts, key);
      if (typeof fns.setup !== "function") {
        return stringify({ error: { message: "the evalscript defines no setup() function" } });
      }
      let result;
      try {
        result = fns.setup();
      } catch (err) {
        return stringify({ error: parse(describe(err, "setup()")) });
      }
      if (result === undefined) result = null;
      try {
        return stringify({ ok: result }, jsonReplacer);
      } catch (err) {
        return stringify({ error: { message: "setup() must return plain JSON data: " +
          shown(err) } });
      }
    },

    // A buffer that stays referenced here while Python holds a memoryview into it; kept for the
    // next call, since the features of a task all have the same size.
    alloc: function (slot, nbytes) {
      let buf = mapGet(slots, slot);
      if (buf === undefined || byteLength(buf) !== nbytes) {
        buf = new ArrayBufferCtor(nbytes);
        mapSet(slots, slot, buf);
      }
      return buf;
    },

    // Evaluates every pixel; {userData} as JSON on success, else a JSON error.
    // layout: {mode, fused, sources: [[id, nscenes, [[band, slot, dtype]]]],
    //          outputs: [[id, slot, dtype, nbands, sampleType]], scenes: the `scenes` argument}
    run: function (key, layoutJson, npix, width, customJson) {
      const fns = mapGet(scripts, key);
      if (typeof fns.evaluatePixel !== "function") {
        return fail("the evalscript defines no evaluatePixel() function");
      }
      const layout = parse(layoutJson);
      // One loop per script, layout and set of bands copied eagerly: the script's evaluatePixel
      // is a constant of the loop, which lets V8 inline it and drop the arrays it returns.
      const base = key + stringify([layout.mode, layout.fused, layout.outputs,
        mapped(layout.sources, (src) => [src[0], src[1] <= UNROLL_SCENES ? src[1] : -1,
          mapped(src[2], (b) => [b[0], b[2]])])]);
      let eager = mapGet(eagerBands, base);
      if (eager === undefined) {
        // A first guess: bands the source names more than once (setup() lists each once), so
        // evaluatePixel usually never meets a getter (its inline caches then see one shape:
        // mixing shapes made V8's code for it up to 1.7x slower).
        const text = mapGet(texts, key);
        const all = mapGet(enumerating, key);
        eager = mapped(layout.sources, (src) => {
          const names = [];
          for (let m = 0; m < src[2].length; m++) {
            const name = src[2][m][0];
            if (all || mentions(text, name) > 1) push(names, name);
          }
          return sort(names);
        });
        mapSet(eagerBands, base, eager);
      }
      const ins = mapped(layout.sources, (src) => mapped(src[2],
        (b) => new TYPED[b[2]](mapGet(slots, b[1]))));
      const counts = mapped(layout.sources, (src) => src[1]);
      const outs = mapped(layout.outputs, (o) => new TYPED[o[2]](mapGet(slots, o[1])));
      const state = { pixel: 0, rebuild: null };
      const where = () => "evaluatePixel() at pixel (row " + floor(state.pixel / width) +
        ", column " + (state.pixel % width) + ")";
      const scenes = layout.scenes;
      const inputMetadata = { serviceVersion: "3.0", normalizationFactor: 0.0001 };
      const customData = parse(customJson);
      const outputMetadata = {};
      let result;
      let start = 0;
      for (;;) {
        const shape = base + stringify(eager);
        let loop = mapGet(loops, shape);
        if (loop === undefined) {
          loop = compileLoop(layout, fns.evaluatePixel, eager);
          mapSet(loops, shape, loop);
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
        const next = mapped(eager, (names) => mapped(names, (name) => name));
        for (let r = 0; r < state.rebuild.length; r++) {
          const j = state.rebuild[r][0];
          const name = state.rebuild[r][1];
          if (!contains(next[j], name)) {
            push(next[j], name);
            sort(next[j]);
          }
        }
        eager = next;
        mapSet(eagerBands, base, eager);
        start = state.pixel + 1;
      }
      if (result !== "") {
        const error = parse(result);
        error.where = where();
        return stringify(error);
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
        userData = stringify(outputMetadata.userData === undefined ? null
          : outputMetadata.userData, jsonReplacer);
      } catch (err) {
        return fail("outputMetadata.userData cannot be written as JSON: " + shown(err));
      }
      return "{\"userData\":" + (userData === undefined ? "null" : userData) + "}";
    },

    // Runs preProcessScenes on the scene lists; JSON {kept: [[indices] per source]} or {error}.
    // collections: {scenes: {orbits|tiles: [...]}}, or keyed by datasource id when fused.
    preProcess: function (key, layoutJson) {
      const fns = mapGet(scripts, key);
      const layout = parse(layoutJson);
      if (typeof fns.preProcessScenes !== "function") return stringify({ kept: null });
      const field = layout.mode === "ORBIT" ? "orbits" : "tiles";
      // Each scene carries its index (hidden from enumeration and JSON) so the kept ones can
      // be told apart however the script filters, sorts or copies the list.
      const lists = mapped(layout.sources, (src) => mapped(src[1], (scene, n) => {
        defineProperty(scene, "__index", { value: n, enumerable: false });
        return scene;
      }));
      const originals = mapped(lists, (list) => mapped(list, (scene) => stringify(scene)));
      let collections;
      if (layout.fused) {
        collections = {};
        for (let j = 0; j < layout.sources.length; j++) {
          const value = { scenes: { [field]: lists[j] } };
          defineProperty(collections, layout.sources[j][0], { value: value, writable: true,
            enumerable: true, configurable: true });
        }
      } else {
        collections = { scenes: { [field]: lists[0] } };
      }
      let out;
      try {
        out = fns.preProcessScenes(collections);
      } catch (err) {
        return stringify({ error: parse(describe(err, "preProcessScenes()")) });
      }
      if (out === undefined) out = collections;  // a script may filter in place
      const invalid = stringify({ error: { message: "preProcessScenes() must return the " +
        "collections object with scenes." + field + " as an array", where: null } });
      const kept = [];
      try {
        for (let j = 0; j < layout.sources.length; j++) {
          const holder = layout.fused ? out && out[layout.sources[j][0]] : out;
          const list = holder && holder.scenes && holder.scenes[field];
          if (!isArray(list)) return invalid;
          push(kept, mapped(list, (scene) => {
            if (scene && typeof scene.__index === "number") return scene.__index;
            const text = stringify(scene);
            for (let n = 0; n < originals[j].length; n++) if (originals[j][n] === text) return n;
            return -1;
          }));
        }
      } catch (err) {
        return stringify({ error: parse(describe(err, "preProcessScenes() result")) });
      }
      return stringify({ kept: kept });
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
  // slower.) The generated code, like the bridge, takes every built-in it uses as a parameter.
  //
  // Values are converted to the output's sample type as they are stored (round half away from
  // zero, clamp, non-finite to 0; AUTO scales by 255), straight into a TypedArray of that type.
  function compileLoop(layout, evaluatePixel, eager) {
    const single = layout.outputs.length === 1;
    const multi = layout.mode !== "SIMPLE";
    const body = [];
    const names = [];
    let lazyAny = false;
    const q = (s) => stringify(s);
    push(body, "const cursor = { i: 0 };");  // the pixel lazy bands read (one store per pixel)
    for (let j = 0; j < layout.sources.length; j++) {
      const src = layout.sources[j];
      const bands = src[2];
      for (let m = 0; m < bands.length; m++) {
        push(body, "const in" + j + "_" + m + " = ins[" + j + "][" + m + "];");
      }
      // Eager float bands start as a non-integer so their fields are doubles from the start (a
      // field that changes representation later makes V8 throw away its optimised loop).
      const isLazy = mapped(bands, (b) => !contains(eager[j], b[0]));
      let lazy = false;
      for (let m = 0; m < isLazy.length; m++) lazy = lazy || isLazy[m];
      // Lazy bands are getters on a shared prototype, so the objects' own shape holds only
      // data fields (V8 keeps those fast; own accessors made the loop 5x slower).
      if (lazy) {
        push(body, "const proto" + j + " = {};");
        for (let m = 0; m < bands.length; m++) {
          if (isLazy[m]) {
            push(body, "$defineProperty(proto" + j + ", " + q(bands[m][0]) +
              ", lazyBand(state, cursor, npix, in" + j + "_" + m + ", " + j + ", " +
              q(bands[m][0]) + "));");
          }
        }
      }
      const fields = [];
      for (let m = 0; m < bands.length; m++) {
        if (!isLazy[m]) {
          push(fields, q(bands[m][0]) + ": " + (bands[m][2][0] === "f" ? "0.5" : "0"));
        }
      }
      let make = "function make" + j + "(k) { const o = " + (lazy ? "$assign($create(proto" + j +
        "), {" + join(fields, ", ") + "})" : "{" + join(fields, ", ") + "}") + ";";
      lazyAny = lazyAny || lazy;
      // The scene index: a lazy band of this object is at cursor.i + k * npix.
      if (lazy) make += " $defineProperty(o, '__k', { value: k });";
      push(body, make + " return o; }");
      if (multi) {
        push(body, "const n" + j + " = counts[" + j + "];");
        push(body, "const s" + j + " = [];");
        push(body, "for (let k = 0; k < n" + j + "; k++) $push(s" + j + ", make" + j + "(k));");
      } else {
        push(body, "const s" + j + " = make" + j + "(0);");
      }
      push(names, [src[0], "s" + j, isLazy]);
    }
    for (let k = 0; k < layout.outputs.length; k++) {
      push(body, "const out" + k + " = outs[" + k + "];");
    }
    if (layout.fused) {
      push(body, "const samples = {" + join(mapped(names, (n) => q(n[0]) + ": " + n[1]), ", ") +
        "};");
    } else {
      push(body, "const samples = s0;");
    }
    push(body, "let i = start;");
    push(body, "try {");
    push(body, "for (; i < npix; i++) {");
    if (lazyAny) push(body, "cursor.i = i;");
    for (let j = 0; j < layout.sources.length; j++) {
      const src = layout.sources[j];
      const bands = src[2];
      const isLazy = names[j][2];
      const fill = (o, off) => {
        for (let m = 0; m < bands.length; m++) {
          if (!isLazy[m]) {
            push(body, o + "[" + q(bands[m][0]) + "] = in" + j + "_" + m + "[" + off + "];");
          }
        }
      };
      if (multi && src[1] <= UNROLL_SCENES) {
        // Unrolled per scene: constant offsets, no inner loop (2-3x faster in V8).
        for (let k = 0; k < src[1]; k++) {
          push(body, "{ const o = s" + j + "[" + k + "]; const off = i + " + k + " * npix;");
          fill("o", "off");
          push(body, "}");
        }
      } else if (multi) {
        push(body, "for (let k = 0, off = i; k < n" + j + "; k++, off += npix) {");
        push(body, "const o = s" + j + "[k];");
        fill("o", "off");
        push(body, "}");
      } else {
        fill("s" + j, "i");
      }
    }
    push(body, "const r = evaluatePixel(samples, scenes, inputMetadata, customData, " +
      "outputMetadata);");
    if (!single) {
      push(body, "if (r === null || typeof r !== 'object') { state.pixel = i; " +
        "return wrongType(r); }");
    }
    for (let k = 0; k < layout.outputs.length; k++) {
      const o = layout.outputs[k];
      const id = q(o[0]);
      const n = o[3];
      const type = o[4];
      const v = "v" + k;
      push(body, (single ? "let " : "const ") + v + " = " + (single ? "r" : "r[" + id + "]") +
        ";");
      // The hot path checks one length; anything unusual is sorted out off it.
      push(body, "if (" + v + " == null || " + v + ".length !== " + n + ") {");
      if (single) {
        // A single output may also be returned keyed by its id.
        push(body, "if (" + v + " != null && typeof " + v + " === 'object' && " + v +
          ".length === undefined && " + id + " in " + v + ") " + v + " = " + v + "[" + id +
          "];");
      }
      push(body, "if (" + v + " == null || typeof " + v + " !== 'object' || " + v +
        ".length !== " + n + ") { state.pixel = i; return wrongLength(" + id + ", " + n + ", " +
        v + ", " + !single + "); }");
      push(body, "}");
      for (let c = 0; c < n; c++) {
        const x = "x" + k + "_" + c;
        push(body, "let " + x + " = " + v + "[" + c + "];");
        push(body, "if (typeof " + x + " !== 'number') {");
        push(body, "if (typeof " + x + " === 'boolean') " + x + " = " + x + " ? 1 : 0;");
        push(body, "else { state.pixel = i; return notNumber(" + id + ", " + c + ", " + x +
          "); }");
        push(body, "}");
        const slot = "out" + k + "[" + (c === 0 ? "i" : c + " * npix + i") + "]";
        if (type === "FLOAT32") {
          push(body, slot + " = " + x + ";");
        } else {
          const lo = RANGES[type][0];
          const hi = RANGES[type][1];
          // Non-finite -> 0, clamp, round half away from zero; written so that the branches
          // are almost never taken (mispredicted branches cost more than the arithmetic here).
          // `| 0` truncates; shifting by `lo` first makes it a floor. The addition can round a
          // value just below k + 0.5 up to k + 1 (first fix); floor(y + 0.5) rounds negative
          // ties up, away-from-zero wants them down (second fix).
          const y = "y" + k + "_" + c;
          const r = "r" + k + "_" + c;
          push(body, "let " + y + " = " + (type === "AUTO" ? x + " * 255" : x) + ";");
          push(body, "if (!(" + y + " - " + y + " === 0)) " + y + " = 0; else if (" + y + " > " +
            hi + ") " + y + " = " + hi + "; else if (" + y + " < " + lo + ") " + y + " = " + lo +
            ";");
          push(body, "let " + r + " = ((" + y + " + " + (0.5 - lo) + ") | 0) + " + lo + ";");
          // (`r - 0.5` is exact for these integers; `r - y` would not always be.)
          push(body, "if (" + y + " < " + r + " - 0.5) " + r + " -= 1;");
          if (lo < 0) {
            push(body, "else if (" + y + " === " + r + " - 0.5 && " + y + " < 0) " + r +
              " -= 1;");
          }
          push(body, slot + " = " + r + ";");
        }
      }
    }
    if (lazyAny) {
      // A getter read often enough (or a write) asks for a loop copying that band eagerly.
      push(body, "if (state.rebuild !== null) { state.pixel = i; return REBUILD; }");
    }
    push(body, "}");
    push(body, "} catch (err) { state.pixel = i; throw err; }");
    push(body, "return '';");
    const make = new FunctionCtor(
      "wrongType", "wrongLength", "notNumber", "evaluatePixel", "lazyBand", "REBUILD",
      "$defineProperty", "$assign", "$create", "$push",
      "return function (ins, counts, outs, start, npix, state, scenes, inputMetadata, " +
      "customData, outputMetadata) {\n" + join(body, "\n") + "\n};",
    );
    return make(wrongType, wrongLength, notNumber, evaluatePixel, lazyBand, REBUILD,
      defineProperty, assign, create, push);
  }

  // The property descriptor of a band not copied into the sample objects: reads come from the
  // input array; after LAZY_READS reads, or any write, the band is asked to be copied eagerly.
  function lazyBand(state, cursor, npix, values, source, name) {
    let reads = 0;
    const ask = () => {
      if (state.rebuild === null) state.rebuild = [];
      push(state.rebuild, [source, name]);
    };
    return {
      get: function () {
        if (++reads === LAZY_READS) ask();
        return values[cursor.i + this.__k * npix];
      },
      set: function (v) {
        ask();  // the script writes into its samples: from the next pixel the band is data
        defineProperty(this, name, { value: v, writable: true, enumerable: true,
          configurable: true });
      },
      enumerable: true,
      configurable: true,
    };
  }

  function wrongType(r) {
    return fail("evaluatePixel() must return an object keyed by output id (the script has " +
      "several outputs), got " + shown(r));
  }

  function wrongLength(id, n, v, multi) {
    let got;
    try {
      got = v !== null && typeof v === "object" && typeof v.length === "number"
        ? "an array of " + v.length + " value(s)" : shown(v);
    } catch (e) {
      got = shown(v);
    }
    const what = multi ? "evaluatePixel() result for output '" + id + "'"
      : "evaluatePixel() result";
    return fail(what + " must be an array of " + n + " value(s) (output '" + id +
      "' has bands: " + n + "), got " + got);
  }

  function notNumber(id, c, x) {
    return fail("evaluatePixel() value " + c + " of output '" + id + "' must be a number, got " +
      shown(x));
  }

  // Neither replaceable nor changeable by a script: Python reaches the bridge through this name.
  defineProperty(global, "__eobatch", { value: freeze(bridge), writable: false,
    enumerable: false, configurable: false });
})(globalThis);
