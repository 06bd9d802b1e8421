#!/bin/sh
# swarmdeploy from the swarmdeploy-agent package: the package's venv of the system Python 3.
# `swarmdeploy agent install` writes a unit that runs this program (SWARMDEPLOY_AGENT_EXEC).
here=$(dirname "$(readlink -f "$0")")
SWARMDEPLOY_AGENT_EXEC=${SWARMDEPLOY_AGENT_EXEC:-$here/swarmdeploy}
export SWARMDEPLOY_AGENT_EXEC
exec "$here/python" -m swarmdeploy "$@"
