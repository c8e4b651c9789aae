#!/bin/bash
# nspawn-target.sh - throwaway Debian trixie "server" for integration tests:
# real systemd as PID 1, real sshd, real podman 5.4 (+ its quadlet generator), crun, netavark,
# python3 for the server-side switcher.
#
#   nspawn-target.sh golden                          # print the cached golden rootfs, build it once
#   nspawn-target.sh image IMG                       # build a golden rootfs into IMG (no cache)
#   nspawn-target.sh up IMG STATE NAME netns:N       # private netns, sshd on 10.200.N.2:22
#   nspawn-target.sh up IMG STATE NAME loopback:PORT # sshd on 127.0.0.1:PORT, host network shared
#   nspawn-target.sh down STATE                      # stop, unmount, delete the netns (keeps STATE)
#
# `golden` keys its cache folder by a hash of the image section below, so changing that section
# builds a new image; the cache lives in $BUNDLE_TEST_IMAGE_DIR (default
# /var/tmp/bundle-test-images) and a lock there lets several processes ask at once.
# NAME must be at most 12 characters (the host-side veth is called ve-NAME).
set -euo pipefail
SCRIPT=$(readlink -f "$0")

# Remove a half-built tree safely: unmount anything below it first, never cross into other mounts.
remove_tree() {
  local dir=$1 m
  [ -e "$dir" ] || return 0
  while read -r m; do umount -R -l "$m" 2>/dev/null || true
  done < <(findmnt -rn -o TARGET | awk -v d="$dir" 'index($0, d "/") == 1 || $0 == d' | sort -r)
  if findmnt -rn -o TARGET | awk -v d="$dir" 'index($0, d "/") == 1 || $0 == d' | grep -q .; then
    echo "refusing to remove $dir: something is still mounted below it" >&2; return 1
  fi
  rm -rf --one-file-system "$dir"
}

build_image() {
  local IMG=$1 MIRROR
# >>> image (the golden image is keyed by a hash of the lines from here to "<<< image")
  MIRROR=${BUNDLE_TEST_MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  mmdebstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,openssh-server,podman,crun,catatonit,nftables,iproute2,netavark,aardvark-dns,python3,curl,ca-certificates,uidmap,passt,dbus-user-session,libpam-systemd \
    trixie "$IMG" "$MIRROR"
  echo target > "$IMG/etc/hostname"
  # no CAP_SYS_RESOURCE on this kind of host -> podman's default rlimits (1048576) fail; nspawn's seccomp
  # filter blocks keyctl(); the container gets a cgroup v2 tree without the pids controller.
  cat > "$IMG/etc/containers/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
keyring = false
pids_limit = 0
EOF
  # rootless podman: pasta needs /dev/net/tun (nspawn gives none; created at boot), and overlay
  # storage cannot sit on this overlayfs root without fuse, so rootless users get vfs storage
  printf 'd /dev/net 0755 - - -\nc! /dev/net/tun 0666 - - - 10:200\n' > "$IMG/etc/tmpfiles.d/bundle-tun.conf"
  mkdir -p "$IMG/etc/skel/.config/containers"
  printf '[storage]\ndriver = "vfs"\n' > "$IMG/etc/skel/.config/containers/storage.conf"
  # root's user manager lingers: stopped after each last logout, it could hang for its full stop
  # timeout (processes left after SIGKILL) and hold every new SSH login until it came back
  mkdir -p "$IMG/var/lib/systemd/linger" && touch "$IMG/var/lib/systemd/linger/root"
  # the server-side switcher needs these (python3-minimal lacks json, tarfile, gzip, shutil)
  chroot "$IMG" python3 -c 'import json, tarfile, gzip, hashlib, fcntl, subprocess, shutil, tempfile, argparse'
# <<< image
}

cmd=${1:?usage: nspawn-target.sh golden|image|up|down ...}; shift
case "$cmd" in
golden)
  BASE=${BUNDLE_TEST_IMAGE_DIR:-/var/tmp/bundle-test-images}
  KEY=$(sed -n '/^# >>> image/,/^# <<< image/p' "$SCRIPT" | sha256sum | cut -c1-16)
  IMG=$BASE/trixie-$KEY
  mkdir -p "$BASE"
  exec 9>"$BASE/.lock"
  flock 9
  if [ ! -d "$IMG" ]; then
    for old in "$BASE"/*.building; do remove_tree "$old"; done   # from a run that was killed
    t0=$(date +%s%N)
    build_image "$IMG.building" >"$BASE/build-$KEY.log" 2>&1 || {
      tail -n 30 "$BASE/build-$KEY.log" >&2; remove_tree "$IMG.building"; exit 1; }
    mv "$IMG.building" "$IMG"
    echo "built $IMG in $(( ($(date +%s%N)-t0)/1000000 )) ms" >&2
  fi
  echo "$IMG" ;;
image)
  build_image "$1" ;;
up)
  IMG=$1 S=$2 NAME=$3 NET=$4
  if [ -f "$S/nspawn.pid" ] && kill -0 "$(cat "$S/nspawn.pid")" 2>/dev/null; then
    echo "target $NAME is already up (nspawn pid $(cat "$S/nspawn.pid"))" >&2; exit 1; fi
  mkdir -p "$S"/{storage,upper,work,root}
  [ -f "$S/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "$NAME" -f "$S/id_ed25519"
  install -m 600 "$S/id_ed25519.pub" "$S/authorized_keys"
  printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n' > "$S/sshd.conf"
  netargs=()
  case "$NET" in
    loopback:*) PORT=${NET#loopback:}; HOST=127.0.0.1; KH_HOST="[127.0.0.1]:$PORT"
      printf 'Port %s\nListenAddress 127.0.0.1\n' "$PORT" >> "$S/sshd.conf"
      if ss -Hltn "sport = :$PORT" | grep -q .; then
        echo "port $PORT already in use on the host" >&2; exit 1; fi ;;
    netns:*) N=${NET#netns:}; PORT=22; HOST=10.200.$N.2; KH_HOST=$HOST
      # leftovers of a run that died with the same name (the caller owns NAME through its lock)
      ip netns del "$NAME" 2>/dev/null || true
      ip link del "ve-$NAME" 2>/dev/null || true
      if ip -o addr show | grep -q " 10\.200\.$N\.[0-9]*/"; then
        echo "10.200.$N.0/24 is already used on this host" >&2; exit 1; fi
      ip netns add "$NAME"
      ip link add "ve-$NAME" type veth peer name host0 netns "$NAME"
      ip addr add "10.200.$N.1/24" dev "ve-$NAME"; ip link set "ve-$NAME" up
      ip -n "$NAME" link set lo up
      ip -n "$NAME" addr add "10.200.$N.2/24" dev host0; ip -n "$NAME" link set host0 up
      # deliberately NO default route: unreachable DNS then fails fast instead of timing out
      netargs=(--network-namespace-path="/run/netns/$NAME") ;;
    *) echo "unknown network mode $NET (netns:N or loopback:PORT)" >&2; exit 2 ;;
  esac
  echo "$HOST $PORT $NAME $NET" > "$S/target.info"
  # every target of one image shares its host keys: pin them
  for k in "$IMG"/etc/ssh/ssh_host_*_key.pub; do
    echo "$KH_HOST $(cut -d' ' -f1,2 "$k")"; done > "$S/known_hosts"
  # per-target copy-on-write view of the golden image; survives down/up (rm -rf upper/ work/ to reset)
  findmnt -n "$S/root" >/dev/null || mount -t overlay overlay \
      -o "lowerdir=$IMG,upperdir=$S/upper,workdir=$S/work" "$S/root"
  t0=$(date +%s%N)
  SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 SYSTEMD_NSPAWN_API_VFS_WRITABLE=network \
  setsid systemd-nspawn -D "$S/root" -M "$NAME" --register=no --keep-unit --console=read-only \
      "${netargs[@]}" --capability=CAP_NET_ADMIN --system-call-filter=bpf \
      --bind-ro="$S/sshd.conf:/etc/ssh/sshd_config.d/50-test.conf" \
      --bind-ro="$S/authorized_keys:/root/.ssh/authorized_keys" \
      --bind="$S/storage:/var/lib/containers" \
      --boot systemd.firstboot=off \
      </dev/null >"$S/console.log" 2>&1 &
  echo $! > "$S/nspawn.pid"
  for _ in $(seq 600); do
    if ssh -F /dev/null -q -i "$S/id_ed25519" -p "$PORT" -o BatchMode=yes -o ConnectTimeout=2 \
         -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$S/known_hosts" \
         -o GlobalKnownHostsFile=/dev/null root@"$HOST" true 2>/dev/null; then
      echo "up: $NAME ssh root@$HOST -p $PORT after $(( ($(date +%s%N)-t0)/1000000 )) ms (nspawn pid $(cat "$S/nspawn.pid"))"; exit 0
    fi
    kill -0 "$(cat "$S/nspawn.pid")" 2>/dev/null || { tail -n 30 "$S/console.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "timeout waiting for sshd of $NAME" >&2; tail -n 30 "$S/console.log" >&2; exit 1 ;;
down)
  S=$1
  [ -f "$S/target.info" ] || exit 0
  read -r _HOST _PORT NAME NET < "$S/target.info"
  P=$(cat "$S/nspawn.pid" 2>/dev/null || true)
  # only signal the pid if it still is this target's nspawn (pids get reused after a crash)
  if [ -n "$P" ] && tr '\0' ' ' < "/proc/$P/cmdline" 2>/dev/null | grep -q "systemd-nspawn .*-M $NAME "; then
    kill -TERM "$P"   # nspawn asks systemd in the container for a clean poweroff
    for _ in $(seq 300); do kill -0 "$P" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$P" 2>/dev/null; then
      kill -KILL "$P"
      for _ in $(seq 50); do kill -0 "$P" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  rm -f "$S/nspawn.pid"
  if findmnt -n "$S/root" >/dev/null; then umount "$S/root" || umount -l "$S/root"; fi
  case "$NET" in netns:*)
    ip netns del "$NAME" 2>/dev/null || true
    ip link del "ve-$NAME" 2>/dev/null || true ;;
  esac
  rmdir "/run/systemd/nspawn/propagate/$NAME" 2>/dev/null || true ;;
*)
  echo "unknown command $cmd" >&2; exit 2 ;;
esac
