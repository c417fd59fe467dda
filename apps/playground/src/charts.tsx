import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export const COLORS = [
  '#2563eb',
  '#dc2626',
  '#16a34a',
  '#9333ea',
  '#ea580c',
  '#0891b2',
  '#be185d',
  '#4d7c0f',
];

export interface Line {
  label: string;
  color: string;
  /** y values on the chart's shared x values (null where the line has no point). */
  values: (number | null)[];
  /** A second y scale (right axis). */
  right?: boolean;
  dash?: boolean;
}

/** A uPlot line chart that fills its container's width and redraws when that changes. */
export function Chart({
  title,
  x,
  lines,
  xLabel,
  yLabel,
  rightLabel,
  step,
}: {
  title: string;
  x: number[];
  lines: Line[];
  xLabel: string;
  yLabel: string;
  rightLabel?: string;
  step?: boolean;
}) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current!;
    const width = () => Math.max(200, el.clientWidth);
    const paths = step ? uPlot.paths.stepped!({ align: 1 }) : undefined;
    const plot = new uPlot(
      {
        title,
        width: width(),
        height: 200,
        scales: { x: { time: false } },
        axes: [
          { label: xLabel, size: 40 },
          { label: yLabel, scale: 'y', size: 50 },
          ...(rightLabel
            ? [{ label: rightLabel, scale: 'r', side: 1, grid: { show: false }, size: 40 }]
            : []),
        ],
        series: [
          { label: xLabel },
          ...lines.map((l) => ({
            label: l.label,
            stroke: l.color,
            width: 2,
            scale: l.right ? 'r' : 'y',
            dash: l.dash ? [6, 4] : undefined,
            spanGaps: true,
            paths,
            points: { show: false },
          })),
        ],
        legend: { live: false },
      },
      [x, ...lines.map((l) => l.values)] as uPlot.AlignedData,
      el,
    );
    const observer = new ResizeObserver(() => plot.setSize({ width: width(), height: 200 }));
    observer.observe(el);
    return () => {
      observer.disconnect();
      plot.destroy();
    };
  }, [title, x, lines, xLabel, yLabel, rightLabel, step]);
  return <div class="chart" ref={box} />;
}

/**
 * Empirical CDFs of several samples on one shared x axis: each sample given as its values at the
 * quantiles 0, 0.01, …, 1 (as the server sends them); y is the fraction at or below x.
 */
export function cdfData(samples: number[][]): { x: number[]; ys: number[][] } {
  const x = [...new Set(samples.flat())].sort((a, b) => a - b);
  const ys = samples.map((q) => {
    if (q.length === 0) return x.map(() => 0);
    let k = 0;
    return x.map((v) => {
      while (k < q.length && q[k] <= v) k++;
      return k === 0 ? 0 : (k - 1) / (q.length - 1);
    });
  });
  return { x, ys };
}
