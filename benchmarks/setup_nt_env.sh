#!/usr/bin/env bash
# Build the virtual environment that runs the peer, neural-tangents 0.6.5, for the benchmarks.
# neural-tangents does not import on current JAX, so it gets its own venv on jax 0.4.23.
# Usage: bash benchmarks/setup_nt_env.sh [VENV_DIR]   (default: benchmarks/.nt-venv)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-$here/.nt-venv}"
python="${PYTHON:-python3}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import neural_tangents" 2>/dev/null; then
  echo "neural-tangents venv ready: $venv"; exit 0
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "jax==0.4.23" "jaxlib==0.4.23" "numpy<2" "tf2jax==0.3.5" "neural-tangents==0.6.5"
# Plain `tensorflow` (pulled in as a dependency) breaks neural-tangents; tensorflow-cpu 2.15.1 goes in last.
"$venv/bin/python" -m pip install --quiet --force-reinstall --no-deps "tensorflow-cpu==2.15.1"
"$venv/bin/python" -c "import neural_tangents as nt, jax; print('neural-tangents', nt.__version__ if hasattr(nt, '__version__') else '0.6.5', 'jax', jax.__version__)"
