#!/usr/bin/env node
// Runs an ONNX model with ONNX Runtime (CPU), the second reference and speed
// anchor for candor.
//
//   node ort_run.js MODEL.onnx INPUT.npy OUTPUT.npy [--threads N] [--runs R]
//
// Feeds INPUT.npy (float32; float64 is converted) to the model's first input,
// writes the first output as a float32 .npy. With --runs R it times R runs
// after --warmup untimed runs (default 1) and prints one JSON line on stdout:
//   {"runtime":"onnxruntime-node","version":..,"threads":N,"runs":R,
//    "median_ms":..,"min_ms":..,"cpu_ms_per_run":..,"max_rss_kib":..}
// cpu_ms_per_run is the process's user+system CPU time over the timed runs.
// max_rss_kib is process.resourceUsage().maxRSS (kibibytes, whole process).
// Setup: cd bench && npm install --ignore-scripts onnxruntime-node
'use strict';

const fs = require('fs');

function usage(msg) {
  if (msg) process.stderr.write(`ort_run: ${msg}\n`);
  process.stderr.write(
    'usage: node ort_run.js MODEL.onnx INPUT.npy OUTPUT.npy [--threads N] [--runs R] [--warmup W]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const pos = [];
  const opt = { threads: 1, runs: 0, warmup: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--threads' || a === '--runs' || a === '--warmup') {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < (a === '--threads' ? 1 : 0)) usage(`bad value for ${a}`);
      opt[a.slice(2)] = v;
    } else if (a === '-h' || a === '--help') {
      usage();
    } else if (a.startsWith('--')) {
      usage(`unknown option ${a}`);
    } else {
      pos.push(a);
    }
  }
  if (pos.length !== 3) usage('expected MODEL INPUT OUTPUT');
  [opt.model, opt.input, opt.output] = pos;
  return opt;
}

// Parses a little-endian, C-order .npy (format 1.x, 2.x or 3.x) holding
// float32 or float64; returns {dims, data: Float32Array}.
function readNpy(path) {
  const buf = fs.readFileSync(path);
  if (buf.length < 10 || buf.readUInt8(0) !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY') {
    throw new Error(`${path}: not a .npy file`);
  }
  const major = buf.readUInt8(6);
  const hlenSize = major === 1 ? 2 : 4;
  const hlen = hlenSize === 2 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = 8 + hlenSize + hlen;
  const header = buf.toString('latin1', 8 + hlenSize, start);
  const descr = /'descr':\s*'([^']+)'/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) throw new Error(`${path}: malformed header ${header}`);
  if (fortran[1] === 'True') throw new Error(`${path}: Fortran order not supported`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  const body = buf.subarray(start);
  let data;
  if (descr[1] === '<f4') {
    if (body.length < count * 4) throw new Error(`${path}: truncated data`);
    data = new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = body.readFloatLE(i * 4);
  } else if (descr[1] === '<f8') {
    if (body.length < count * 8) throw new Error(`${path}: truncated data`);
    data = new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = body.readDoubleLE(i * 8);
  } else {
    throw new Error(`${path}: dtype ${descr[1]} not supported (need <f4 or <f8)`);
  }
  return { dims, data };
}

// Writes a float32 .npy, format 1.0, header padded to a 64-byte boundary.
function writeNpy(path, dims, data) {
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  const unpadded = 10 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.writeUInt8(0x93, 0);
  pre.write('NUMPY', 1, 'latin1');
  pre.writeUInt8(1, 6);
  pre.writeUInt8(0, 7);
  pre.writeUInt16LE(header.length, 8);
  const body = Buffer.alloc(data.length * 4);
  for (let i = 0; i < data.length; i++) body.writeFloatLE(data[i], i * 4);
  fs.writeFileSync(path, Buffer.concat([pre, Buffer.from(header, 'latin1'), body]));
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    process.stderr.write('ort_run: onnxruntime-node missing; run: cd bench && npm install --ignore-scripts onnxruntime-node\n');
    process.exit(3);
  }
  const session = await ort.InferenceSession.create(opt.model, {
    intraOpNumThreads: opt.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const x = readNpy(opt.input);
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', x.data, x.dims) };
  const outName = session.outputNames[0];
  let result = await session.run(feeds);
  for (let r = 1; r < opt.warmup; r++) result = await session.run(feeds);
  const times = [];
  const cpu0 = process.cpuUsage();
  for (let r = 0; r < opt.runs; r++) {
    const t0 = process.hrtime.bigint();
    result = await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const cpu = process.cpuUsage(cpu0);
  const y = result[outName];
  if (y.type !== 'float32') throw new Error(`output ${outName} has type ${y.type}, expected float32`);
  writeNpy(opt.output, y.dims.map(Number), y.data);
  if (opt.runs > 0) {
    let version = null;
    try { version = require('onnxruntime-node/package.json').version; } catch (e) { /* optional */ }
    process.stdout.write(JSON.stringify({
      runtime: 'onnxruntime-node', version, model: opt.model, threads: opt.threads,
      runs: opt.runs, median_ms: median(times), min_ms: Math.min(...times),
      cpu_ms_per_run: (cpu.user + cpu.system) / 1000 / opt.runs,
      max_rss_kib: process.resourceUsage().maxRSS,
    }) + '\n');
  }
}

main().catch((e) => {
  process.stderr.write(`ort_run: ${e.message}\n`);
  process.exit(1);
});
