/**
 * Structured logs for the binaries: one line per event, either `text` (human) or `json`
 * (one JSON object per line, for log shippers). Written to stderr, except `out` lines
 * (the start-up line, reports) which go to stdout.
 */
export type LogFormat = 'text' | 'json';
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A line for stdout (start-up line, final report), in the same format. */
  out(msg: string, fields?: Record<string, unknown>): void;
}

function textFields(fields: Record<string, unknown> | undefined): string {
  if (!fields) return '';
  const parts = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`);
  return parts.length ? ` ${parts.join(' ')}` : '';
}

/**
 * A logger for `program`. `worker` (with --workers) names the worker on every line:
 * `relayserver[2]: ...` in text, `"worker": 2` in JSON.
 */
export function createLogger(
  program: string,
  format: LogFormat = 'text',
  level: Level = 'info',
  streams: { out: NodeJS.WritableStream; err: NodeJS.WritableStream } = { out: process.stdout, err: process.stderr },
  worker?: number,
): Logger {
  const name = worker === undefined ? program : `${program}[${worker}]`;
  const base = worker === undefined ? {} : { worker };
  const write = (stream: NodeJS.WritableStream, lvl: Level, msg: string, fields?: Record<string, unknown>) => {
    if (format === 'json') {
      stream.write(`${JSON.stringify({ time: new Date().toISOString(), level: lvl, program, ...base, msg, ...fields })}\n`);
    } else {
      stream.write(`${name}: ${lvl === 'info' ? '' : `${lvl}: `}${msg}${textFields(fields)}\n`);
    }
  };
  const at = (lvl: Level) => (msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] >= ORDER[level]) write(streams.err, lvl, msg, fields);
  };
  const out = (msg: string, fields?: Record<string, unknown>) => {
    if (format === 'json') write(streams.out, 'info', msg, fields);
    else streams.out.write(`${msg}${textFields(fields)}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), out };
}
