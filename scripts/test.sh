#!/usr/bin/env bash
# Installs what the tests need (Debian packages, a venv with luff and its test extras),
# checks lint and types, then runs the whole test suite. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in docker-registry:/usr/bin/docker-registry skopeo:/usr/bin/skopeo umoci:/usr/bin/umoci \
            buildah:/usr/bin/buildah make:/usr/bin/make; do
    [ -x "${pair#*:}" ] || need+=("${pair%%:*}")
done
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    echo "+ apt-get install ${need[*]}" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,docs]'

echo "+ ruff" >&2
.venv/bin/ruff check src tests bench examples
.venv/bin/ruff format --check -q src tests bench examples || { echo "ruff format: run .venv/bin/ruff format" >&2; exit 1; }
echo "+ mypy --strict" >&2
.venv/bin/mypy
echo "+ mkdocs build --strict" >&2
site=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site" || { rm -rf "$site"; exit 1; }
rm -rf "$site"
echo "+ pytest" >&2
exec .venv/bin/pytest -n "${LUFF_TEST_JOBS:-2}" -q "$@"
