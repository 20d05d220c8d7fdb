#!/usr/bin/env bash
# The action's install step: torch from DNNCHECK_TORCH_INDEX (CPU wheels by default), then dnncheck
# (DNNCHECK_PACKAGE, else the action's own source). DNNCHECK_PIP_ARGS: more pip flags.
set -euo pipefail
python_bin="${PYTHON:-python}"
read -r -a pip_args <<< "${DNNCHECK_PIP_ARGS:-}"
if [ -n "${DNNCHECK_TORCH_INDEX:-}" ]; then
  "$python_bin" -m pip install --disable-pip-version-check "${pip_args[@]}" torch torchvision \
    --index-url "$DNNCHECK_TORCH_INDEX" --extra-index-url https://pypi.org/simple
fi
package="${DNNCHECK_PACKAGE:-}"
if [ -z "$package" ]; then
  package="${GITHUB_ACTION_PATH:?set DNNCHECK_PACKAGE or run this as the action}"
fi
"$python_bin" -m pip install --disable-pip-version-check "${pip_args[@]}" "$package"
