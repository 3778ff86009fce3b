// The Node.js peer of deploybot's ingest benchmark: @octokit/webhooks' own Node
// middleware (what Probot apps run), verifying `X-Hub-Signature-256` and parsing the
// payload, answering 200. It stores nothing. PORT and WEBHOOK_SECRET come from the
// environment; bench/run.sh (through benches/ingest.rs) starts and stops it.
import { createServer } from "node:http";
import { Webhooks, createNodeMiddleware } from "@octokit/webhooks";

const secret = process.env.WEBHOOK_SECRET;
if (!secret) {
  console.error("set WEBHOOK_SECRET");
  process.exit(2);
}
const port = Number(process.env.PORT || 3000);

const webhooks = new Webhooks({ secret });
let received = 0;
webhooks.on("push", () => {
  received += 1;
});
webhooks.onError((error) => {
  console.error(`webhook error: ${error.message}`);
});

const middleware = createNodeMiddleware(webhooks, { path: "/webhooks/github" });
createServer((request, response) => {
  middleware(request, response, () => {
    response.writeHead(404).end();
  });
}).listen(port, "127.0.0.1", () => {
  console.error(`node peer listening on 127.0.0.1:${port}`);
});

process.on("SIGTERM", () => {
  console.error(`node peer: ${received} push events received`);
  process.exit(0);
});
