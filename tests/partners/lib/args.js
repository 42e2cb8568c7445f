'use strict';
// "--name value" / "--name=value" / "--flag" command-line parsing for the
// mocks. Unknown options are an error (a typo must not silently fall back to
// a default); a repeated option keeps its last value.

function parseArgs(argv, spec) {
  // spec: { name: { value: true|false, default, help } }
  const out = {};
  for (const [k, v] of Object.entries(spec)) if (v.default !== undefined) out[k] = v.default;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') { out.help = true; continue; }
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(a);
    if (!m || !spec[m[1]]) throw new Error(`unknown option ${a} (try --help)`);
    const s = spec[m[1]];
    if (s.value) {
      let v = m[2];
      if (v === undefined) { v = argv[++i]; if (v === undefined) throw new Error(`${a} needs a value`); }
      out[m[1]] = v;
    } else {
      if (m[2] !== undefined) throw new Error(`${a} takes no value`);
      out[m[1]] = true;
    }
  }
  return out;
}

function usage(name, spec) {
  const lines = [`usage: node ${name} [options]`];
  for (const [k, v] of Object.entries(spec)) {
    lines.push(`  --${k}${v.value ? ' VALUE' : ''}`.padEnd(30) + (v.help || '') + (v.default !== undefined ? ` (default ${v.default})` : ''));
  }
  return lines.join('\n');
}

module.exports = { parseArgs, usage };
