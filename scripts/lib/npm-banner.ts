// `npm run X` without -s prints its own "> streamgate@… X" and "> node …" lines on stdout before the
// script runs. On a terminal they are only noise; into a file or a pipe they become part of what
// the script prints: a srs.conf that SRS refuses to start on ("config file … test is failed"), a
// play token with two lines in front of it. The script cannot take those lines back, so it refuses
// to print after them and says why.

/**
 * The refusal to print, or null when npm put no banner into stdout: run with -s (or loglevel
 * silent), stdout a terminal, or not run by `npm run <script>`. `harm`: what the lines would break.
 */
export function npmBannerInOutput(script: string, harm: string): string | null {
  const env = process.env;
  const byNpm = env.npm_lifecycle_event === script && (env.npm_config_user_agent ?? "").startsWith("npm/");
  if (!byNpm || env.npm_config_loglevel === "silent" || process.stdout.isTTY) return null;
  return (
    `npm printed its own "> streamgate@… ${script}" lines into this output before the script ran, and ${harm}: ` +
    `run npm run -s ${script} -- … (-s keeps them out), as the README does. Nothing else was printed.`
  );
}
