// Parse an AsyncAPI document with the official parser, as a tool in the AsyncAPI ecosystem would.
//
//   node asyncapi.mjs docs/asyncapi.yaml
//
// Prints one JSON line: {"errors": [...], "warnings": N, "channels": [...], "operations": [...]};
// exits 1 when the parser reports an error (diagnostic severity 0).
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], "utf8"));
const errors = diagnostics.filter((d) => d.severity === 0).map((d) => `${d.path.join("/")}: ${d.message}`);
const out = {
  errors,
  warnings: diagnostics.filter((d) => d.severity === 1).map((d) => `${d.path.join("/")}: ${d.message}`),
  channels: document ? document.channels().all().map((c) => c.address()) : [],
  operations: document ? document.operations().all().map((o) => o.id()) : [],
};
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(errors.length ? 1 : 0);
