// The chat page in a real browser: headless Chromium driven by
// playwright-core, two pages and an nc-like line client in one room.
// Run by tests/browser.rs, which starts the server and tells this script
// where things are through the environment:
//   NODE_MODULES  the node_modules directory holding playwright-core
//   CHROMIUM      the browser to drive (/usr/bin/chromium)
//   PAGE_URL      the websocket listener's page, http://127.0.0.1:PORT/
//   LINE_ADDR     the line listener, 127.0.0.1:PORT
//   SCREENSHOT    where to keep the screenshot
// It prints RESTART on stdout when the server should go away and come
// back on the same ports, and waits for a line on stdin saying it has.

import { createRequire } from "node:module";
import net from "node:net";
import readline from "node:readline";

const require = createRequire(process.env.NODE_MODULES + "/");
const { chromium } = require("playwright-core");

const STEP = 10_000;
const log = (...words) => console.error("browser test:", ...words);

/// An nc-like client: lines in, lines out.
function lineClient(addr, name) {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
  const socket = net.connect(port, host);
  const lines = [];
  const waiters = [];
  let pending = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk) => {
    pending += chunk;
    let nl;
    while ((nl = pending.indexOf("\n")) >= 0) {
      lines.push(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
    for (const w of waiters.splice(0)) w();
  });
  socket.write(name + "\n");
  return {
    say: (text) => socket.write(text + "\n"),
    lines,
    async waitFor(pred, what) {
      const deadline = Date.now() + STEP;
      while (!lines.some(pred)) {
        if (Date.now() > deadline) throw new Error(`nc: no line ${what}; got ${JSON.stringify(lines)}`);
        await new Promise((resolve) => { waiters.push(resolve); setTimeout(resolve, 100); });
      }
    },
    close: () => socket.end(),
  };
}

async function join(page, name) {
  await page.goto(process.env.PAGE_URL);
  await page.fill("#name", name);
  await page.press("#name", "Enter");
  await page.waitForSelector("#room:not([hidden])", { timeout: STEP });
}

/// Waits until the page's log has a line whose text contains `words`.
async function logHas(page, words) {
  await page.waitForFunction(
    (w) => [...document.querySelectorAll("#log li")].some((li) => li.textContent.includes(w)),
    words,
    { timeout: STEP },
  );
}

async function rosterIs(page, names) {
  await page.waitForFunction(
    (want) => JSON.stringify([...document.querySelectorAll("#roster li")].map((li) => li.textContent)) === JSON.stringify(want),
    names,
    { timeout: STEP },
  );
}

const stdin = readline.createInterface({ input: process.stdin });
const stdinLines = stdin[Symbol.asyncIterator]();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 900, height: 560 } });
  const dian = await context.newPage();
  const rafi = await context.newPage();
  const errors = [];
  for (const page of [dian, rafi]) {
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("dialog", (d) => { errors.push("a dialog opened: " + d.message()); d.dismiss(); });
  }

  const nc = lineClient(process.env.LINE_ADDR, "nc-user");
  await nc.waitFor((l) => l.startsWith("* welcome nc-user"), "welcoming nc-user");

  await join(dian, "Dian");
  await logHas(dian, "welcome Dian, 2 online");
  await nc.waitFor((l) => l === "* Dian joined (2 online)", "saying Dian joined");
  await join(rafi, "Rafi");
  await logHas(dian, "Rafi joined (3 online)");
  await rosterIs(dian, ["Dian", "Rafi", "nc-user"]);
  await rosterIs(rafi, ["Dian", "Rafi", "nc-user"]);
  log("two pages and nc in the room");

  // A taken name is said so, on a third page.
  const late = await context.newPage();
  await late.goto(process.env.PAGE_URL);
  await late.fill("#name", "Dian");
  await late.click("#join-button");
  await late.waitForFunction(() => document.querySelector("#join-error").textContent.includes("name is taken"), null, { timeout: STEP });
  await late.close();

  // Enter sends; everyone else sees it.
  await dian.fill("#text", "hello from the browser");
  await dian.press("#text", "Enter");
  await logHas(rafi, "hello from the browser");
  await nc.waitFor((l) => l === "[Dian] hello from the browser", "with Dian's message");
  nc.say("hi browsers, from nc");
  await logHas(dian, "hi browsers, from nc");
  await logHas(rafi, "hi browsers, from nc");

  // What a peer sends is shown as text, never run as HTML.
  const hostile = `<img src=x onerror="document.title='owned'"><b>bold?</b>`;
  nc.say(hostile);
  await logHas(dian, hostile);
  const injected = await dian.evaluate(() => document.querySelectorAll("#log img, #log b").length);
  if (injected !== 0 || (await dian.title()) === "owned") throw new Error("a message was rendered as HTML");
  await rafi.fill("#text", "/who");
  await rafi.press("#text", "Enter");
  await rafi.fill("#text", "and a reply from Rafi");
  await rafi.press("#text", "Enter");
  await logHas(dian, "and a reply from Rafi");
  await dian.screenshot({ path: process.env.SCREENSHOT });
  log("screenshot at", process.env.SCREENSHOT);

  // Readable on a phone: no sideways scrolling at 360 px.
  await dian.setViewportSize({ width: 360, height: 640 });
  const overflow = await dian.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) throw new Error(`the page is ${overflow} px wider than a phone's screen`);
  await dian.setViewportSize({ width: 900, height: 560 });

  // Leaving is seen by the others.
  await rafi.close();
  await logHas(dian, "Rafi left (2 online)");
  await rosterIs(dian, ["Dian", "nc-user"]);
  await nc.waitFor((l) => l === "* Rafi left (2 online)", "saying Rafi left");
  nc.close();
  await logHas(dian, "nc-user left (1 online)");

  // A drop: the server goes away and comes back; the page rejoins.
  console.log("RESTART");
  const answer = await stdinLines.next();
  if (answer.done || answer.value.trim() !== "RESTARTED") throw new Error("the server did not come back");
  await logHas(dian, "reconnecting");
  await dian.waitForFunction(
    () => [...document.querySelectorAll("#log li")].filter((li) => li.textContent.startsWith("welcome Dian")).length === 2,
    null,
    { timeout: STEP * 2 },
  );
  await rosterIs(dian, ["Dian"]);
  await dian.fill("#text", "back again");
  await dian.press("#text", "Enter");
  log("rejoined after the server came back");

  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  console.log("OK");
} catch (e) {
  failed = true;
  console.error("browser test failed:", e && e.stack || e);
} finally {
  await browser.close();
  stdin.close();
}
process.exit(failed ? 1 : 0);
