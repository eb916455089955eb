// Runs the firmware test suite on the MicroPython WebAssembly port (npm package pinned in
// firmware/tools/package.json). Usage: node tests/firmware/run_wasm.mjs [heap_kb] [timeout_s]
// The package's own CLI always exits 0; this runner exits 1 when a test fails or Python raises,
// 2 if the runtime is missing, 3 when the suite hangs past the timeout (the worker is killed).
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..", "..");
const pkg = join(root, "firmware", "tools", "node_modules", "@micropython",
  "micropython-webassembly-pyscript", "micropython.mjs");

if (isMainThread) {
  const heapKb = parseInt(process.argv[2] || "1024", 10);
  const timeoutS = parseInt(process.argv[3] || "300", 10);
  if (!existsSync(pkg)) {
    console.error(`missing ${pkg}: run make setup (npm ci in firmware/tools)`);
    process.exit(2);
  }
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { heapKb } });
  const timer = setTimeout(() => {
    console.error(`wasm suite still running after ${timeoutS} s: killed`);
    worker.terminate().then(() => process.exit(3));
  }, timeoutS * 1000);
  worker.on("message", (msg) => {
    if (msg.line !== undefined) {
      process.stdout.write(msg.line + "\n");
      return;
    }
    clearTimeout(timer);
    worker.terminate().then(() => process.exit(msg.failures === 0 ? 0 : 1));
  });
  worker.on("error", (err) => {
    clearTimeout(timer);
    console.error("wasm worker error:", err);
    process.exit(1);
  });
} else {
  const { loadMicroPython } = await import(pathToFileURL(pkg).href);
  const mp = await loadMicroPython({
    heapsize: workerData.heapKb * 1024,
    // Lines go through the message channel, in order with the final result (worker stdout
    // is asynchronous and would be lost when the worker is terminated).
    stdout: (line) => parentPort.postMessage({ line }),
    linebuffer: true,
  });
  const dirs = [join(root, "firmware"), join(here, "fakes"), join(here, "mp")];
  for (const dir of dirs) {
    for (const name of readdirSync(dir)) {
      if (name.endsWith(".py")) {
        mp.FS.writeFile("/" + name, readFileSync(join(dir, name)));
      }
    }
  }
  mp.FS.writeFile("/link-vectors.json", readFileSync(join(root, "docs", "link-vectors.json")));
  let failures = -1;
  try {
    await mp.runPythonAsync(
      "import asyncio, mptest\n" +
      "_failures = await asyncio.create_task(mptest.main())\n");
    failures = mp.globals.get("_failures");
  } catch (err) {
    parentPort.postMessage({ line: "python error: " + err.message });
  }
  parentPort.postMessage({ failures });
}
