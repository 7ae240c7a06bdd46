#!/usr/bin/env node
// Import rule check: fails on an import cycle or on an import that goes up the layer order.
// Every import counts (type-only ones too): the layers are one-way for readers, not just at run time.
// Usage: node scripts/check-imports.mjs [--graph]   (exit 1 and a list of violations when broken)
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join, dirname, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE_DIRS = ['native', 'src', 'bdev', 'targets', 'bench'];

// The layers, lowest first. A file may import only from its own layer or a lower one.
// The first matching prefix wins, so list the specific paths before their directory.
export const LAYERS = [
  { name: 'native', paths: ['native/'] },
  { name: 'core', paths: ['src/memory/', 'bdev/types.ts', 'bdev/bdev_io.ts', 'src/cpumask.ts'] },
  {
    name: 'framework',
    paths: [
      'src/reactor/', 'src/framework/', 'src/log.ts',
      'src/rpc/server.ts', 'src/rpc/dispatch.ts', 'src/rpc/params.ts', 'src/rpc/errors.ts',
      'src/rpc/registry.ts', 'src/rpc/splitter.ts', 'src/rpc/socket-path.ts',
    ],
  },
  { name: 'bdev', paths: ['bdev/'] },
  { name: 'transport', paths: ['src/virtio/', 'src/vhost/', 'src/vfio_user/'] },
  { name: 'target', paths: ['targets/'] },
  { name: 'app', paths: ['src/'] },
  { name: 'tools', paths: ['bench/'] },   // benchmarks drive the whole daemon
];

export function layerOf(file) {
  for (let i = 0; i < LAYERS.length; i++) {
    if (LAYERS[i].paths.some((p) => (p.endsWith('/') ? file.startsWith(p) : file === p))) return i;
  }
  return -1;
}

function listTs(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listTs(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

// Static `import ... from 'x'`, `export ... from 'x'`, side-effect `import 'x'` and `import('x')`.
const IMPORT_RE = /(?:^|[;\s])(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/gm;

function stripComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
}

export function buildGraph(root = ROOT) {
  const files = SOURCE_DIRS.filter((d) => existsSync(join(root, d))).flatMap((d) => listTs(join(root, d)));
  const graph = new Map();
  for (const abs of files) {
    const file = relative(root, abs).split(sep).join('/');
    const deps = [];
    const text = stripComments(readFileSync(abs, 'utf8'));
    for (const m of text.matchAll(IMPORT_RE)) {
      const spec = m[1] ?? m[2];
      if (!spec.startsWith('.')) continue; // packages and node: builtins
      const target = relative(root, resolve(dirname(abs), spec.replace(/\.js$/, '.ts'))).split(sep).join('/');
      if (SOURCE_DIRS.some((d) => target.startsWith(d + '/'))) deps.push(target); // test/ helpers are outside the layers
    }
    graph.set(file, deps);
  }
  return graph;
}

export function findViolations(graph) {
  const problems = [];
  for (const [file, deps] of graph) {
    const from = layerOf(file);
    if (from < 0) problems.push(`${file}: in no layer (add it to LAYERS in scripts/check-imports.mjs)`);
    for (const dep of deps) {
      if (!graph.has(dep)) { problems.push(`${file}: imports ${dep}, which does not exist`); continue; }
      const to = layerOf(dep);
      if (from >= 0 && to > from) {
        problems.push(`${file} (${LAYERS[from].name}) imports ${dep} (${LAYERS[to].name}): a lower layer must not import a higher one`);
      }
    }
  }
  // Cycles: Tarjan's strongly connected components; every component of more than one file is a cycle.
  let index = 0;
  const idx = new Map(), low = new Map(), onStack = new Set(), stack = [];
  const sccs = [];
  const visit = (v) => {
    idx.set(v, index); low.set(v, index); index++;
    stack.push(v); onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v), low.get(w))); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do { w = stack.pop(); onStack.delete(w); comp.push(w); } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) sccs.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  for (const comp of sccs) problems.push(`import cycle: ${comp.join(' <-> ')}`);
  return problems;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const graph = buildGraph();
  if (process.argv.includes('--graph')) {
    for (const [f, d] of graph) console.log(`${f} [${LAYERS[layerOf(f)]?.name}] -> ${d.join(', ')}`);
  }
  const problems = findViolations(graph);
  if (problems.length) {
    console.error(`check-imports: ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
    console.error('Move the code to the right layer, or invert the dependency (an interface or registration in the lower layer).');
    process.exit(1);
  }
  console.log(`check-imports: ${graph.size} files, layers ${LAYERS.map((l) => l.name).join(' -> ')}, no cycle, no upward import`);
}
