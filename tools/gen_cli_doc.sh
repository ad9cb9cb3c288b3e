#!/usr/bin/env bash
# Writes the CLI reference (docs/cli.md) from the `--help` of every command, so
# the reference always says what the binary does. tests/cli/test_cli_doc.sh
# fails when docs/cli.md and the binary disagree.
#   tools/gen_cli_doc.sh build/candor > docs/cli.md
set -euo pipefail
cli=${1:?usage: gen_cli_doc.sh PATH/TO/candor}
cat <<'HEAD'
# candor command-line reference

Generated from `candor COMMAND --help` by `tools/gen_cli_doc.sh`; a test checks that this file
matches the binary. Every command exits 0 on success, 1 on failure (with a one-line message
`candor COMMAND: error (CODE): ...` on stderr, codes in `docs/errors.md`) and 2 on a usage error.

HEAD
echo '## candor'
echo
echo '```text'
"$cli" --help
echo '```'
for cmd in $("$cli" --help | awk '/^commands:/{on=1; next} on && /^  [a-z]/{print $1}'); do
  echo
  echo "## candor $cmd"
  echo
  echo '```text'
  "$cli" "$cmd" --help
  echo '```'
done
