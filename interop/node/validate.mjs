// Validate JSON messages against sniper's schema with ajv in strict mode, as a bot in Node would.
//
//   node validate.mjs SCHEMA.json < lines
//
// Each input line is {"ref": "Signal" | null, "instance": <message>}; each output line is
// {"valid": true|false, "errors": [{"path": "/confidence", "message": "..."}]}.
// ajv compiles the schema in strict mode (its default): an unknown keyword, such as OpenAPI's
// "discriminator", fails the compile and the process exits 2 with the reason.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import Ajv2020 from "ajv/dist/2020.js";

const schema = JSON.parse(readFileSync(process.argv[2], "utf8"));
const ajv = new Ajv2020({ strict: true, allErrors: false });
let root;
try {
  root = ajv.compile(schema);
} catch (err) {
  console.error(`schema refused by ajv strict mode: ${err.message}`);
  process.exit(2);
}
const byName = new Map();
function validator(ref) {
  if (ref === null) return root;
  if (!byName.has(ref)) byName.set(ref, ajv.getSchema(`${schema.$id}#/$defs/${ref}`));
  const found = byName.get(ref);
  if (!found) throw new Error(`no definition ${ref}`);
  return found;
}
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const { ref, instance } = JSON.parse(line);
  const check = validator(ref);
  const valid = check(instance);
  const errors = (check.errors ?? []).map((e) => ({ path: e.instancePath, message: e.message }));
  process.stdout.write(JSON.stringify({ valid, errors }) + "\n");
}
