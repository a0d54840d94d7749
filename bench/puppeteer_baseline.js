// The puppeteer-screen-recorder reference recorder (CDP screencast), for
// bench/frame_timing.py --recorder puppeteer. Installed from npm by bench/puppeteer_baseline.sh;
// uses Debian's Chromium and ffmpeg with pagecast's encoder settings. No sound.
// Usage: node puppeteer_baseline.js URL WIDTH HEIGHT FPS SECONDS OUT.mp4
const puppeteer = require('puppeteer');
const { PuppeteerScreenRecorder } = require('puppeteer-screen-recorder');

const [url, w, h, fps, seconds, out] = process.argv.slice(2);
const width = Number(w), height = Number(h);

(async () => {
  const browser = await puppeteer.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    defaultViewport: { width, height },
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
      '--hide-scrollbars', `--window-size=${width},${height}`],
  });
  const page = await browser.newPage();
  await page.goto(url, { waitUntil: 'load' });
  const recorder = new PuppeteerScreenRecorder(page, {
    fps: Number(fps),
    ffmpeg_Path: '/usr/bin/ffmpeg',
    videoFrame: { width, height },
    videoCodec: 'libx264',
    videoPreset: 'veryfast',
    videoCrf: 23,
    aspectRatio: `${width}:${height}`,
  });
  await recorder.start(out);
  await new Promise((r) => setTimeout(r, Number(seconds) * 1000));
  await recorder.stop();
  await browser.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
