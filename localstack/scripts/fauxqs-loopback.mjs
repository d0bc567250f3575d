// fauxqs-loopback.mjs starts fauxqs (SQS + S3 + SNS on one port) bound to
// 127.0.0.1 only: fauxqs' own CLI listens on 0.0.0.0 and has no bind-address
// option. It listens on the port named by FAUXQS_PORT (0, the default here,
// lets the OS pick one) and, once listening, prints one line,
// "LULL_LISTENING 127.0.0.1:PORT", which emulators.sh waits for.
//
//   node fauxqs-loopback.mjs PATH/TO/node_modules/fauxqs
//
// Queue URLs: fauxqs' CLI names queues http://sqs.REGION.localhost:PORT/...
// (FAUXQS_HOST, default "localhost"), a host that does not resolve everywhere.
// Here, unless FAUXQS_HOST is set, they carry the host the client used instead:
// http://127.0.0.1:PORT/000000000000/NAME. fauxqs looks queues up by the exact
// URL string, so use the QueueUrl that CreateQueue/GetQueueUrl return (or build
// exactly that form). FAUXQS_LOGGER=true logs every request.
// When LULL_EMULATORS_WATCH_PID names a process, the server exits once that
// process is gone, so a killed test runner leaves no orphan behind.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node fauxqs-loopback.mjs PATH/TO/node_modules/fauxqs");
  process.exit(2);
}
const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
const { buildApp } = await import(pathToFileURL(join(dir, pkg.main ?? "dist/app.js")).href);
if (typeof buildApp !== "function") {
  console.error(`fauxqs ${pkg.version} exports no buildApp; fauxqs-loopback.mjs needs updating`);
  process.exit(2);
}
const { SqsStore } = await import(pathToFileURL(join(dir, "dist/sqs/sqsStore.js")).href);
const sqsStore = new SqsStore();
sqsStore.host = process.env.FAUXQS_HOST ?? "";
const app = buildApp({
  logger: process.env.FAUXQS_LOGGER === "true" ? true : { level: "warn" },
  defaultRegion: process.env.FAUXQS_DEFAULT_REGION,
  stores: { sqsStore },
});
const address = await app.listen({ port: Number(process.env.FAUXQS_PORT ?? 0), host: "127.0.0.1" });
console.log(`LULL_LISTENING ${new URL(address).host}`);

// State is in memory only, so there is nothing to flush: exit at once rather
// than wait for fastify to drain connections (long polls hold them up to 20s).
for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"]) {
  process.on(sig, () => process.exit(0));
}

const watch = Number(process.env.LULL_EMULATORS_WATCH_PID || 0);
if (watch > 0) {
  setInterval(() => {
    try {
      process.kill(watch, 0);
    } catch (err) {
      if (err.code === "ESRCH") {
        console.error(`fauxqs-loopback: process ${watch} is gone; exiting`);
        process.exit(0);
      }
    }
  }, 2000).unref();
}
