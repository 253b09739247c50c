/**
 * AUTOMATIC1111's "generation data" (infotext): parse and format.
 *
 * A port of A1111's `parse_generation_parameters` / `create_infotext`, so text we
 * read in the browser means what the Python side and other PNG-info readers read.
 * Pure code with no JupyterLab imports.
 */

/** One `Key: value` pair of the parameters line, in order of appearance. */
export interface IInfotextParam {
  key: string;
  /** The value, JSON-decoded when it was quoted. */
  value: string;
}

/** Parsed generation data. */
export interface IInfotext {
  /** The positive prompt (lines joined with `\n`). */
  prompt: string;
  /** The negative prompt, or `''`. */
  negativePrompt: string;
  /** The parameters line's pairs, in order (empty when there is none). */
  params: IInfotextParam[];
  /** Width from `Size: WxH`, when present. */
  width?: number;
  /** Height from `Size: WxH`, when present. */
  height?: number;
}

/** A1111's `re_param`, with Python's Unicode `\w`. */
const PARAM_SOURCE =
  '\\s*([\\p{L}\\p{N}_][\\p{L}\\p{N}_ \\-/]+):\\s*("(?:\\\\.|[^\\\\"])+"|[^,]*)(?:,|$)';
const SIZE = /^(\d+)x(\d+)$/;
const NEGATIVE = 'Negative prompt:';

/** All `[key, rawValue]` matches of `re_param` in a line. */
export function findParams(line: string): Array<[string, string]> {
  const re = new RegExp(PARAM_SOURCE, 'gu');
  const out: Array<[string, string]> = [];
  let m: RegExpExecArray | null;
  while ((m = re.exec(line)) !== null) {
    out.push([m[1], m[2]]);
    if (m[0].length === 0) {
      re.lastIndex++;
    }
  }
  return out;
}

/** A1111's `unquote`: JSON-decode a `"…"` value, else return it as is. */
export function unquote(text: string): string {
  if (text.length < 2 || text[0] !== '"' || text[text.length - 1] !== '"') {
    return text;
  }
  try {
    const value = JSON.parse(text);
    return typeof value === 'string' ? value : text;
  } catch {
    return text;
  }
}

/** A1111's `quote`: JSON-encode a value holding `,`, `:` or a newline. */
export function quote(text: string): string {
  return /[,:\n]/.test(text) ? JSON.stringify(text) : text;
}

/**
 * Parse generation data the way A1111 does.
 *
 * The last line is the parameters line only when `re_param` finds at least three
 * pairs in it; lines before it are the prompt until a line starting with
 * `Negative prompt:`, after which they are the negative prompt.
 */
export function parseInfotext(text: string): IInfotext {
  const lines = text.replace(/\r\n?/g, '\n').trim().split('\n');
  let last = lines.pop() ?? '';
  if (findParams(last).length < 3) {
    lines.push(last);
    last = '';
  }
  const prompt: string[] = [];
  const negative: string[] = [];
  let doneWithPrompt = false;
  for (let line of lines) {
    line = line.trim();
    if (line.startsWith(NEGATIVE)) {
      doneWithPrompt = true;
      line = line.slice(NEGATIVE.length).trim();
    }
    (doneWithPrompt ? negative : prompt).push(line);
  }
  const result: IInfotext = {
    prompt: prompt.join('\n'),
    negativePrompt: negative.join('\n'),
    params: []
  };
  for (const [rawKey, raw] of findParams(last)) {
    // Like jupyter_sd's Python parser: keys and (decoded) values are stripped.
    const key = rawKey.trim();
    const value = unquote(raw).trim();
    result.params.push({ key, value });
    const size = key === 'Size' ? SIZE.exec(value) : null;
    if (size) {
      result.width = Number(size[1]);
      result.height = Number(size[2]);
    }
  }
  return result;
}

/** The value of a parameter (the last one wins, as in a Python dict), or `undefined`. */
export function paramValue(info: IInfotext, key: string): string | undefined {
  return paramsObject(info)[key];
}

/** The parameters as a key → value object (a repeated key keeps its last value). */
export function paramsObject(info: IInfotext): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { key, value } of info.params) {
    out[key] = value;
  }
  return out;
}

/** Format generation data exactly as A1111's `create_infotext` does. */
export function formatInfotext(info: IInfotext): string {
  const params = info.params
    .map(({ key, value }) => (key === value ? key : `${key}: ${quote(value)}`))
    .join(', ');
  const negative = info.negativePrompt ? `\n${NEGATIVE} ${info.negativePrompt}` : '';
  return `${info.prompt}${negative}\n${params}`.trim();
}

/** The magic line that starts a paint cell. */
export const PAINT_MAGIC = '%%paint';

/**
 * The source of a `%%paint` cell that re-runs an image exactly: the magic line,
 * then the image's generation data (prompt, negative prompt, parameters line).
 */
export function paintCellSource(infotext: string): string {
  return `${PAINT_MAGIC}\n${infotext.replace(/\r\n?/g, '\n').trim()}`;
}
