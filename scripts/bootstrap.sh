#!/usr/bin/env bash
# Set up everything the study needs, on a fresh Debian machine, as root or not.
# Re-running is quick and harmless: every step checks before it acts.
#   1. Fashion-MNIST from Debian's `dataset-fashion-mnist` (apt as root, else unpacked into data/raw/)
#   2. .venv with the pinned requirements, the `mpq` package (editable), its `deploy` extra (onnx, onnxruntime)
#      and animal-mnist (--no-deps)
#   3. a Jupyter kernel named `python3` inside the venv, DVC settings
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3}
export DVC_NO_ANALYTICS=1 PIP_DISABLE_PIP_VERSION_CHECK=1
log() { echo "[bootstrap] $*"; }

# --- 1. Fashion-MNIST -----------------------------------------------------------------------
FMNIST_SYS=/usr/share/datasets/fashion-mnist
FMNIST_LOCAL="$ROOT/data/raw/fashion-mnist"
if [ -f "$FMNIST_SYS/train-images-idx3-ubyte.gz" ] || [ -f "$FMNIST_LOCAL/train-images-idx3-ubyte.gz" ]; then
  log "Fashion-MNIST present"
elif [ "$(id -u)" = 0 ]; then
  log "installing Debian package dataset-fashion-mnist"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
else
  log "not root: unpacking dataset-fashion-mnist into data/raw/"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null && dpkg-deb -x dataset-fashion-mnist_*.deb x)
  mkdir -p "$FMNIST_LOCAL"
  cp "$tmp"/x/usr/share/datasets/fashion-mnist/*.gz "$FMNIST_LOCAL/"
  rm -rf "$tmp"
fi

# --- 2. virtual environment ---------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating .venv"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.requirements.sha256"
WANT=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  log "installing requirements (torch 2.13.0 CPU build first)"
  "$VENV/bin/pip" install -q torch==2.13.0 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/pip" install -q -r requirements.txt 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/pip" install -q --no-deps animal-mnist==0.4 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/pip" install -q --no-deps -e . 2>&1 | grep -v "is ignored" || true
  # the package's `deploy` extra (ONNX export), pinned in pyproject.toml; the tests run it
  DEPLOY=$("$VENV/bin/python" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["deploy"]))')
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q $DEPLOY 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -c "import torch, mpq, animal_mnist, mlxtend, papermill, dvc, onnx, onnxruntime" \
    || { echo "[bootstrap] install failed: see pip output above" >&2; exit 1; }
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
  echo "$WANT" > "$STAMP"
else
  log ".venv up to date"
fi

# --- 3. DVC ---------------------------------------------------------------------------------------
if [ ! -d .dvc ]; then
  "$VENV/bin/dvc" init -q
fi
"$VENV/bin/dvc" config core.analytics false
"$VENV/bin/dvc" config core.check_update false
log "done"
