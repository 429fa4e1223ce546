# Sourced by the setup and bench scripts: apt_install PACKAGE... installs
# Debian packages quietly, without recommends, running `apt-get update` once
# per script. On failure it prints apt's output and returns 1.
if [ "$(id -u)" = 0 ]; then APT_SUDO=(); else APT_SUDO=(sudo); fi
APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then
    "${APT_SUDO[@]}" apt-get update -qq
    APT_UPDATED=1
  fi
  local log
  if ! log=$(DEBIAN_FRONTEND=noninteractive "${APT_SUDO[@]}" apt-get install -y -qq \
    --no-install-recommends "$@" 2>&1); then
    echo "$log" >&2
    echo "$(basename "$0" .sh): could not install $* with apt-get" >&2
    return 1
  fi
}
