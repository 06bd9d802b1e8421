#!/bin/sh
# Build the swarmdeploy-agent .deb (docs/adr/0009-agent-deb-package.md): a venv of the system
# Python 3 under /opt/swarmdeploy holding swarmdeploy[agent], staged in a temporary tree and
# packed with dpkg-deb. Needs network access to PyPI (or pip's cache) for the dependencies.
#
#   deploy/deb/build.sh [OUT_DIR]        (what `make deb` runs; OUT_DIR defaults to dist/)
#
# Environment: SYSTEM_PYTHON (the interpreter the package runs on, default /usr/bin/python3),
# PIP_PYTHON (an interpreter with pip >= 22.3 to install with, default .venv/bin/python),
# DEB_MAINTAINER (the control file's Maintainer field).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${1:-$top/dist}
system_python=${SYSTEM_PYTHON:-/usr/bin/python3}
pip_python=${PIP_PYTHON:-$top/.venv/bin/python}
maintainer=${DEB_MAINTAINER:-swarmdeploy maintainers <maintainers@swarmdeploy.invalid>}

version=$("$pip_python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$top/pyproject.toml")
pyver=$("$system_python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pynext=$("$system_python" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
opt=$stage/opt/swarmdeploy

# The venv: created in the staging tree, relocatable because it holds no absolute path to it
# once pip's console script and the activate scripts are replaced (see the ADR).
"$system_python" -m venv --without-pip "$opt"
"$pip_python" -m pip --python "$opt/bin/python" install -q --no-compile \
    --disable-pip-version-check "$top[agent]"
# Keep only the interpreter links in bin/ (pip's scripts name the staging dir in #!), and
# drop pyvenv.cfg's record of the command that made the venv (it names the staging dir too).
find "$opt/bin" -mindepth 1 ! -type l -exec rm -f {} +
sed -i '/^command = /d' "$opt/pyvenv.cfg"
find "$opt" -name __pycache__ -prune -exec rm -rf {} +
if grep -rlI "$stage" "$opt" >/dev/null 2>&1; then
    echo "build.sh: the staged venv still names the staging dir:" >&2
    grep -rlI "$stage" "$opt" >&2
    exit 1
fi
install -m 0755 "$here/swarmdeploy.sh" "$opt/bin/swarmdeploy"

mkdir -p "$stage/usr/bin" "$stage/lib/systemd/system"
ln -s /opt/swarmdeploy/bin/swarmdeploy "$stage/usr/bin/swarmdeploy"
install -m 0644 "$top/deploy/systemd/swarmdeploy-agent.service" "$stage/lib/systemd/system/"

mkdir -p "$stage/DEBIAN"
for script in postinst prerm postrm; do
    install -m 0755 "$here/$script" "$stage/DEBIAN/$script"
done
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: swarmdeploy-agent
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: python3 (>= $pyver), python3 (<< $pynext), bubblewrap
Recommends: systemd
Section: admin
Priority: optional
Description: swarmdeploy device agent (secure over-the-air deployment)
 The agent of swarmdeploy: registers with a swarmdeploy manager, verifies signed tasks,
 installs and supervises them in a bubblewrap sandbox and reports state, logs and health.
 Configure it with: swarmdeploy agent install --manager URL --token T --trust-anchor ca.pem
CONTROL

mkdir -p "$out"
deb="$out/swarmdeploy-agent_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
