#!/usr/bin/env bash
# End to end under a real, booted systemd (../shared/tools/systemd-box.sh: a
# debootstrap root in its own namespaces, sharing this machine's loopback):
# install as README.md says, start, status, reload with live connections,
# a broken reload, an added server, stop, then socket activation.
# Needs root; takes a few minutes the first time (debootstrap).
set -euo pipefail
ROOT_DIR=$(cd "$(dirname "$0")/../.." && pwd)
BOXSH=${BOXSH:-$ROOT_DIR/../shared/tools/systemd-box.sh}
BOX_ROOT=${BOX:-$HOME/.cache/netlab-systemd-box}/rootfs
box() { bash "$BOXSH" in "$@"; }
cd "$ROOT_DIR"

cargo build --release -p netlab-daemon
bash "$BOXSH" make
bash "$BOXSH" up
trap 'bash "$BOXSH" down >/dev/null' EXIT
sleep 3

install -m 755 target/release/netlabd "$BOX_ROOT/usr/bin/netlabd"
install -D -m 644 daemon/systemd/netlabd.toml "$BOX_ROOT/etc/netlab/netlabd.toml"
install -m 644 daemon/systemd/netlabd.service daemon/systemd/netlabd.socket "$BOX_ROOT/etc/systemd/system/"
# The box cannot create device nodes, which PrivateDevices=yes needs; a real host can.
mkdir -p "$BOX_ROOT/etc/systemd/system/netlabd.service.d"
printf '[Service]\nPrivateDevices=no\n' > "$BOX_ROOT/etc/systemd/system/netlabd.service.d/box.conf"
box systemctl daemon-reload

box systemctl start netlabd          # returns once READY=1 came
box systemctl status netlabd --no-pager | sed -n '1,10p'
python3 - "$BOX_ROOT/etc/netlab/netlabd.toml" "$BOXSH" <<'PY'
import socket, subprocess, sys, time
cfg_path, boxsh = sys.argv[1], sys.argv[2]
def box(*a): return subprocess.run(["bash", boxsh, "in", *a], capture_output=True, text=True)
e = socket.create_connection(("127.0.0.1", 7007)); e.settimeout(5)
a = socket.create_connection(("127.0.0.1", 1235)); a.settimeout(5); a.sendall(b"alice\n"); a.recv(4096)
b = socket.create_connection(("127.0.0.1", 1235)); b.settimeout(5); b.sendall(b"bob\n"); b.recv(4096); a.recv(4096)
time.sleep(1.2)
print("status:", box("systemctl", "show", "-p", "StatusText", "netlabd").stdout.strip())
for i in range(5):
    assert box("systemctl", "reload", "netlabd").returncode == 0
    e.sendall(b"round %d" % i); assert e.recv(100) == b"round %d" % i
    a.sendall(b"hi %d\n" % i); assert b.recv(100) == b"[alice] hi %d\n" % i
print("5 reloads: the echo and chat connections kept working")
cfg = open(cfg_path).read()
open(cfg_path, "w").write(cfg + '\n[[server]]\nname = "extra"\nservice = "echo"\nlisten = ["127.0.0.1:7010"]\n')
assert box("systemctl", "reload", "netlabd").returncode == 0
x = socket.create_connection(("127.0.0.1", 7010)); x.sendall(b"added"); x.shutdown(socket.SHUT_WR)
assert x.recv(100) == b"added"; print("added server answers")
open(cfg_path, "w").write(cfg + '\n[[server]]\nname = "broken"\nservce = "echo"\n')
box("systemctl", "reload", "netlabd")
e.sendall(b"after broken"); assert e.recv(100) == b"after broken"; print("a broken reload changed nothing")
open(cfg_path, "w").write(cfg)
PY
box journalctl -u netlabd --no-pager -o cat | tail -8
box systemctl stop netlabd
box systemctl show -p Result -p ExecMainStatus netlabd   # Result=success, 0

box systemctl start netlabd.socket
python3 -c "
import socket; s = socket.create_connection(('127.0.0.1', 7007)); s.sendall(b'activated'); s.shutdown(socket.SHUT_WR)
assert s.recv(100) == b'activated'; print('socket activation: echo answered')"
box systemctl is-active netlabd
box systemctl stop netlabd.socket netlabd
echo "try-in-box: all steps passed"
