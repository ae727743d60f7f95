// .dev.vars read and edited the way wrangler dev reads it: dotenv's parse, bundled in wrangler. A line
// may begin with spaces and `export `, names its key before `=` (or `: `), and the last line that
// names a key wins. scripts/secrets.mjs (--local), scripts/dev-vars.mjs (npm run dev) and
// scripts/srs-config.ts (--local) share this, so that none of them takes `export HOOK_SECRET=…` for a
// missing secret (and appends one that wrangler then reads instead) or reads a line wrangler does not.

/** dotenv's expression for one key's line (wrangler-dist/cli.js, `LINE`), without the global flag. */
const LINE = /^\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)(\s*'(?:\\'|[^'])*'|\s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?\s*(?:#.*)?$/;

/** The key a line of .dev.vars sets for wrangler, or null (a comment, a blank line, anything else). */
export function keyOf(line) {
  return LINE.exec(line)?.[1] ?? null;
}

/** Every key and the value wrangler reads for it (the last line that names it); empty values included. */
export function readDevVars(text) {
  const values = new Map();
  for (const line of text.replace(/\r\n?/g, "\n").split("\n")) {
    const m = LINE.exec(line);
    if (m) values.set(m[1], (m[2] ?? "").trim().replace(/^(['"`])([\s\S]*)\1$/, "$2"));
  }
  return values;
}

/**
 * The text with `name` set to `value` (or, with `value` null, unset): the first line that names it
 * becomes `name=value`, any later ones (which wrangler would read instead) are removed; a name no
 * line sets is appended. Other lines stay as they are.
 */
export function setDevVar(text, name, value) {
  const lines = text.split("\n");
  const out = [];
  let done = false;
  for (const line of lines) {
    if (keyOf(line.replace(/\r$/, "")) !== name) out.push(line);
    else if (!done && value !== null) {
      out.push(`${name}=${value}${line.endsWith("\r") ? "\r" : ""}`);
      done = true;
    }
  }
  let result = out.join("\n");
  if (!done && value !== null) result = `${result.replace(/\n?$/, "\n")}${name}=${value}\n`;
  return result;
}
