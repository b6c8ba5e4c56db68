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
  const DateCtor = Date;
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
  const setPrototypeOf = ObjectCtor.setPrototypeOf;
  const ArrayPrototype = ArrayCtor.prototype;
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

  // -- the objects scripts get besides their samples (spec §3, §6) -----------------------------
  function date(iso) {
    return new DateCtor(iso);
  }

  function setField(object, name, value) {
    defineProperty(object, name, { value: value, writable: true, enumerable: true,
      configurable: true });
  }

  // `scenes` of one source without fusion: {} for SIMPLE, else the orbits/tiles. It is an array
  // of them whose `orbits`/`tiles` property is another array of the same scenes: the documented
  // `scenes.orbits[i]` and the deprecated `scenes[i]` (still used by real scripts) both work,
  // and as JSON it is the documented {orbits: [...]}.
  function plainScenes(src) {
    if (src.mode === "SIMPLE") return {};
    const field = src.mode === "ORBIT" ? "orbits" : "tiles";
    const list = [];
    const documented = [];
    for (let i = 0; i < src.meta.length; i++) {
      const scene = src.meta[i];
      // Scripts of the deprecated form (converted from V1) call `scenes[i].date.getMonth()`:
      // an orbit also has its day as a Date, hidden from enumeration and JSON.
      if (field === "orbits" && scene.date === undefined) {
        defineProperty(scene, "date", { value: date(scene.dateFrom), writable: true,
          enumerable: false, configurable: true });
      }
      setField(scene, "__idx", i);
      push(list, scene);
      push(documented, scene);
    }
    defineProperty(list, field, { value: documented, writable: true, enumerable: false,
      configurable: true });
    defineProperty(list, "toJSON", { value: function () {
      const json = {};
      setField(json, field, list[field]);
      return json;
    }, writable: true, enumerable: false, configurable: true });
    return list;
  }

  // `scenes.<id>` with data fusion: {scenes: [{date (a Date), idx, ...}], normalizationFactor},
  // index-aligned with `samples.<id>`; empty for SIMPLE (as Sentinel Hub dumps show).
  function fusedScenes(src) {
    const entries = [];
    if (src.mode !== "SIMPLE") {
      for (let i = 0; i < src.meta.length; i++) {
        const scene = parse(stringify(src.meta[i]));
        setField(scene, "date", date(src.mode === "ORBIT" ? scene.dateFrom : scene.date));
        setField(scene, "idx", i);
        push(entries, scene);
      }
    }
    const value = { scenes: entries, normalizationFactor: src.normalization };
    if (src.mode !== "SIMPLE") setField(value, src.mode === "ORBIT" ? "orbits" : "tiles", src.meta);
    return value;
  }

  function keyed(sources, make) {
    const out = {};
    for (let j = 0; j < sources.length; j++) {
      const value = make(sources[j]);
      for (let k = 0; k < sources[j].keys.length; k++) setField(out, sources[j].keys[k], value);
    }
    return out;
  }

  function scenesArgument(layout) {
    return layout.fused ? keyed(layout.sources, fusedScenes) : plainScenes(layout.sources[0]);
  }

  // `collection` of updateOutput: {scenes: [{date: Date, ...}]}, keyed by source with fusion.
  function collectionArgument(layout) {
    const one = (src) => {
      const scenes = [];
      for (let i = 0; i < src.meta.length; i++) {
        const scene = parse(stringify(src.meta[i]));
        setField(scene, "date", date(scene.date !== undefined ? scene.date : scene.dateFrom));
        push(scenes, scene);
      }
      return { scenes: scenes };
    };
    return layout.fused ? keyed(layout.sources, one) : one(layout.sources[0]);
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

    // JSON text {ok: setup(), updatesOutput} or {error: {...}}.
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
        return stringify({ ok: result, updatesOutput: typeof fns.updateOutput === "function" },
          jsonReplacer);
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

    // Calls updateOutput(outputs, collection); JSON {bands: {id: value}} or {error}.
    // layout: {fused, sources: [{keys, mode, meta}]}, outputs: [[id, bands]].
    updateOutput: function (key, layoutJson, outputsJson) {
      const fns = mapGet(scripts, key);
      const layout = parse(layoutJson);
      const declared = parse(outputsJson);
      const outputs = {};
      for (let k = 0; k < declared.length; k++) {
        setField(outputs, declared[k][0], { bands: declared[k][1] });
      }
      try {
        fns.updateOutput(outputs, collectionArgument(layout));
      } catch (err) {
        return stringify({ error: parse(describe(err, "updateOutput()")) });
      }
      const bands = {};
      try {
        for (let k = 0; k < declared.length; k++) {
          const output = outputs[declared[k][0]];
          const value = output !== null && typeof output === "object" ? output.bands : undefined;
          setField(bands, declared[k][0], typeof value === "number" || typeof value === "string"
            ? value : shown(value));
        }
      } catch (err) {
        return stringify({ error: parse(describe(err, "updateOutput() result")) });
      }
      return stringify({ bands: bands }, jsonReplacer);
    },

    // Evaluates every pixel; {userData} as JSON on success, else a JSON error.
    // layout: {fused, sources: [{id, keys, count, present, mode, bands: [[band, slot, dtype]],
    //          meta, normalization}], outputs: [[id, slot, dtype, nbands, sampleType, fill]]}
    run: function (key, layoutJson, npix, width, customJson) {
      const fns = mapGet(scripts, key);
      if (typeof fns.evaluatePixel !== "function") {
        return fail("the evalscript defines no evaluatePixel() function");
      }
      const layout = parse(layoutJson);
      const sources = layout.sources;
      // One loop per script, layout and set of bands copied eagerly: the script's evaluatePixel
      // is a constant of the loop, which lets V8 inline it and drop the arrays it returns.
      const base = key + stringify([layout.fused, layout.outputs,
        mapped(sources, (src) => [src.keys, src.mode,
          src.count <= UNROLL_SCENES ? src.count : -1, mapped(src.bands, (b) => [b[0], b[2]])])]);
      let eager = mapGet(eagerBands, base);
      if (eager === undefined) {
        // A first guess: bands the source names more than once (setup() lists each once), so
        // evaluatePixel usually never meets a getter (its inline caches then see one shape:
        // mixing shapes made V8's code for it up to 1.7x slower).
        const text = mapGet(texts, key);
        const all = mapGet(enumerating, key);
        eager = mapped(sources, (src) => {
          const names = [];
          for (let m = 0; m < src.bands.length; m++) {
            const name = src.bands[m][0];
            if (all || mentions(text, name) > 1) push(names, name);
          }
          return sort(names);
        });
        mapSet(eagerBands, base, eager);
      }
      const ins = mapped(sources, (src) => mapped(src.bands,
        (b) => new TYPED[b[2]](mapGet(slots, b[1]))));
      const counts = mapped(sources, (src) => src.count);
      const present = mapped(sources, (src) => src.present);
      const outs = mapped(layout.outputs, (o) => new TYPED[o[2]](mapGet(slots, o[1])));
      const state = { pixel: 0, rebuild: null };
      const where = () => "evaluatePixel() at pixel (row " + floor(state.pixel / width) +
        ", column " + (state.pixel % width) + ")";
      let scenes;
      try {
        scenes = scenesArgument(layout);
      } catch (err) {
        return describe(err, "building the scenes argument");
      }
      const inputMetadata = { serviceVersion: "3.0",
        normalizationFactor: sources[0].normalization };
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
          result = loop(ins, counts, present, outs, start, npix, state, scenes, inputMetadata,
            customData, outputMetadata);
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
    // layout: {fused, sources: [{keys, mode, meta, from, to}]}, ORBIT/TILE sources only.
    // collections: {from, to, scenes: {orbits|tiles: [...]}}; with fusion also one such object
    // per data source, under its id.
    preProcess: function (key, layoutJson) {
      const fns = mapGet(scripts, key);
      const layout = parse(layoutJson);
      if (typeof fns.preProcessScenes !== "function") return stringify({ kept: null });
      const sources = layout.sources;
      const fieldOf = (src) => (src.mode === "ORBIT" ? "orbits" : "tiles");
      // Each scene carries its index (hidden from enumeration and JSON) so the kept ones can
      // be told apart however the script filters, sorts or copies the list.
      const lists = mapped(sources, (src) => mapped(src.meta, (scene, n) => {
        defineProperty(scene, "__index", { value: n, enumerable: false });
        setField(scene, "__idx", n);
        return scene;
      }));
      const originals = mapped(lists, (list) => mapped(list, (scene) => stringify(scene)));
      const collectionOf = (j) => {
        const scenes = {};
        setField(scenes, fieldOf(sources[j]), lists[j]);
        const value = { scenes: scenes };
        if (sources[j].from !== null) setField(value, "from", date(sources[j].from));
        if (sources[j].to !== null) setField(value, "to", date(sources[j].to));
        return value;
      };
      let collections;
      if (layout.fused) {
        collections = {};
        for (let j = 0; j < sources.length; j++) {
          const value = collectionOf(j);
          for (let k = 0; k < sources[j].keys.length; k++) {
            setField(collections, sources[j].keys[k], value);
          }
        }
        // The first source's time range at the top as well, as without fusion.
        if (sources.length > 0) {
          const first = collectionOf(0);
          if (first.from !== undefined) setField(collections, "from", first.from);
          if (first.to !== undefined) setField(collections, "to", first.to);
        }
      } else {
        collections = collectionOf(0);
      }
      let out;
      try {
        out = fns.preProcessScenes(collections);
      } catch (err) {
        return stringify({ error: parse(describe(err, "preProcessScenes()")) });
      }
      if (out === undefined) out = collections;  // a script may filter in place
      const kept = [];
      try {
        for (let j = 0; j < sources.length; j++) {
          const field = fieldOf(sources[j]);
          const holder = layout.fused ? out && out[sources[j].keys[0]] : out;
          const list = holder && holder.scenes && holder.scenes[field];
          if (!isArray(list)) {
            return stringify({ error: { message: "preProcessScenes() must return the " +
              "collections object with " + (layout.fused ? sources[j].keys[0] + "." : "") +
              "scenes." + field + " as an array", where: null } });
          }
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
  // With data fusion every source is an array, even under SIMPLE (its one mosaic, or none when
  // the source has no data for the feature); each source has its own mosaicking.
  //
  // Values are converted to the output's sample type as they are stored (round half away from
  // zero, clamp, non-finite to 0; AUTO scales by 255), straight into a TypedArray of that type.
  function compileLoop(layout, evaluatePixel, eager) {
    const single = layout.outputs.length === 1;
    const body = [];
    const names = [];
    let lazyAny = false;
    const q = (s) => stringify(s);
    push(body, "const cursor = { i: 0 };");  // the pixel lazy bands read (one store per pixel)
    for (let j = 0; j < layout.sources.length; j++) {
      const src = layout.sources[j];
      const bands = src.bands;
      const multi = src.mode !== "SIMPLE";
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
        if (layout.fused) {
          // The array the script sees; `samples.<id>.B04` (without [0]) reads its one sample.
          push(body, "const a" + j + " = $oneSample(present[" + j + "] ? s" + j + " : null, " +
            q(mapped(bands, (b) => b[0])) + ");");
        }
      }
      push(names, [src.keys, multi || !layout.fused ? "s" + j : "a" + j, isLazy]);
    }
    for (let k = 0; k < layout.outputs.length; k++) {
      const o = layout.outputs[k];
      push(body, "const out" + k + " = outs[" + k + "];");
      // Used off the hot path only: a bare number's box, and the values of "no result".
      push(body, "const box" + k + " = new $Array(" + o[3] + ");");
      push(body, "const fill" + k + " = []; for (let c = 0; c < " + o[3] + "; c++) $push(fill" +
        k + ", " + (typeof o[5] === "number" ? o[5] : "$Number(" + q(o[5]) + ")") + ");");
    }
    if (layout.fused) {
      const entries = [];
      for (let j = 0; j < names.length; j++) {
        for (let k = 0; k < names[j][0].length; k++) push(entries, q(names[j][0][k]) + ": " +
          names[j][1]);
      }
      push(body, "const samples = {" + join(entries, ", ") + "};");
    } else {
      push(body, "const samples = s0;");
    }
    push(body, "const nothing = {};");
    push(body, "let i = start;");
    push(body, "try {");
    push(body, "for (; i < npix; i++) {");
    if (lazyAny) push(body, "cursor.i = i;");
    for (let j = 0; j < layout.sources.length; j++) {
      const src = layout.sources[j];
      const bands = src.bands;
      const isLazy = names[j][2];
      const fill = (o, off) => {
        for (let m = 0; m < bands.length; m++) {
          if (!isLazy[m]) {
            push(body, o + "[" + q(bands[m][0]) + "] = in" + j + "_" + m + "[" + off + "];");
          }
        }
      };
      if (src.mode !== "SIMPLE" && src.count <= UNROLL_SCENES) {
        // Unrolled per scene: constant offsets, no inner loop (2-3x faster in V8).
        for (let k = 0; k < src.count; k++) {
          push(body, "{ const o = s" + j + "[" + k + "]; const off = i + " + k + " * npix;");
          fill("o", "off");
          push(body, "}");
        }
      } else if (src.mode !== "SIMPLE") {
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
      // Several outputs: an object keyed by output id, or nothing at all (every output gets
      // its no-result values).
      push(body, "const none = r === undefined || r === null;");
      push(body, "if (!none && typeof r !== 'object') { state.pixel = i; return wrongType(r); }");
      push(body, "const rr = none ? nothing : r;");
    }
    for (let k = 0; k < layout.outputs.length; k++) {
      const o = layout.outputs[k];
      const id = q(o[0]);
      const n = o[3];
      const type = o[4];
      const v = "v" + k;
      push(body, "let " + v + " = " + (single ? "r" : "rr[" + id + "]") + ";");
      // The hot path checks one length; anything unusual is sorted out off it.
      push(body, "if (" + v + " == null || " + v + ".length !== " + n + ") {");
      push(body, v + " = unusual(" + v + ", " + id + ", " + n + ", " + single + ", " +
        (single ? "false" : "none") + ", box" + k + ", fill" + k + ");");
      push(body, "if (typeof " + v + " === 'string') { state.pixel = i; return " + v + "; }");
      push(body, "}");
      for (let c = 0; c < n; c++) {
        const x = "x" + k + "_" + c;
        push(body, "let " + x + " = " + v + "[" + c + "];");
        push(body, "if (typeof " + x + " !== 'number') {");
        push(body, x + " = toNumber(" + x + ", " + id + ", " + c + ");");
        push(body, "if (typeof " + x + " === 'string') { state.pixel = i; return " + x + "; }");
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
      "wrongType", "unusual", "toNumber", "evaluatePixel", "lazyBand", "REBUILD",
      "$defineProperty", "$assign", "$create", "$push", "$Array", "$Number", "$oneSample",
      "return function (ins, counts, present, outs, start, npix, state, scenes, inputMetadata, " +
      "customData, outputMetadata) {\n" + join(body, "\n") + "\n};",
    );
    return make(wrongType, unusual, toNumber, evaluatePixel, lazyBand, REBUILD,
      defineProperty, assign, create, push, ArrayCtor, NumberCtor, oneSample);
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

  // A fused SIMPLE source as the script sees it: an array of its one sample (or none). Its own
  // prototype also reads the bands of that sample, so `samples.l2a.B04` keeps working next to
  // the documented `samples.l2a[0].B04`.
  function oneSample(sample, bands) {
    const list = [];
    if (sample !== null) push(list, sample);
    const proto = create(ArrayPrototype);
    for (let m = 0; m < bands.length; m++) {
      const name = bands[m];
      defineProperty(proto, name, { get: function () {
        const first = this[0];
        return first === undefined ? undefined : first[name];
      }, enumerable: false, configurable: true });
    }
    setPrototypeOf(list, proto);
    return list;
  }

  // A result for one output that is not simply an array of `n` values: an array of `n` values
  // to store, or an error (a JSON string). A single output may be returned keyed by its id, a
  // one-band output as a bare number; no result at all gives the no-result values.
  function unusual(v, id, n, single, none, box, fill) {
    if (single && v !== null && typeof v === "object" && typeof v.length !== "number" &&
        id in v) {
      v = v[id];
      if (v !== null && typeof v === "object" && v.length === n) return v;
    }
    if (v === undefined || v === null) {
      if (single || none) return fill;
      return fail("evaluatePixel() result has no output '" + id + "' (it must return an " +
        "object with an array for each output id)");
    }
    if ((typeof v === "number" || typeof v === "boolean") && n === 1) {
      box[0] = v;
      return box;
    }
    return wrongLength(id, n, v, !single);
  }

  // JavaScript's ToNumber for what scripts put in their results besides numbers: booleans,
  // null, undefined and one-element arrays (`[viz.process(v)]`); anything else is an error.
  function toNumber(x, id, c) {
    if (typeof x === "boolean") return x ? 1 : 0;
    if (x === null) return 0;
    if (x === undefined) return NaN;
    if (isArray(x) && x.length === 1 && (typeof x[0] === "number" || typeof x[0] === "boolean")) {
      return typeof x[0] === "number" ? x[0] : (x[0] ? 1 : 0);
    }
    return notNumber(id, c, x);
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
