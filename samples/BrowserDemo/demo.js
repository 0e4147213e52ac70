// Runs a sampler exported by Microsoft.ML.Diffusion (sampler.ExportOnnx, or samples/OnnxExport) with onnxruntime-web and
// draws a grid: `count` images of the chosen class, image i from the seed DeriveSeed(seed, i) — the images
// DiffusionSampler.Generate(count, { Seed = seed }, label) gives in .NET. Query parameters preset the form
// (model, class, seed, count, guidance, scale) and auto=1 generates at once. When done, window.demoState is "done" and
// window.demoPixels holds the planar pixels (N·C·H·W bytes); on failure window.demoState starts with "error".
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const status = (text) => { $('status').textContent = text; };
  window.demoState = 'loading';

  // The model's settings from the ONNX file's metadata_props (ModelProto field 14: key = 1, value = 2).
  function readMetadata(bytes) {
    let at = 0;
    const varint = () => {
      let value = 0, shift = 0, byte;
      do {
        byte = bytes[at++];
        value += (byte & 0x7f) * 2 ** shift;
        shift += 7;
      } while (byte & 0x80);
      return value;
    };
    const text = (start, end) => new TextDecoder().decode(bytes.subarray(start, end));
    const metadata = {};
    while (at < bytes.length) {
      const key = varint();
      const field = Math.floor(key / 8), wire = key % 8;
      if (wire === 0) { varint(); continue; }
      if (wire === 1) { at += 8; continue; }
      if (wire === 5) { at += 4; continue; }
      if (wire !== 2) { throw new Error(`not an ONNX file (wire type ${wire} at byte ${at})`); }
      const length = varint(), end = at + length;
      if (field === 14) {
        let name = '', value = '';
        while (at < end) {
          const entryKey = varint(), entryLength = varint();
          if (entryKey === 10) { name = text(at, at + entryLength); }
          if (entryKey === 18) { value = text(at, at + entryLength); }
          at += entryLength;
        }
        metadata[name] = value;
      }
      at = end;
    }
    return metadata;
  }

  let loaded = null; // { url, session, channels, height, width, classCount }

  async function load(url) {
    if (loaded && loaded.url === url) {
      return loaded;
    }
    status(`Loading ${url}…`);
    const response = await fetch(url);
    if (!response.ok) {
      throw new Error(`${url}: HTTP ${response.status}`);
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    const metadata = readMetadata(bytes);
    if (metadata['mldiffusion.content'] !== 'sampler') {
      throw new Error(`${url} is not a Microsoft.ML.Diffusion sampler export (content: ${metadata['mldiffusion.content'] ?? 'none'})`);
    }
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
    const number = (key) => Number.parseInt(metadata[`mldiffusion.${key}`], 10);
    const names = metadata['mldiffusion.class_names'] ? JSON.parse(metadata['mldiffusion.class_names']) : null;
    loaded = { url, session, channels: number('channels'), height: number('height'), width: number('width'), classCount: number('class_count') || 0, names };
    const select = $('class');
    select.innerHTML = '';
    for (let c = 0; c <= loaded.classCount; c++) {
      const option = document.createElement('option');
      option.value = String(c);
      option.textContent = c === loaded.classCount ? 'no label' : `${c}${names && names[c] ? `: ${names[c]}` : ''}`;
      select.appendChild(option);
    }
    return loaded;
  }

  async function generate() {
    window.demoState = 'running';
    const model = await load($('model').value);
    const count = Number.parseInt($('count').value, 10);
    const scale = Number.parseInt($('scale').value, 10);
    const label = Number.parseInt($('class').value || String(model.classCount), 10);
    const guidance = Number.parseFloat($('guidance').value);
    const runSeed = BigInt($('seed').value);
    const { channels, height, width } = model;
    const size = channels * height * width;
    const seeds = Array.from({ length: count }, (_, i) => TorchNoise.deriveSeed(runSeed, i));
    status(`Generating ${count} images…`);
    const started = performance.now();
    const feeds = { noise: new ort.Tensor('float32', TorchNoise.batch(seeds, size), [count, channels, height, width]) };
    if (model.session.inputNames.includes('class')) {
      feeds.class = new ort.Tensor('int64', BigInt64Array.from(seeds, () => BigInt(label)), [count]);
      feeds.guidance = new ort.Tensor('float32', Float32Array.from(seeds, () => guidance), [count]);
    }
    const results = await model.session.run(feeds, ['pixels']);
    const pixels = results.pixels.data;
    draw(pixels, count, channels, height, width, scale);
    window.demoPixels = Array.from(pixels);
    status(`${count} images of ${channels}×${height}×${width} in ${((performance.now() - started) / 1000).toFixed(2)} s (onnxruntime-web ${ort.env.versions.common}, WebAssembly).`);
    window.demoState = 'done';
  }

  // One row of images, each pixel a scale×scale block, 2 black pixels between images.
  function draw(pixels, count, channels, height, width, scale) {
    const gap = 2;
    const canvas = $('grid');
    canvas.width = count * width * scale + (count - 1) * gap;
    canvas.height = height * scale;
    const context = canvas.getContext('2d');
    const image = context.createImageData(canvas.width, canvas.height);
    image.data.fill(0);
    const plane = height * width;
    for (let n = 0; n < count; n++) {
      const left = n * (width * scale + gap);
      for (let y = 0; y < height * scale; y++) {
        for (let x = 0; x < width * scale; x++) {
          const source = n * channels * plane + Math.floor(y / scale) * width + Math.floor(x / scale);
          const r = pixels[source];
          const g = channels === 3 ? pixels[source + plane] : r;
          const b = channels === 3 ? pixels[source + 2 * plane] : r;
          const target = 4 * (y * canvas.width + left + x);
          image.data[target] = r;
          image.data[target + 1] = g;
          image.data[target + 2] = b;
        }
      }
    }
    for (let i = 3; i < image.data.length; i += 4) {
      image.data[i] = 255;
    }
    context.putImageData(image, 0, 0);
  }

  async function run() {
    try {
      await generate();
    } catch (error) {
      window.demoState = `error: ${error && error.message ? error.message : error}`;
      status(window.demoState);
    }
  }

  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = new URL('node_modules/onnxruntime-web/dist/', document.baseURI).href;
  const query = new URLSearchParams(location.search);
  for (const key of ['model', 'seed', 'count', 'guidance', 'scale']) {
    if (query.has(key)) {
      $(key).value = query.get(key);
    }
  }
  $('generate').addEventListener('click', run);
  load($('model').value).then(() => {
    if (query.has('class')) {
      $('class').value = query.get('class');
    }
    window.demoState = 'ready';
    status('Ready: choose a class and a seed, then Generate.');
    if (query.get('auto') === '1') {
      run();
    }
  }).catch((error) => {
    window.demoState = `error: ${error.message}`;
    status(`${window.demoState} — export a model with: dotnet run -c Release --project samples/OnnxExport -- export out/model.zip samples/BrowserDemo/model.onnx`);
  });
})();
