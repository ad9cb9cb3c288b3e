#!/usr/bin/env bash
# docs/cli.md must be exactly what tools/gen_cli_doc.sh makes from the binary's
# --help texts, and every command must answer --help with exit status 0.
set -u
CLI=${CANDOR_CLI:?}; SRC=${CANDOR_SOURCE_DIR:?}
fails=0
for cmd in $("$CLI" --help | awk '/^commands:/{on=1; next} on && /^  [a-z]/{print $1}'); do
  if ! "$CLI" "$cmd" --help >/dev/null 2>&1; then echo "FAIL: candor $cmd --help"; fails=$((fails+1)); fi
done
tmp=$(mktemp)
bash "$SRC/tools/gen_cli_doc.sh" "$CLI" > "$tmp"
if ! diff -u "$SRC/docs/cli.md" "$tmp"; then
  echo "FAIL: docs/cli.md is out of date: run tools/gen_cli_doc.sh build/candor > docs/cli.md"
  fails=$((fails+1))
fi
rm -f "$tmp"
echo "cli doc: $((fails == 0)) passed, $fails failed"
[ $fails -eq 0 ]
