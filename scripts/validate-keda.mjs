// Validates KEDA objects against the KEDA CRD schemas of the npm package
// @kubernetes-models/keda (kubernetes-validate knows only the built-in kinds).
//
//   node scripts/validate-keda.mjs <dir holding node_modules/@kubernetes-models/keda> < objects.json
//
// stdin: a JSON array of objects (the KEDA documents of the manifests, as they are applied).
// Prints one line per object; exits 1 naming the object and the field when one is invalid.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modelsDir = process.argv[2];
if (!modelsDir) {
  console.error("usage: validate-keda.mjs <models dir> < objects.json");
  process.exit(2);
}
const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = false;
for (const obj of objects) {
  const [group, version] = String(obj.apiVersion).split("/");
  const name = `${obj.kind}/${obj.metadata?.name ?? "?"}`;
  const file = join(modelsDir, "node_modules/@kubernetes-models/keda", group, version, `${obj.kind}.js`);
  let Model;
  try {
    Model = (await import(pathToFileURL(file).href))[obj.kind];
  } catch (e) {
    console.error(`FAIL ${name}: no KEDA model for ${obj.apiVersion} ${obj.kind} (${e.message})`);
    failed = true;
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(`ok   ${name}`);
  } catch (e) {
    console.error(`FAIL ${name}: ${e.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
