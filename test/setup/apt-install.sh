#!/bin/sh
# Installs the Debian packages that natkit's interop and lab tests use, and leaves the
# machine's services as it found them: packages such as coturn and redis-server enable and
# start a system service when installed; here no service is started (a policy-rc.d that
# refuses, unless the machine has its own) and every service link the install created is
# removed again. Says what it installs before it does. Usage: apt-install.sh PACKAGE...
set -eu
[ "$#" -gt 0 ] || exit 0
echo "natkit tests: installing Debian packages: $*"
echo "natkit tests: (no service of theirs is started or left enabled)"

links() { find /etc/systemd/system /etc/rc0.d /etc/rc1.d /etc/rc2.d /etc/rc3.d /etc/rc4.d /etc/rc5.d /etc/rc6.d /etc/rcS.d -type l 2>/dev/null | sort; }
before=$(mktemp)
links > "$before"
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# natkit tests: no service starts during this install\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  own_policy=1
fi
cleanup() {
  links | comm -13 "$before" - | while read -r l; do rm -f "$l"; done
  rm -f "$before"
  [ "$own_policy" = 1 ] && rm -f "$policy"
  command -v systemctl >/dev/null 2>&1 && systemctl daemon-reload >/dev/null 2>&1 || true
}
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@" >/dev/null
