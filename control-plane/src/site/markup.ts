import { escapeHtml } from './html.js';

/**
 * One source, two renderings (DESIGN §3.10): the text documents (llms.txt, the skill, seller onboarding, the score
 * formula) are lines of plain text or Markdown; this turns the same lines into HTML for the docs pages. It knows the
 * few shapes those documents use: headings, paragraphs, `- ` and `1. ` lists whose items continue on indented
 * lines, indented or fenced code, front matter, tables, `code`, **bold**, [links](…) and bare URLs. Everything is
 * escaped first, so a document cannot carry markup of its own.
 */

const inline = (text: string): string => {
  let out = escapeHtml(text);
  out = out.replace(/`([^`]+)`/g, '<code>$1</code>');
  out = out.replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>');
  out = out.replace(/\[([^\]]+)\]\(((?:https?:\/\/|\/)[^)\s]+)\)/g, '<a href="$2">$1</a>');
  // Bare absolute URLs (not already inside a link) become links; a trailing dot or comma is punctuation.
  out = out.replace(/(^|[\s(])(https?:\/\/[^\s<)]+?)([.,:;]?)(?=$|[\s<)])/g, '$1<a href="$2">$2</a>$3');
  return out;
};

const ITEM = /^(\s*)(?:([-*])|(\d+)\.) (.*)$/;
const anchor = (text: string): string =>
  text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');

/**
 * Lines to HTML. `headingOffset` shifts Markdown heading levels (a page whose title is the h1 renders `#` as h2).
 */
export const linesToHtml = (lines: readonly string[], headingOffset = 1): string => {
  const out: string[] = [];
  let i = 0;
  const at = (k: number): string => lines[k] ?? '';
  while (i < lines.length) {
    const line = at(i);
    if (line.trim() === '') {
      i++;
      continue;
    }
    // Front matter or a fence: verbatim until its closing line.
    if (line === '---' || line.startsWith('```')) {
      const close = line === '---' ? '---' : '```';
      const body: string[] = [];
      for (i++; i < lines.length && !at(i).startsWith(close); i++) body.push(at(i));
      i++;
      out.push(`<pre><code>${escapeHtml(body.join('\n'))}</code></pre>`);
      continue;
    }
    const heading = /^(#{1,4}) (.*)$/.exec(line);
    if (heading) {
      const level = Math.min(6, heading[1]!.length + headingOffset);
      out.push(`<h${level} id="${anchor(heading[2]!)}">${inline(heading[2]!)}</h${level}>`);
      i++;
      continue;
    }
    if (line.startsWith('|')) {
      const rows: string[][] = [];
      for (; i < lines.length && at(i).startsWith('|'); i++) {
        const cells = at(i)
          .replace(/^\||\|$/g, '')
          .split('|');
        if (cells.every((c) => /^\s*:?-+:?\s*$/.test(c))) continue;
        rows.push(cells.map((c) => c.trim()));
      }
      const [head = [], ...body] = rows;
      out.push(
        '<div class="table-scroll"><table><thead><tr>',
        ...head.map((c) => `<th scope="col">${inline(c)}</th>`),
        '</tr></thead><tbody>',
        ...body.map((r) => `<tr>${r.map((c) => `<td>${inline(c)}</td>`).join('')}</tr>`),
        '</tbody></table></div>',
      );
      continue;
    }
    if (ITEM.test(line)) {
      const ordered = ITEM.exec(line)![3] !== undefined;
      const items: string[] = [];
      while (i < lines.length) {
        const m = ITEM.exec(at(i));
        if (m && (m[3] !== undefined) === ordered && m[1] === '') {
          items.push(m[4]!);
        } else if (items.length && /^\s+\S/.test(at(i))) {
          // An indented line continues the item above (the text documents wrap at a fixed width).
          items[items.length - 1] += ` ${at(i).trim()}`;
        } else break;
        i++;
      }
      const tag = ordered ? 'ol' : 'ul';
      out.push(`<${tag}>${items.map((t) => `<li>${inline(t)}</li>`).join('')}</${tag}>`);
      continue;
    }
    if (/^\s+\S/.test(line)) {
      const body: string[] = [];
      for (; i < lines.length && /^\s+\S/.test(at(i)); i++) body.push(at(i));
      const indent = Math.min(...body.map((l) => l.length - l.trimStart().length));
      out.push(`<pre><code>${escapeHtml(body.map((l) => l.slice(indent)).join('\n'))}</code></pre>`);
      continue;
    }
    // A paragraph: plain lines up to a blank line or another block.
    const text: string[] = [];
    for (; i < lines.length; i++) {
      const l = at(i);
      if (l.trim() === '' || ITEM.test(l) || /^(#{1,4} |\||```|---$)/.test(l) || /^\s/.test(l)) break;
      text.push(l.replace(/^> ?/, ''));
    }
    out.push(`<p>${inline(text.join(' '))}</p>`);
  }
  return out.join('\n');
};

/** Text as a person reads it, for comparing a document with its page: markup syntax and spacing left out. */
export const readableText = (text: string): string =>
  text
    .replace(/\[([^\]]+)\]\([^)]+\)/g, '$1')
    .replace(/^\s*(?:[-*]|\d+\.|#{1,4}|>) /gm, '')
    .replace(/^\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*$/gm, '')
    .replace(/^---$|^```.*$/gm, '')
    .replace(/[`*|]/g, '')
    .replace(/\s+/g, '');
