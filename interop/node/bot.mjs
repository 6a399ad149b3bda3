// A trading bot in another language, as the README tells one to be written: nats.js + ajv (strict).
//
//   node bot.mjs NATS_URL SCHEMA.json
//
// 1. catches up from the stream sniper_signals (the newest signal of every asset at once),
// 2. receives live signals on sniper.signal.*,
// 3. sends the README's flag command {"flag": "ETF", "enabled": false, ...} to sniper.cmd.flags,
// 4. waits for a live signal that shows etf=disabled,
// 5. reads the ETF key of the bucket sniper_flags,
// validating every message it sends or receives against `sniper schema` with ajv in strict mode.
// Prints one JSON line with what it saw; exits 1 on any invalid message.
import { readFileSync } from "node:fs";
import { connect, consumerOpts, JSONCodec, StringCodec } from "nats";
import Ajv2020 from "ajv/dist/2020.js";

const [url, schemaPath] = process.argv.slice(2);
const schema = JSON.parse(readFileSync(schemaPath, "utf8"));
const ajv = new Ajv2020({ strict: true });
ajv.addSchema(schema);
const invalid = [];
function check(name, value) {
  const validate = ajv.getSchema(`${schema.$id}#/$defs/${name}`);
  if (!validate(value)) invalid.push({ name, errors: validate.errors });
  return value;
}

const jc = JSONCodec();
const sc = StringCodec();
const nc = await connect({ servers: url, name: "node-bot" });
const out = { caught_up: {}, live: 0, command: null, disabled_after_ms: null, kv: null };

// 1. late join: the newest signal per asset (the README's nats.js snippet)
const opts = consumerOpts().orderedConsumer().deliverLastPerSubject().bindStream("sniper_signals");
const history = await nc.jetstream().subscribe("sniper.signal.*", opts);
for await (const m of history) {
  const signal = check("Signal", JSON.parse(sc.decode(m.data)));
  out.caught_up[signal.asset] = signal.cycle;
  if (m.info.pending === 0) break;
}
history.unsubscribe();

// 2. live signals
const live = nc.subscribe("sniper.signal.*");
const iter = live[Symbol.asyncIterator]();
async function nextSignal() {
  const { value } = await iter.next();
  out.live += 1;
  return check("Signal", jc.decode(value.data));
}
await nextSignal();

// 3. the documented command
const command = check("FlagCommand", { flag: "ETF", enabled: false, why: "node bot test", who: "node-bot" });
const sent = Date.now();
const reply = check("FlagReply", jc.decode((await nc.request("sniper.cmd.flags", jc.encode(command), { timeout: 5000 })).data));
out.command = { ok: reply.ok, etf: reply.flags.ETF };

// 4. the next signals show it
for (let i = 0; i < 20; i++) {
  const signal = await nextSignal();
  if (signal.modules.etf && signal.modules.etf.status === "disabled") {
    out.disabled_after_ms = Date.now() - sent;
    break;
  }
}
live.unsubscribe();

// 5. the bucket holds the change
const kv = await nc.jetstream().views.kv("sniper_flags", { bindOnly: true });
const entry = await kv.get("ETF");
const stored = check("FlagChanged", JSON.parse(sc.decode(entry.value)));
out.kv = { enabled: stored.enabled, who: stored.who, revision: entry.revision };

await nc.close();
out.invalid = invalid;
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(invalid.length ? 1 : 0);
