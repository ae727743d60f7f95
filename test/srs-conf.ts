// A checker of srs.conf syntax for the tests: a port of SRS's own tokenizer and block parser
// (SrsConfDirective::read_token and ::parse_conf, trunk/src/app/srs_app_config.cpp, SRS 7.0.18,
// itself after nginx's ngx_conf_read_token), plus the directive names SrsConfig::check_normal_config
// accepts in the blocks streamgate's configurations use. It throws where SRS would refuse to start.
//
// SRS's rules, as this code applies them:
// - a directive is words ended by `;`, or by `{` when a block follows; `}` closes the block and must
//   stand alone; blocks nest and must balance by the end of the file;
// - a directive must end on the line it starts on ("unexpected end of line");
// - words are separated by spaces or tabs; `"..."` and `'...'` quote a word (a quote must be followed
//   by a space, `;` or `{`); an unquoted `;` or `{` ends the word;
// - `#` starts a comment only where a word could start, so `a#b` is one word.

export interface Directive {
  name: string;
  args: string[];
  line: number;
  /** The directives inside its block; undefined for a `;` directive. */
  block?: Directive[];
}

export class SrsConfSyntaxError extends Error {}

type Token =
  | { kind: "entire"; words: string[]; line: number }
  | { kind: "block-start"; words: string[]; line: number }
  | { kind: "block-end"; line: number }
  | { kind: "eof"; line: number };

export function parseSrsConf(text: string): Directive[] {
  const tokens = tokenize(text);
  let at = 0;
  function parse(inBlock: boolean): Directive[] {
    const out: Directive[] = [];
    while (true) {
      const token = tokens[at++];
      if (token.kind === "block-end") {
        if (!inBlock) throw new SrsConfSyntaxError(`line ${token.line}: unexpected "}"`);
        return out;
      }
      if (token.kind === "eof") {
        if (inBlock) throw new SrsConfSyntaxError(`line ${token.line}: unexpected end of file, expecting "}"`);
        return out;
      }
      const [name, ...args] = token.words;
      if (name === "include") throw new SrsConfSyntaxError(`line ${token.line}: include is not expected in a generated configuration`);
      const directive: Directive = { name, args, line: token.line };
      if (token.kind === "block-start") directive.block = parse(true);
      out.push(directive);
    }
  }
  return parse(false);
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let pos = 0;
  let line = 1;
  while (true) {
    const words: string[] = [];
    let word = "";
    let inWord = false;
    let quote: string | null = null;
    let needSpace = false;
    let comment = false;
    let start = line;
    let token: Token | null = null;
    while (token === null) {
      if (pos >= text.length) {
        if (words.length > 0 || inWord) throw new SrsConfSyntaxError(`line ${line}: unexpected end of file, expecting ; or "}"`);
        tokens.push({ kind: "eof", line });
        return tokens;
      }
      const ch = text[pos++];
      if (ch === "\n" || ch === "\r") {
        if (ch === "\n") line++;
        comment = false;
        if (words.length > 0 || (inWord && quote === null)) {
          throw new SrsConfSyntaxError(`line ${line - 1}: unexpected end of line in directive "${words[0] ?? word}"`);
        }
      }
      if (comment) continue;
      if (needSpace) {
        if (ch === " " || ch === "\t" || ch === "\n" || ch === "\r") needSpace = false;
        else if (ch === ";") token = { kind: "entire", words, line: start };
        else if (ch === "{") token = { kind: "block-start", words, line: start };
        else throw new SrsConfSyntaxError(`line ${line}: unexpected "${ch}" after a quoted word`);
        continue;
      }
      if (!inWord) {
        if (ch === " " || ch === "\t" || ch === "\n" || ch === "\r") continue;
        if (words.length === 0) start = line;
        if (ch === ";" || ch === "{") {
          if (words.length === 0) throw new SrsConfSyntaxError(`line ${line}: unexpected "${ch}"`);
          token = { kind: ch === ";" ? "entire" : "block-start", words, line: start };
        } else if (ch === "}") {
          if (words.length > 0) throw new SrsConfSyntaxError(`line ${line}: unexpected "}" in directive "${words[0]}"`);
          token = { kind: "block-end", line };
        } else if (ch === "#") comment = true;
        else if (ch === '"' || ch === "'") {
          quote = ch;
          inWord = true;
        } else {
          word = ch;
          inWord = true;
        }
        continue;
      }
      if (quote !== null) {
        if (ch === quote) {
          if (word !== "") words.push(word); // SRS keeps no empty word
          word = "";
          inWord = false;
          quote = null;
          needSpace = true;
        } else word += ch;
        continue;
      }
      if (ch === " " || ch === "\t" || ch === "\n" || ch === "\r" || ch === ";" || ch === "{") {
        words.push(word);
        word = "";
        inWord = false;
        if (ch === ";") token = { kind: "entire", words, line: start };
        else if (ch === "{") token = { kind: "block-start", words, line: start };
        continue;
      }
      word += ch;
    }
    tokens.push(token);
  }
}

/**
 * Directive names SRS 7.0.18 accepts (SrsConfig::check_normal_config), for the blocks streamgate's
 * configurations and README use. A misspelt directive stops SRS at start ("illegal directive").
 */
const ALLOWED: Record<string, readonly string[]> = {
  "": [
    "listen", "pid", "chunk_size", "ff_log_dir", "srs_log_tank", "srs_log_level", "srs_log_level_v2", "srs_log_file",
    "max_connections", "daemon", "heartbeat", "tencentcloud_apm", "http_api", "stats", "vhost", "pithy_print_ms",
    "http_server", "stream_caster", "rtc_server", "srt_server", "utc_time", "work_dir", "asprocess", "server_id",
    "ff_log_level", "grace_final_wait", "force_grace_quit", "grace_start_wait", "empty_ip_ok",
    "disable_daemon_for_docker", "inotify_auto_reload", "auto_reload_for_docker", "tcmalloc_release_rate",
    "query_latest_version", "first_wait_for_qlv", "threads", "circuit_breaker", "is_full", "in_docker",
    "tencentcloud_cls", "exporter",
  ],
  http_api: ["enabled", "listen", "crossdomain", "raw_api", "auth", "https"],
  http_server: ["enabled", "listen", "dir", "crossdomain", "https"],
  rtc_server: [
    "enabled", "listen", "dir", "candidate", "ecdsa", "tcp", "encrypt", "reuseport", "merge_nalus", "black_hole", "protocol",
    "ip_family", "api_as_candidates", "resolve_api_domain", "keep_api_domain", "use_auto_detect_network_ip",
  ],
  heartbeat: ["enabled", "interval", "url", "device_id", "summaries", "ports"],
  vhost: [
    "enabled", "chunk_size", "min_latency", "tcp_nodelay", "dvr", "ingest", "hls", "http_hooks", "refer", "forward",
    "transcode", "bandcheck", "play", "publish", "cluster", "security", "http_remux", "dash", "http_static", "hds",
    "exec", "in_ack_size", "out_ack_size", "rtc", "srt",
  ],
  "vhost.rtc": [
    "enabled", "nack", "twcc", "nack_no_copy", "bframe", "aac", "stun_timeout", "stun_strict_check", "dtls_role", "dtls_version",
    "drop_for_pt", "rtc_to_rtmp", "pli_for_rtmp", "rtmp_to_rtc", "keep_bframe", "opus_bitrate", "aac_bitrate", "keep_avc_nalu_sei",
  ],
  "vhost.http_hooks": ["enabled", "on_connect", "on_close", "on_publish", "on_unpublish", "on_play", "on_stop", "on_dvr", "on_hls", "on_hls_notify"],
  "vhost.cluster": ["mode", "origin", "token_traverse", "vhost", "debug_srs_upnode", "coworkers", "origin_cluster", "protocol", "follow_client"],
  "vhost.http_remux": ["enabled", "mount", "fast_cache", "drop_if_not_match", "has_audio", "has_video", "guess_has_av"],
  "vhost.hls": [
    "enabled", "hls_entry_prefix", "hls_path", "hls_fragment", "hls_window", "hls_on_error", "hls_storage", "hls_mount",
    "hls_td_ratio", "hls_aof_ratio", "hls_acodec", "hls_vcodec", "hls_m3u8_file", "hls_ts_file", "hls_ts_floor",
    "hls_cleanup", "hls_nb_notify", "hls_wait_keyframe", "hls_dispose", "hls_keys", "hls_fragments_per_key",
    "hls_key_file", "hls_key_file_path", "hls_key_url", "hls_dts_directly", "hls_ctx", "hls_ts_ctx",
  ],
};

/** Throws on a directive name SRS 7 refuses, in the blocks listed above (others are not checked). */
export function checkDirectiveNames(directives: Directive[], path = ""): void {
  const allowed = ALLOWED[path];
  for (const d of directives) {
    if (allowed && !allowed.includes(d.name)) throw new SrsConfSyntaxError(`line ${d.line}: illegal directive ${path ? `${path}.` : ""}${d.name}`);
    if (d.block) checkDirectiveNames(d.block, path === "" ? d.name : `${path}.${d.name}`);
  }
}

/** The first directive with this name, looked up along a path of names ("vhost", "http_hooks"). */
export function find(directives: Directive[], ...path: string[]): Directive | undefined {
  let list: Directive[] | undefined = directives;
  let found: Directive | undefined;
  for (const name of path) {
    found = list?.find((d) => d.name === name);
    list = found?.block;
  }
  return found;
}
