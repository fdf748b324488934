#!/usr/bin/env bash
# lab.sh: a local multi-host fleet mesh for hands-on exploration, on Linux
# network namespaces (root required), built like the test harness
# (tests/netns_util.rs):
#
# - one namespace holds a bridge (the LAN switch); every host is a namespace
#   of its own, joined to the bridge by a veth pair, with an address in
#   10.213.$FLEET_LAB_SUBNET.0/24, loopback up and no default route (nothing
#   in the lab reaches anything outside it);
# - every host has its own MOSAIC_HOME (a node certificate from one mesh CA
#   made here with `fleet certs init/issue`, a roster of stub agents), its own
#   tmux server (socket fleetlab-<host>, with a holder session), and runs
#   `ip netns exec <ns> fleet node` on its address with the other hosts as
#   static peers;
# - everything lives in one state dir; `down` kills the lab's processes by the
#   pids recorded there (then whatever is left inside the lab's namespaces,
#   which only the lab put there), deletes the namespaces (which takes the
#   veths and the bridge with them) and removes the state dir.
#
# Usage (as root):
#   deploy/lab.sh up [N]            bring up N hosts h1..hN (default 3, at most 50)
#   deploy/lab.sh status            hosts, addresses, node pids
#   deploy/lab.sh exec HOST CMD...  run CMD as HOST (in its namespace, with its environment)
#   deploy/lab.sh sh HOST           an interactive shell as HOST
#   deploy/lab.sh cut HOST          pull HOST's cable (its bridge port down)
#   deploy/lab.sh heal HOST         plug it back
#   deploy/lab.sh stop HOST         stop HOST's node (SIGTERM)
#   deploy/lab.sh start HOST        start HOST's node again
#   deploy/lab.sh down              tear everything down
#
# Environment: FLEET (the fleet binary; default: target/debug/fleet or
# target/release/fleet of this checkout, else `fleet` on PATH),
# FLEET_LAB_DIR (state dir, default /tmp/fleet-lab), FLEET_LAB_SUBNET (third
# octet of the lab subnet, default 240), FLEET_LAB_INTERVAL (heartbeat
# interval in seconds, default 2).
set -euo pipefail

prog=${0##*/}
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
lab=${FLEET_LAB_DIR:-/tmp/fleet-lab}
subnet=${FLEET_LAB_SUBNET:-240}
interval=${FLEET_LAB_INTERVAL:-2}
prefix=fleetlab
bridge_ns=$prefix-br
tenant=lab
port=7420

die() {
    printf '%s: %s\n' "$prog" "$*" >&2
    exit 1
}

usage() {
    sed -n '/^# Usage/,/^#$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

need_root() {
    [[ $EUID -eq 0 ]] || die "needs root (network namespaces): sudo $0 $*"
    command -v ip >/dev/null || die "needs ip (iproute2)"
    command -v tmux >/dev/null || die "needs tmux"
}

find_fleet() {
    local f
    for f in "${FLEET:-}" "$here/../target/debug/fleet" "$here/../target/release/fleet" "$(command -v fleet || true)"; do
        if [[ -n $f && -x $f ]]; then
            (cd -- "$(dirname -- "$f")" && printf '%s/%s\n' "$(pwd)" "$(basename -- "$f")")
            return 0
        fi
    done
    die "no fleet binary: build one (cargo build -p fleet-cli) or set FLEET=/path/to/fleet"
}

host_ns() { printf '%s-h%s\n' "$prefix" "$1"; }
host_ip() { printf '10.213.%s.%s\n' "$subnet" "$(($1 + 1))"; }
host_home() { printf '%s/hosts/h%s\n' "$lab" "$1"; }
host_socket() { printf '%s-h%s\n' "$prefix" "$1"; }

# The number of the host named hI (or I).
host_index() {
    local h=${1#h}
    [[ $h =~ ^[0-9]+$ && -d $(host_home "$h") ]] || die "no lab host '$1' (hosts: $(hosts_list))"
    printf '%s\n' "$h"
}

hosts_count() {
    [[ -f $lab/state ]] || die "no lab is up (no $lab/state): $prog up"
    sed -n 's/^hosts=//p' "$lab/state"
}

hosts_list() {
    local n i out=""
    n=$(hosts_count)
    for ((i = 1; i <= n; i++)); do out+="h$i "; done
    printf '%s\n' "${out% }"
}

# The clean environment of host I, as `env` arguments.
host_env() {
    local i=$1
    printf '%s\n' \
        "PATH=$PATH" \
        "HOME=$lab/home" \
        "USER=lab" \
        "LANG=C.UTF-8" \
        "TERM=${TERM:-xterm-256color}" \
        "TMUX_TMPDIR=$lab/tmux" \
        "XDG_RUNTIME_DIR=$lab/xdg" \
        "MOSAIC_HOME=$(host_home "$i")" \
        "MOSAIC_HEARTBEAT_INTERVAL=$interval" \
        "FLEET_HOST=h$i"
}

# Run CMD as host I: inside its namespace, with its environment only.
as_host() {
    local i=$1 ns
    shift
    ns=$(host_ns "$i")
    local -a envs
    mapfile -t envs < <(host_env "$i")
    ip netns exec "$ns" env -i "${envs[@]}" "$@"
}

# ---------------------------------------------------------------- node

node_pid() { cat "$lab/pids/h$1.node" 2>/dev/null || true; }

alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

start_node() {
    local i=$1 n j peers="" pid fleet
    n=$(hosts_count)
    fleet=$(sed -n 's/^fleet=//p' "$lab/state")
    pid=$(node_pid "$i")
    if alive "$pid"; then
        echo "h$i: node already runs (pid $pid)"
        return 0
    fi
    for ((j = 1; j <= n; j++)); do
        ((j == i)) || peers+="$(host_ip "$j"):$port,"
    done
    local -a envs
    mapfile -t envs < <(host_env "$i")
    envs+=("FLEET_LISTEN=$(host_ip "$i"):$port" "FLEET_PEERS=${peers%,}" "FLEET_MDNS=false" "RUST_LOG=info")
    printf -- '---- lab.sh: starting node h%s (peers %s) ----\n' "$i" "${peers%,}" >>"$lab/logs/h$i.log"
    # setsid: its own session, so it outlives this script. `ip netns exec` and
    # `env` exec, so $! is the node's own pid.
    setsid ip netns exec "$(host_ns "$i")" env -i "${envs[@]}" "$fleet" node \
        </dev/null >>"$lab/logs/h$i.log" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$lab/pids/h$i.node"
    local tries
    for ((tries = 0; tries < 150; tries++)); do
        alive "$pid" || die "node h$i exited at once; its log: $lab/logs/h$i.log"$'\n'"$(tail -5 "$lab/logs/h$i.log")"
        if as_host "$i" "$fleet" peers --json >/dev/null 2>&1; then
            echo "h$i: node up, pid $pid, $(host_ip "$i"):$port"
            return 0
        fi
        sleep 0.1
    done
    die "node h$i did not answer within 15 s; its log: $lab/logs/h$i.log"
}

stop_node() {
    local i=$1 pid t
    pid=$(node_pid "$i")
    if ! alive "$pid"; then
        echo "h$i: node not running"
        rm -f "$lab/pids/h$i.node"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((t = 0; t < 50; t++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$lab/pids/h$i.node"
    echo "h$i: node stopped (pid $pid)"
}

# ---------------------------------------------------------------- up / down

roster_of() { # I FLEET
    local i=$1 fleet=$2
    cat <<EOF
version: 1
tenant_id: $tenant
tmux: { socket_name: $(host_socket "$i"), holder_session: _holder }
runtimes:
  stub: { command: "$fleet stub-agent", heartbeat: self }
  drafty: { command: "$fleet stub-agent --draft", process_names: [fleet], heartbeat: self }
agents:
EOF
    if ((i == 1)); then
        printf '  - { name: orchestrator, runtime: stub, class: orchestrator }\n'
        printf '  - { name: enhancer, runtime: stub, class: enhancer }\n'
    else
        printf '  - { name: coder%s-0, runtime: stub, class: implementer }\n' "$((i - 2))"
        printf '  - { name: reviewer%s, runtime: drafty, class: reviewer }\n' "$((i - 1))"
    fi
}

up() {
    local n=${1:-3} fleet i ns
    [[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le 50 ]] || die "N must be 1 to 50, not '$n'"
    [[ $subnet =~ ^[0-9]+$ && $subnet -le 255 ]] || die "FLEET_LAB_SUBNET must be 0 to 255, not '$subnet'"
    need_root up
    fleet=$(find_fleet)
    if [[ -e $lab ]] || ip netns list | grep -q "^$prefix-"; then
        die "a lab is already up (state $lab, namespaces $prefix-*): $prog down first"
    fi
    up_done=0
    trap 'if [[ $up_done != 1 ]]; then echo "$prog: up failed; tearing down what was made" >&2; down >/dev/null 2>&1 || true; fi' EXIT
    mkdir -p "$lab"/{ca,hosts,home,tmux,xdg,logs,pids}
    chmod 700 "$lab/tmux" "$lab/xdg"
    printf 'lab=fleet-lab\nhosts=%s\nsubnet=%s\nfleet=%s\n' "$n" "$subnet" "$fleet" >"$lab/state"

    ip netns add "$bridge_ns"
    ip -n "$bridge_ns" link set lo up
    ip -n "$bridge_ns" link add br0 type bridge
    ip -n "$bridge_ns" link set br0 up

    local -a envs
    mapfile -t envs < <(host_env 1)
    env -i "${envs[@]}" "$fleet" certs init --tenant "$tenant" --dir "$lab/ca" >/dev/null

    for ((i = 1; i <= n; i++)); do
        ns=$(host_ns "$i")
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # Both ends are made inside the lab's namespaces: the root namespace never sees them.
        ip -n "$bridge_ns" link add "p$i" type veth peer name eth0 netns "$ns"
        ip -n "$bridge_ns" link set "p$i" master br0
        ip -n "$bridge_ns" link set "p$i" up
        ip -n "$ns" addr add "$(host_ip "$i")/24" dev eth0
        ip -n "$ns" link set eth0 up

        mkdir -p "$(host_home "$i")/fleet"
        env -i "${envs[@]}" "$fleet" certs issue node --host "h$i" --dir "$lab/ca" \
            --out "$(host_home "$i")/fleet/certs" >/dev/null
        roster_of "$i" "$fleet" >"$(host_home "$i")/fleet/roster.yaml"
        # The holder session keeps the host's tmux server up, as
        # mosaic-tmux-holder.service does on a real host.
        as_host "$i" tmux -L "$(host_socket "$i")" new-session -d -s _holder sleep infinity
        as_host "$i" "$fleet" start --all --local >/dev/null
    done
    for ((i = 1; i <= n; i++)); do
        start_node "$i"
    done
    up_done=1
    trap - EXIT
    status
    cat <<EOF

Try (as root):
  $0 exec h1 fleet ps                       # the merged view, from h1
  $0 exec h1 fleet peers                    # membership
  $0 exec h2 fleet send orchestrator@h1 --verify -m "hello from h2"
  $0 exec h1 tmux -L $(host_socket 1) attach -t =orchestrator   # see it arrive (detach: C-b d)
  $0 exec h1 fleet heartbeats               # follow events (Ctrl-C to stop)
  $0 cut h2; $0 exec h1 fleet ps; $0 heal h2 # h2 unreachable, then back
  $0 stop h2; $0 start h2                   # stop and restart a node
  $0 sh h1                                  # a shell as h1
  $0 down                                   # tear it all down
Logs: $lab/logs/hN.log. Hosts reach each other on 10.213.$subnet.0/24, port $port.
EOF
}

down() {
    need_root down
    local ns pid i n=0 pids
    if [[ -f $lab/state ]]; then
        n=$(sed -n 's/^hosts=//p' "$lab/state")
        for ((i = 1; i <= n; i++)); do
            [[ -f $lab/pids/h$i.node ]] && stop_node "$i"
            ip netns exec "$(host_ns "$i")" env TMUX_TMPDIR="$lab/tmux" \
                tmux -L "$(host_socket "$i")" kill-server >/dev/null 2>&1 || true
        done
    fi
    # Whatever is still inside a lab namespace was put there by the lab.
    for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix-" || true); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [[ -n $pids ]]; then
            # shellcheck disable=SC2086 # a list of pids
            kill -TERM $pids 2>/dev/null || true
            sleep 0.5
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            # shellcheck disable=SC2086
            [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
        fi
    done
    # Hosts first, then the bridge namespace (which takes the veths and the bridge with it).
    for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix-h" || true) $bridge_ns; do
        if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
            ip netns delete "$ns" && echo "deleted namespace $ns"
        fi
    done
    if [[ -f $lab/state ]] && grep -qx 'lab=fleet-lab' "$lab/state"; then
        rm -rf -- "$lab"
        echo "removed $lab"
    elif [[ -e $lab ]]; then
        echo "left $lab in place: it is not a lab state dir (no $lab/state)" >&2
    fi
}

status() {
    local n i pid state
    n=$(hosts_count)
    printf 'fleet lab: %s host(s), tenant %s, 10.213.%s.0/24, state in %s\n' "$n" "$tenant" "$subnet" "$lab"
    for ((i = 1; i <= n; i++)); do
        pid=$(node_pid "$i")
        if alive "$pid"; then state="node pid $pid"; else state="node down"; fi
        printf '  h%-3s %-16s %-14s tmux -L %s\n' "$i" "$(host_ip "$i"):$port" "$state" "$(host_socket "$i")"
    done
}

# ---------------------------------------------------------------- main

cmd=${1:-}
shift || true
case $cmd in
up) up "$@" ;;
down) down ;;
status) status ;;
exec)
    [[ $# -ge 2 ]] || die "usage: $prog exec HOST CMD..."
    need_root exec
    i=$(host_index "$1")
    shift
    if [[ $1 == fleet ]]; then
        shift
        set -- "$(sed -n 's/^fleet=//p' "$lab/state")" "$@"
    fi
    as_host "$i" "$@"
    ;;
sh)
    [[ $# -eq 1 ]] || die "usage: $prog sh HOST"
    need_root sh
    i=$(host_index "$1")
    fleet_dir=$(dirname -- "$(sed -n 's/^fleet=//p' "$lab/state")")
    echo "a shell as h$i (fleet from $fleet_dir; exit to leave)"
    as_host "$i" env PATH="$fleet_dir:$PATH" PS1="[lab h$i] \\w\\$ " bash --norc -i
    ;;
cut | heal)
    [[ $# -eq 1 ]] || die "usage: $prog $cmd HOST"
    need_root "$cmd"
    i=$(host_index "$1")
    if [[ $cmd == cut ]]; then updown=down; else updown=up; fi
    ip -n "$bridge_ns" link set "p$i" "$updown"
    echo "h$i: cable $([[ $cmd == cut ]] && echo pulled || echo plugged back)"
    ;;
stop | start)
    [[ $# -eq 1 ]] || die "usage: $prog $cmd HOST"
    need_root "$cmd"
    i=$(host_index "$1")
    "${cmd}_node" "$i"
    ;;
-h | --help | help | "") usage ;;
*) die "unknown command '$cmd' (see $prog --help)" ;;
esac
