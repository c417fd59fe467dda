import { type LoadProgress, onLoadProgress } from '@switchyard/core';

/**
 * Shows model loading on `out`: a bar redrawn in place on a TTY, otherwise a line at the start
 * of each stage, every 25 %, and at its end (with seconds taken). Returns the stop function.
 */
export function showLoadProgress(out: NodeJS.WritableStream & { isTTY?: boolean }): () => void {
  const tty = out.isTTY === true;
  let stage = '';
  let started = 0;
  let lastQuarter = -1;
  const listener = (p: LoadProgress) => {
    if (p.stage !== stage) {
      stage = p.stage;
      started = performance.now();
      lastQuarter = -1;
    }
    const frac = p.total > 0 ? p.done / p.total : 1;
    const done = p.done >= p.total;
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    if (tty) {
      const width = 30;
      const filled = Math.round(frac * width);
      out.write(
        `\r\x1b[2Kswitchyard: [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${Math.floor(frac * 100)
          .toString()
          .padStart(3)}% ${p.stage}${done ? ` (${secs} s)\n` : ''}`,
      );
      return;
    }
    const quarter = Math.floor(frac * 4);
    if (done) out.write(`switchyard: ${p.stage}: 100% (${secs} s)\n`);
    else if (quarter > lastQuarter) out.write(`switchyard: ${p.stage}: ${quarter * 25}%\n`);
    lastQuarter = done ? 4 : Math.max(quarter, lastQuarter);
  };
  return onLoadProgress(listener);
}
