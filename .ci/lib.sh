# Shared by the .ci scripts; sourced, not run. The sourcing script defines log().

# apt_install WHAT PACKAGE...: install Debian packages without Recommends, as root or through
# passwordless sudo; otherwise say that WHAT is missing and how to install it, and exit 1.
apt_install() {
  local what="$1"
  shift
  local -a root=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      root=(sudo -n)
    else
      log "$what is not installed and this user cannot install it (not root, no passwordless sudo)."
      log "Install it first: apt-get install -y $*"
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${root[@]}" apt-get update -qq </dev/null >&2
  "${root[@]}" apt-get install -y -qq --no-install-recommends "$@" </dev/null >&2
}
