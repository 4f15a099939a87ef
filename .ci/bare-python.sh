# Sourced by .ci scripts: make a bare Python 3.11 (a fresh venv, no uv) and put it first on a PATH
# reduced to the system dirs, the way a new machine meets our two README commands.
# Sets BARE_PYTHON and BARE_FREEZE (that Python's packages before anything ran).
base_python=$(command -v python3.11) || { echo "no python3.11 on PATH" >&2; exit 2; }
bare_dir=$(mktemp -d /tmp/tc-bare-python.XXXX)
"$base_python" -m venv "$bare_dir"
export PATH="$bare_dir/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
unset VIRTUAL_ENV CONDA_PREFIX PYTHONPATH
hash -r
BARE_PYTHON="$bare_dir/bin/python"
BARE_FREEZE=$("$BARE_PYTHON" -m pip freeze --all | sort)
if command -v uv >/dev/null; then
  echo "note: a uv is reachable at $(command -v uv); the Makefile must not use it" >&2
fi

bare_python_unchanged() {
  local after
  after=$("$BARE_PYTHON" -m pip freeze --all | sort)
  if [ "$BARE_FREEZE" != "$after" ]; then
    echo "FAIL: the Python that ran make changed:" >&2
    diff <(echo "$BARE_FREEZE") <(echo "$after") >&2
    return 1
  fi
  echo "ok: the Python that ran make kept exactly its packages"
}
