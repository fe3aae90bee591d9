#!/usr/bin/env bash
# Create the virtual environment, install torch first (CPU build unless told otherwise),
# then xpt itself in editable mode, then check that an OpenGL library for headless
# rendering is present.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_PIP_ARGS=${TORCH_PIP_ARGS:-}

if [ ! -x "$VENV/bin/python" ]; then
    echo "xpt: creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "xpt: torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') already installed"
else
    echo "xpt: installing $TORCH_SPEC $TORCH_PIP_ARGS"
    # shellcheck disable=SC2086
    "${PIP[@]}" install -q "$TORCH_SPEC" $TORCH_PIP_ARGS
fi

"${PIP[@]}" install -q -e ".[dev]"
# pyrender pins PyOpenGL 3.1.0, whose OSMesa binding lacks OSMesaCreateContextAttribs, so
# `--backend osmesa` cannot start with it; 3.1.10 works with both EGL and OSMesa.
"${PIP[@]}" install -q --no-deps "PyOpenGL==3.1.10"

if ! "$VENV/bin/python" - <<'PY'
import ctypes.util, sys
found = [name for name in ("EGL", "OSMesa") if ctypes.util.find_library(name)]
if found:
    print("xpt: OpenGL for headless rendering:", ", ".join(found))
sys.exit(0 if found else 1)
PY
then
    echo "xpt: WARNING no EGL or OSMesa library found; rendering will not work." >&2
    echo "     Debian/Ubuntu: apt-get install libegl1 libgl1-mesa-dri   (or libosmesa6 for --backend osmesa)" >&2
fi
