# Sourced by scripts/setup.sh and scripts/test.sh: the environment both need, whatever shell
# started them (CI runs `bash .ci/run` non-interactively, so ~/.bashrc has not run).

# HOME may be unset in a bare environment; cargo, rustup and the tool cache need it.
if [[ -z "${HOME:-}" ]]; then
    HOME="$(getent passwd "$(id -u)" | cut -d: -f6)"
    export HOME
fi

# rustup's cargo lives in ~/.cargo/bin, which only login/interactive shells put on PATH.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

# Tools the project installs itself (scripts/setup.sh), outside the repository.
TOOLS="${SACRED_BRIDGE_TOOLS:-$HOME/.cache/sacred-bridge/tools}"
export PATH="$TOOLS/bin:$PATH"
