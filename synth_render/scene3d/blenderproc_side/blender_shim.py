"""Blender's command line on the bpy wheel: the `blender` executable of the BlenderProc side environment.

Runs inside the side environment's Python 3.11 (never imported by the lab). `blenderproc run` starts
`blender --background --python-use-system-env --python-exit-code N --python SCRIPT -- ARGS`; this imports bpy,
gives the script the sys.argv Blender would (the whole command line, `--` included: BlenderProc reads its own
arguments after it) and runs it as __main__. BlenderProc finds the Blender folder and version from
sys.executable (`<folder>/4.2/python/bin/python3.11`), which the venv's interpreter already is.

Three differences from a Blender release are bridged here:
- BlenderProc's CLI puts its own parent folder on PYTHONPATH and its __init__ removes that entry from sys.path
  again, assuming Blender's Python has its own site-packages beside it; here both are the venv's site-packages
  (which site then does not list twice), so it is listed once more at its usual place, after the stdlib;
- it has no translations, so the language preference's enum holds only 'DEFAULT' and bproc.init()'s
  `preferences.view.language = "en_US"` raises; the wheel's interface is English already, so that one
  assignment is accepted as a no-op (every other preference write goes to Blender unchanged);
- it crashes while tearing the module down at interpreter exit once blenderproc was imported, so the exit
  handlers run and the streams are flushed here, then the process leaves with os._exit and the script's code.
Exit codes follow Blender: the script's SystemExit code, N when the script raised, 0 otherwise.
"""

from __future__ import annotations

import atexit
import os
import runpy
import sys
import traceback

FLAGS = {"--background", "-b", "--python-use-system-env", "--factory-startup", "--enable-autoexec", "-y"}
BLENDER_DEFAULT_ERROR_EXIT = 0  # Blender's own default: a failing --python script does not change the exit code


def parse(argv: list[str]) -> tuple[str, int]:
    """(the --python script, the exit code for a script that raises) from Blender's arguments before `--`."""
    script, error_code, k = "", BLENDER_DEFAULT_ERROR_EXIT, 0
    while k < len(argv) and argv[k] != "--":
        flag = argv[k]
        if flag in ("--python", "-P", "--python-exit-code") and k + 1 < len(argv):
            if flag == "--python-exit-code":
                error_code = int(argv[k + 1])
            else:
                script = argv[k + 1]
            k += 2
        elif flag in FLAGS:
            k += 1
        else:
            raise SystemExit(f"blender (bpy shim): unsupported argument {flag!r}")
    if not script:
        raise SystemExit("blender (bpy shim): no --python SCRIPT given")
    return script, error_code


def accept_english_language() -> None:
    """Let `preferences.view.language = "en_US"` pass on a build without translations (see the docstring)."""
    import bpy

    view_type = type(bpy.context.preferences.view)
    items = view_type.bl_rna.properties["language"].enum_items
    if "en_US" in items.keys():
        return
    original = view_type.__setattr__

    def set_attribute(self, name, value):  # noqa: ANN001
        if name == "language" and value == "en_US":
            return
        original(self, name, value)

    view_type.__setattr__ = set_attribute


def keep_site_packages() -> None:
    """List the venv's site-packages a second time: BlenderProc's import removes one entry of it (see above)."""
    import site

    for folder in site.getsitepackages():
        if folder in sys.path:
            sys.path.append(folder)


def leave(code: int) -> None:
    """Exit handlers and flushed streams, then os._exit: the wheel's module teardown may segfault."""
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001  (a closed stream must not cost the exit code)
                pass
        os._exit(code)


def main() -> None:
    argv = sys.argv[1:]
    script, error_code = parse(argv)
    import bpy  # noqa: F401  (Blender is loaded before the script, as in a release)

    accept_english_language()
    keep_site_packages()
    sys.argv = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "blender"), *argv]
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_:
        if exit_.code is None:
            code = 0
        elif isinstance(exit_.code, int):
            code = exit_.code
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001  (Blender prints the traceback and exits with --python-exit-code)
        traceback.print_exc()
        code = error_code
    leave(code)


if __name__ == "__main__":
    main()
