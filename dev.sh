#!/usr/bin/env bash
# spineplan developer entry point. Sets everything up on a fresh Debian/Ubuntu machine
# (system packages for Qt/VTK/Xvfb when missing, a .venv with the project), then:
#   ./dev.sh gui [ARGS]   open the workstation (default: the bundled sample case)
#   ./dev.sh test [ARGS]  run the whole test suite headless under Xvfb (what CI runs)
#   ./dev.sh bench [--long]  one table of every benchmark with same-run anchors (python -m bench)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv

SYS_PKGS="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libgl1 libegl1 \
libgl1-mesa-dri libglx-mesa0 libegl-mesa0 libxcb-image0 libxcb-render-util0 libxcb-shape0 \
libxcb-randr0 libxcb-xkb1 libfontconfig1 libdbus-1-3 poppler-utils orthanc orthanc-dicomweb"

ensure_system() {
  command -v dpkg-query >/dev/null 2>&1 || return 0
  local missing=""
  for p in $SYS_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  echo "dev.sh: installing system packages:$missing" >&2
  local SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.spineplan-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e ".[test]"
    touch "$stamp"
  fi
}

cmd=${1:-gui}
shift || true
ensure_system
ensure_venv
case "$cmd" in
  gui)
    if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
      echo "dev.sh: no display found; running under Xvfb (use --screenshot OUT.png to see it)" >&2
      exec xvfb-run -a -s "-screen 0 1600x1000x24" "$VENV/bin/spineplan" gui "$@"
    fi
    exec "$VENV/bin/spineplan" gui "$@"
    ;;
  test)
    "$VENV/bin/lint-imports"
    set +e
    xvfb-run -a -s "-screen 0 1280x1024x24" "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
    rc=$?
    set -e
    [ "$rc" = 5 ] && { echo "dev.sh: no tests collected" >&2; exit 1; }
    exit "$rc"
    ;;
  bench)
    # one table, every row with its anchor from the same run (python -m bench --help);
    # --long adds the cohort of 8 studies; the single benches stay in bench/bench_*.py
    if [ -z "${DISPLAY:-}" ]; then
      exec xvfb-run -a -s "-screen 0 1600x1000x24" "$VENV/bin/python" -m bench "$@"
    fi
    exec "$VENV/bin/python" -m bench "$@"
    ;;
  *)
    echo "usage: ./dev.sh {gui|test|bench} [ARGS]" >&2; exit 2 ;;
esac
