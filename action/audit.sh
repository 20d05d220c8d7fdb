#!/usr/bin/env bash
# The action's audit step: `dnncheck audit` with --format github (annotations, and the job summary
# dnncheck appends to $GITHUB_STEP_SUMMARY), then the outputs status, report, json and exit-code in
# $GITHUB_OUTPUT. It exits with dnncheck's exit code, which is what fails (or passes) the job.
set -uo pipefail
python_bin="${PYTHON:-python}"
json="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/dnncheck-results-$$.json"
args=(audit)
if [ -n "${INPUT_TARGET:-}" ]; then args+=("$INPUT_TARGET"); fi
args+=(--format github --fail-on "${INPUT_FAIL_ON:-fail}" --json "$json")
if [ -n "${INPUT_HTML:-}" ]; then args+=(--html "$INPUT_HTML"); fi
if [ -n "${INPUT_BASELINE:-}" ]; then args+=(--baseline "$INPUT_BASELINE"); fi
# more flags, split as a shell would split them (quotes respected), never evaluated
mapfile -t extra < <("$python_bin" -c 'import shlex, sys; print("\n".join(shlex.split(sys.argv[1])))' "${INPUT_ARGS:-}")
for word in "${extra[@]}"; do
  if [ -n "$word" ]; then args+=("$word"); fi
done
"$python_bin" -m dnncheck "${args[@]}"
code=$?
status=$("$python_bin" -c 'import json, sys; print(json.load(open(sys.argv[1]))["status"])' "$json" 2>/dev/null || echo "error")
{
  echo "status=$status"
  echo "report=${INPUT_HTML:-}"
  echo "json=$json"
  echo "exit-code=$code"
} >> "${GITHUB_OUTPUT:-/dev/null}"
exit "$code"
