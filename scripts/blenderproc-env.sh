#!/usr/bin/env bash
# Build the BlenderProc side environment (issue 21), offline from the package registries, idempotently:
#
#   bash scripts/blenderproc-env.sh            # or: make blenderproc-env
#
# `blenderproc run` normally downloads a Blender release on first use; here the PyPI wheel bpy==4.2.23 plays
# Blender. The folder ($BLENDERPROC_HOME, default .blenderproc/ in the repo, ignored by git) is laid out like a
# Blender 4.2 release, which `blenderproc run --custom-blender-path` accepts:
#
#   blender                       the executable BlenderProc starts (a shim: Blender's arguments -> bpy)
#   blender_shim.py               what the shim runs inside the side python
#   4.2/python/                   a Python 3.11 venv: bpy, blenderproc and BlenderProc's pinned packages
#   custom-python-packages/installed_packages_cache_v2.json
#                                 the packages BlenderProc checks before pip-installing into "Blender" (all
#                                 present, so it never reaches for the network at run time)
#
# BlenderProc (GPL-3.0) and bpy (GPL) live only here: the lab never imports them, it runs `blenderproc run`
# as a separate process. A finished build is stamped; a re-run with the same pins returns at once, a partial
# or outdated one is rebuilt from scratch.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${BLENDERPROC_HOME:-$ROOT/.blenderproc}
MAJOR=4.2
PINS=(blenderproc==2.8.0 bpy==4.2.23 numpy==1.26.4)
SHIM=$ROOT/synth_render/scene3d/blenderproc_side/blender_shim.py
STAMP=$TARGET/.installed
WANT="${PINS[*]} shim:$(sha256sum "$SHIM" | cut -c1-16) script:$(sha256sum "$0" | cut -c1-16)"

if [[ -f $STAMP && "$(cat "$STAMP")" == "$WANT" ]]; then
    echo "BlenderProc side environment up to date: $TARGET"
    exit 0
fi
PYTHON=""
for candidate in ${BLENDERPROC_PYTHON:-} python3.11 /usr/bin/python3.11; do
    if "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
        PYTHON=$candidate
        break
    fi
done
if [[ -z $PYTHON ]]; then
    echo "scripts/blenderproc-env.sh: needs Python 3.11 with venv (bpy 4.2's wheels are cp311); set BLENDERPROC_PYTHON" >&2
    exit 1
fi
start=$SECONDS
rm -rf "$TARGET"
VENV=$TARGET/$MAJOR/python
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
"${PIP[@]}" install "${PINS[@]}"
# BlenderProc's own list of pinned packages, read from the installed source (not imported: importing blenderproc
# outside `blenderproc run` refuses), installed next to the pinned numpy it was tested with
CONFIG=$("$VENV/bin/python" -c 'import importlib.util as u; print(u.find_spec("blenderproc").submodule_search_locations[0])')/python/utility/DefaultConfig.py
mapfile -t WANTED < <("$VENV/bin/python" - "$CONFIG" <<'PY'
import ast, sys
tree = ast.parse(open(sys.argv[1], encoding="utf-8").read())
for node in ast.walk(tree):
    if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "default_pip_packages" for t in node.targets):
        print("\n".join(ast.literal_eval(node.value)))
PY
)
"${PIP[@]}" install "${WANTED[@]}" "${PINS[@]}"
mkdir -p "$TARGET/custom-python-packages"
"$VENV/bin/python" - "$TARGET/custom-python-packages/installed_packages_cache_v2.json" <<'PY'
import json, subprocess, sys
frozen = subprocess.run([sys.executable, "-m", "pip", "list", "--format=freeze"], check=True, capture_output=True,
                        text=True).stdout
# the names and versions BlenderProc compares with its pins: lower-case, as its own `pip list` reading makes them
packages = dict(line.lower().split("==", 1) for line in frozen.splitlines() if "==" in line)
with open(sys.argv[1], "w", encoding="utf-8") as f:
    json.dump(packages, f)
PY
cp "$SHIM" "$TARGET/blender_shim.py"
cat > "$TARGET/blender" <<'SH'
#!/bin/sh
# Blender's command line on the bpy wheel: see blender_shim.py
here=$(dirname "$0")
exec "$here/4.2/python/bin/python3.11" "$here/blender_shim.py" "$@"
SH
chmod +x "$TARGET/blender"
echo "$WANT" > "$STAMP"
echo "BlenderProc side environment built in $((SECONDS - start)) s: $TARGET ($(du -sh "$TARGET" | cut -f1))"
