// Drives ember's Streaming web UI in headless Chromium (Debian's chromium package) against a
// real job: `ember wordcount --ui-port 0`. Fails (exit 1) when the page logs a console error,
// makes a request that leaves localhost, or does not show the run's batches in its charts and
// tables. Writes a screenshot.
//
//   node ui.mjs <path to the ember binary> <screenshot.png>

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [ember, screenshot] = process.argv.slice(2);
if (!ember || !screenshot) {
  console.error("usage: node ui.mjs <ember binary> <screenshot.png>");
  process.exit(2);
}
const problems = [];
const fail = (message) => {
  problems.push(message);
  console.error("FAIL: " + message);
};

const job = spawn(ember, ["wordcount", "--batches", "120", "--interval-ms", "500", "--ui-port", "0"], {
  stdio: ["ignore", "ignore", "pipe"],
});
const address = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("the job printed no UI address")), 30000);
  createInterface({ input: job.stderr }).on("line", (line) => {
    const found = line.match(/^Streaming UI: (http:\/\/127\.0\.0\.1:\d+\/)$/);
    if (found) {
      clearTimeout(timer);
      resolve(found[1]);
    }
  });
  job.on("exit", (code) => reject(new Error("the job exited early: " + code)));
});
console.log("UI at " + address);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--headless=new"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  page.on("console", (msg) => {
    if (msg.type() === "error") fail("console error: " + msg.text());
  });
  page.on("pageerror", (error) => fail("page error: " + error.message));
  page.on("request", (request) => {
    const host = new URL(request.url()).hostname;
    if (host !== "127.0.0.1" && host !== "localhost") fail("request leaving localhost: " + request.url());
  });
  page.on("requestfailed", (request) => fail("request failed: " + request.url()));

  await page.goto(address, { waitUntil: "load" });
  // Wait for the run's batches: at least 5 rows in the batch table.
  await page.waitForFunction(() => document.querySelectorAll("#batches tr.batch").length >= 5, null, { timeout: 60000 });
  // Let the charts refresh once more with those batches.
  await page.waitForTimeout(1500);

  const summary = await page.textContent("#summary");
  const completed = Number((summary.match(/completed batches: (\d+)/) || [])[1]);
  if (!(completed >= 5)) fail("the summary shows no completed batches: " + summary);

  // Every chart is an image that loaded, and each timeline has one point per retained batch.
  const loaded = await page
    .waitForFunction(() => {
      const charts = [...document.querySelectorAll(".charts .chart")];
      return charts.length === 8 && charts.every((c) => c.querySelector("svg") !== null);
    }, null, { timeout: 20000 })
    .then(() => true, () => false);
  if (!loaded) {
    const charts = await page.$$eval(".charts .chart", (all) => all.map((c) => c.id + ": " + (c.querySelector("svg") !== null)));
    fail("the 8 charts are not all drawn: " + charts.join(", "));
  }
  const points = await page.evaluate(async () => {
    const svg = await (await fetch("/charts/total_delay-timeline.svg")).text();
    const stats = await (await fetch("/api/v1/streaming/statistics")).json();
    return { circles: (svg.match(/<circle/g) || []).length, retained: stats.numRetainedCompletedBatches };
  });
  if (points.circles < 5 || points.circles > points.retained + 2) {
    fail("the total delay timeline has " + points.circles + " points for " + points.retained + " batches");
  }

  // The receivers table shows the socket receiver, active.
  const receiver = await page.textContent("#receivers");
  if (!/socket_text_stream\(127\.0\.0\.1:\d+\)\s*yes/.test(receiver)) fail("no active receiver shown: " + receiver);

  // Drill down into a batch: its output operation is listed.
  await page.click("#batches tr.batch:nth-child(3)");
  await page.waitForSelector("#detail table", { timeout: 10000 });
  const detail = await page.textContent("#detail");
  if (!detail.includes("print#")) fail("the batch detail does not list the print output: " + detail);

  await page.screenshot({ path: screenshot, fullPage: true });
  console.log("screenshot: " + screenshot + "; " + completed + " batches completed, " + points.circles + " points");
} finally {
  await browser.close();
  job.kill("SIGINT");
}
if (problems.length > 0) {
  console.error(problems.length + " problem(s)");
  process.exit(1);
}
console.log("UI test: ok");
