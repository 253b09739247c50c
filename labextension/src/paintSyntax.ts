/**
 * Tokens of a `%%paint` cell, for highlighting. Pure code (no CodeMirror), so
 * Jest tests it directly; `highlight.ts` turns the tokens into decorations.
 */
import { findParams } from './infotext';

/** CSS classes of the highlighted parts (see `style/base.css`). */
export enum PaintClass {
  magic = 'jp-sd-magic',
  option = 'jp-sd-option',
  optionValue = 'jp-sd-option-value',
  prompt = 'jp-sd-prompt',
  negativeLabel = 'jp-sd-negative-label',
  negative = 'jp-sd-negative',
  paramKey = 'jp-sd-param-key',
  paramValue = 'jp-sd-param-value',
  emphasis = 'jp-sd-emphasis',
  weight = 'jp-sd-weight',
  tag = 'jp-sd-tag',
  keyword = 'jp-sd-keyword',
  /** The brackets and colons of prompt editing `[from:to:when]`. */
  edit = 'jp-sd-edit',
  /** The `when` of prompt editing: a step, or a fraction of the steps. */
  editWhen = 'jp-sd-edit-when',
  /** The brackets and bars of alternation `[a|b]`. */
  alternation = 'jp-sd-alternation'
}

/** A highlighted range of the cell text (`from` inclusive, `to` exclusive). */
export interface IPaintToken {
  from: number;
  to: number;
  cls: PaintClass;
}

const MAGIC = /^%%paint(?=\s|$)/;
const NEGATIVE = 'Negative prompt:';

/** Whether a cell's text is a `%%paint` cell (first line starts with the magic). */
export function isPaintCell(text: string): boolean {
  return MAGIC.test(text);
}

/**
 * The highlighted ranges of a `%%paint` cell, or `[]` for any other text.
 *
 * Region tokens (prompt, negative prompt) come first; tokens inside them (weights,
 * tags) may nest in them but never overlap each other.
 */
export function paintTokens(text: string): IPaintToken[] {
  if (!isPaintCell(text)) {
    return [];
  }
  const tokens: IPaintToken[] = [];
  const lines: Array<{ from: number; text: string }> = [];
  let offset = 0;
  for (const line of text.split('\n')) {
    lines.push({ from: offset, text: line });
    offset += line.length + 1;
  }
  magicLine(lines[0].text, tokens);

  // The parameters line: the last non-blank line, when it holds 3+ pairs.
  let last = lines.length - 1;
  while (last > 0 && lines[last].text.trim() === '') {
    last--;
  }
  let paramsLine = -1;
  if (last > 0 && findParams(lines[last].text).length >= 3) {
    paramsLine = last;
    paramLine(lines[last].from, lines[last].text, tokens);
  }

  let negative = false;
  for (let i = 1; i < lines.length; i++) {
    if (i === paramsLine) {
      continue;
    }
    const { from, text: line } = lines[i];
    let start = 0;
    const lead = line.length - line.trimStart().length;
    if (line.trimStart().startsWith(NEGATIVE)) {
      negative = true;
      start = lead + NEGATIVE.length;
      tokens.push({ from: from + lead, to: from + start, cls: PaintClass.negativeLabel });
    }
    const body = line.slice(start);
    if (body.trim() === '') {
      continue;
    }
    tokens.push({
      from: from + start,
      to: from + line.length,
      cls: negative ? PaintClass.negative : PaintClass.prompt
    });
    promptParts(from + start, body, tokens);
  }
  return tokens.sort((a, b) => a.from - b.from || b.to - a.to);
}

function magicLine(line: string, tokens: IPaintToken[]): void {
  tokens.push({ from: 0, to: '%%paint'.length, cls: PaintClass.magic });
  const word = /("(?:\\.|[^\\"])*"|'[^']*'|\S+)/g;
  word.lastIndex = '%%paint'.length;
  let m: RegExpExecArray | null;
  while ((m = word.exec(line)) !== null) {
    const isOption = /^--?[A-Za-z]/.test(m[1]);
    tokens.push({
      from: m.index,
      to: m.index + m[1].length,
      cls: isOption ? PaintClass.option : PaintClass.optionValue
    });
  }
}

function paramLine(from: number, line: string, tokens: IPaintToken[]): void {
  const re = /\s*([\p{L}\p{N}_][\p{L}\p{N}_ \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/dgu;
  let m: RegExpExecArray | null;
  while ((m = re.exec(line)) !== null) {
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    const [key, value] = [m.indices![1], m.indices![2]];
    tokens.push({ from: from + key[0], to: from + key[1], cls: PaintClass.paramKey });
    const trimmed = m[2].trimEnd().length;
    if (trimmed > 0) {
      tokens.push({
        from: from + value[0],
        to: from + value[0] + trimmed,
        cls: PaintClass.paramValue
      });
    }
  }
}

/** One part of an editing or alternation bracket: text, or a `(...)` group (which may hold a colon). */
const PART = String.raw`(?:[^[\]\n:|()]|\([^()\n]*\))*`;
/** `[to:when]`, `[from:to:when]`, `[from::when]`. */
const EDIT = new RegExp(
  String.raw`\[(${PART})(?::(${PART}))?:\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\]`,
  'dg'
);
/** `[a|b]`, `[a|b|c]`, `[fe|]male`. */
const ALTERNATION = new RegExp(String.raw`\[${PART}(?:\|${PART})+\]`, 'g');

/**
 * Prompt editing and alternation: their punctuation and `when` are marked (the text inside keeps
 * its own marks); the whole bracket is returned so plain emphasis does not claim it.
 */
function editParts(
  text: string,
  free: (a: number, b: number) => boolean,
  add: (a: number, b: number, cls: PaintClass) => void
): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  let m: RegExpExecArray | null;
  EDIT.lastIndex = 0;
  while ((m = EDIT.exec(text)) !== null) {
    const [a, b] = [m.index, m.index + m[0].length];
    if (!free(a, b)) {
      continue;
    }
    const indices = m.indices!;
    const marks: Array<[number, number, PaintClass]> = [[a, a + 1, PaintClass.edit]];
    marks.push([indices[1][1], indices[1][1] + 1, PaintClass.edit]);
    if (indices[2]) {
      marks.push([indices[2][1], indices[2][1] + 1, PaintClass.edit]);
    }
    marks.push([indices[3][0], indices[3][1], PaintClass.editWhen]);
    marks.push([b - 1, b, PaintClass.edit]);
    marks.forEach(([x, y, cls]) => add(x, y, cls));
    spans.push([a, b]);
  }
  ALTERNATION.lastIndex = 0;
  while ((m = ALTERNATION.exec(text)) !== null) {
    const [a, b] = [m.index, m.index + m[0].length];
    if (!free(a, b) || spans.some(([x, y]) => a < y && b > x)) {
      continue;
    }
    let depth = 0;
    add(a, a + 1, PaintClass.alternation);
    for (let i = a + 1; i < b - 1; i++) {
      const c = text[i];
      depth += c === '(' ? 1 : c === ')' ? -1 : 0;
      if (c === '|' && depth === 0) {
        add(i, i + 1, PaintClass.alternation);
      }
    }
    add(b - 1, b, PaintClass.alternation);
    spans.push([a, b]);
  }
  return spans;
}

/**
 * Weights `(word:1.2)`, emphasis `(word)` / `[word]`, tags `<lora:name:0.8>`, prompt editing
 * `[a:b:0.5]`, alternation `[a|b]`, BREAK/AND.
 */
function promptParts(from: number, text: string, tokens: IPaintToken[]): void {
  const taken: Array<[number, number]> = [];
  const free = (a: number, b: number) => taken.every(([x, y]) => b <= x || a >= y);
  const add = (a: number, b: number, cls: PaintClass) => {
    tokens.push({ from: from + a, to: from + b, cls });
  };
  let m: RegExpExecArray | null;
  const tag = /<[\w.-]+:[^<>\n]*>/g;
  while ((m = tag.exec(text)) !== null) {
    add(m.index, m.index + m[0].length, PaintClass.tag);
    taken.push([m.index, m.index + m[0].length]);
  }
  const tags = taken.slice();
  const weighted = /\(([^()]*?):\s*(-?\d+(?:\.\d+)?)\s*\)/g;
  while ((m = weighted.exec(text)) !== null) {
    const [a, b] = [m.index, m.index + m[0].length];
    if (!free(a, b)) {
      continue;
    }
    add(a, b, PaintClass.emphasis);
    const w = m[0].lastIndexOf(m[2]);
    add(a + w, a + w + m[2].length, PaintClass.weight);
    taken.push([a, b]);
  }
  // Editing brackets may hold weighted groups ([(a:2):3], [a|(b:1.1)]): checked against tags only.
  const edits = editParts(text, (a, b) => tags.every(([x, y]) => b <= x || a >= y), add);
  // later marks may sit inside an editing bracket, never across its edge or on the bracket itself
  const fits = (a: number, b: number) =>
    free(a, b) && edits.every(([x, y]) => b <= x || a >= y || (a > x && b < y));
  const plain = /\([^()\n]*\)|\[[^[\]\n]*\]/g;
  while ((m = plain.exec(text)) !== null) {
    const [a, b] = [m.index, m.index + m[0].length];
    if (fits(a, b)) {
      add(a, b, PaintClass.emphasis);
      taken.push([a, b]);
    }
  }
  const keyword = /\b(BREAK|AND)\b/g;
  while ((m = keyword.exec(text)) !== null) {
    if (fits(m.index, m.index + m[0].length)) {
      add(m.index, m.index + m[0].length, PaintClass.keyword);
    }
  }
}
