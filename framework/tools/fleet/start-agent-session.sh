#!/usr/bin/env bash
# start-agent-session.sh: start one fleet agent's tmux session from its env
# file, with a heartbeat writer beside it (protocol v1, docs/protocol.md).
# systemd runs it from mosaic-agent@.service; it works the same by hand.
#
# Usage:
#   start-agent-session.sh AGENT          start AGENT's session; exit 0 if it already runs
#   start-agent-session.sh --stop AGENT   kill exactly the session =AGENT, remove its heartbeat file
#   start-agent-session.sh --help
#
# What it reads: $MOSAIC_HOME/fleet/agents/AGENT.env ($MOSAIC_HOME defaults to
# ~/.config/mosaic). The file is parsed, never sourced: `KEY=value` lines as in a
# systemd EnvironmentFile; blank lines and lines starting with '#' or ';' are
# skipped; an `export ` prefix is allowed; a value wholly in '...' or "..." loses
# the quotes; no $VAR expansion. Keys:
#   RUNTIME_COMMAND    required: the command line the pane runs, as `sh -c "exec RUNTIME_COMMAND"`
#                      (so the pane's pid is the runtime's own)
#   WORKING_DIRECTORY  where the session starts (a leading ~ is $HOME); default $HOME; must exist
#   TMUX_SOCKET_NAME   tmux -L NAME; absent or empty: the default tmux server (no -L)
#   TMUX_SOCKET_PATH   tmux -S PATH, instead of TMUX_SOCKET_NAME
#   RUNTIME            the runtime's name (claude, codex, pi, ...) for MOSAIC_AGENT_RUNTIME;
#                      default: the program of RUNTIME_COMMAND
#   AGENT_CLASS        for MOSAIC_AGENT_CLASS
#   MODEL_HINT         for MOSAIC_MODEL_HINT
#   RESET_COMMAND      for MOSAIC_RESET_COMMAND
#   MOSAIC_*           put into the session's environment as given (MOSAIC_TENANT_ID, MOSAIC_HOST,
#                      MOSAIC_HEARTBEAT_INTERVAL, MOSAIC_HEARTBEAT_RUN_DIR, ...), except
#                      MOSAIC_HOME and MOSAIC_AGENT_NAME, which the file cannot change
#   any other key      ignored
# Only the file says these keys; a MOSAIC_* key the file does not set comes from
# the environment the script was started with (so MOSAIC_HEARTBEAT_INTERVAL,
# seconds, default 15, and MOSAIC_HEARTBEAT_RUN_DIR, default
# $MOSAIC_HOME/fleet/run, come from the file, else from that environment).
#
# Without an env file, if a `fleet` binary is found ($FLEET_BIN, else PATH),
# the script hands over to `fleet start --local AGENT` (or `fleet stop`), which
# reads the roster; otherwise it exits 2 naming the file.
#
# The session: `tmux [-L NAME | -S PATH] new-session -d -s AGENT` with
# MOSAIC_AGENT_NAME, MOSAIC_AGENT_RUNTIME, MOSAIC_AGENT_CLASS, MOSAIC_HOME,
# MOSAIC_HEARTBEAT_RUN_DIR, MOSAIC_HEARTBEAT_INTERVAL, MOSAIC_MODEL_HINT,
# MOSAIC_RESET_COMMAND, MOSAIC_TENANT_ID, MOSAIC_HOST (where set) in its
# environment, `remain-on-exit on` set before the program starts (a program that
# dies is shown dead, not missing). Every target is exact (`=AGENT:`), never a
# prefix match. An existing session is left alone (exit 0); one whose pane is
# dead is respawned. A program that exits within 300 ms is a failed start
# (exit 1).
#
# The heartbeat writer: a detached process (it outlives this script) that
# rewrites $MOSAIC_HEARTBEAT_RUN_DIR/AGENT.hb atomically (temp file + mv) every
# interval with `ts=<UTC ISO-8601>`, `pid=<pane pid>`, `status=ok`; the first
# beat once the program has lived a second; it exits within a second of the
# pane's process being gone.
#
# Exit codes: 0 started or already running (or stopped / not running);
# 1 the start failed; 2 bad input (no env file, no RUNTIME_COMMAND, bad name,
# missing working directory).
set -euo pipefail

prog=${0##*/}

die() { # CODE MESSAGE
    printf '%s: %s\n' "$prog" "$2" >&2
    exit "$1"
}

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------- heartbeat writer

# The start time of a live process (Linux /proc), to tell it from a later
# process that reuses its pid; fails for a process that is gone or a zombie.
proc_start() { # PID
    local stat rest
    local -a f
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    case ${f[0]} in Z | X) return 1 ;; esac
    printf '%s\n' "${f[19]}"
}

# Whether PID (born at BORN, empty where there is no /proc) still runs.
alive() { # PID BORN
    if [[ -n $2 ]]; then
        [[ "$(proc_start "$1" || true)" == "$2" ]]
    else
        kill -0 "$1" 2>/dev/null
    fi
}

now_unix() {
    if ((BASH_VERSINFO[0] > 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] >= 2))); then
        printf '%(%s)T\n' -1
    else
        date +%s
    fi
}

now_iso() {
    if ((BASH_VERSINFO[0] > 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] >= 2))); then
        printf '%(%Y-%m-%dT%H:%M:%S+0000)T\n' -1
    else
        date -u +%Y-%m-%dT%H:%M:%S+0000
    fi
}

# Write FILE for PID every INTERVAL seconds until PID is gone.
heartbeat_writer() { # PID FILE INTERVAL
    local pid=$1 file=$2 interval=$3 born="" dir tmp now next
    trap '' HUP INT
    export TZ=UTC
    if [[ -d /proc/self ]]; then
        born=$(proc_start "$pid") || exit 0
    fi
    dir=$(dirname -- "$file")
    next=$(($(now_unix) + 1))
    while sleep 1; do
        alive "$pid" "$born" || exit 0
        now=$(now_unix)
        ((now >= next)) || continue
        next=$((now + interval))
        mkdir -p -- "$dir" 2>/dev/null || continue
        tmp=$(mktemp "$dir/.hb-XXXXXX" 2>/dev/null) || continue
        if printf 'ts=%s\npid=%s\nstatus=ok\n' "$(now_iso)" "$pid" >"$tmp"; then
            mv -f -- "$tmp" "$file" || rm -f -- "$tmp"
        else
            rm -f -- "$tmp"
        fi
    done
}

if [[ ${1:-} == --heartbeat-writer ]]; then
    [[ $# -eq 4 ]] || die 2 "usage: $prog --heartbeat-writer PID FILE INTERVAL"
    heartbeat_writer "$2" "$3" "$4"
    exit 0
fi

# ---------------------------------------------------------------- arguments

mode=start
case ${1:-} in
-h | --help)
    usage
    exit 0
    ;;
--stop)
    mode=stop
    shift
    ;;
esac
[[ $# -eq 1 ]] || die 2 "usage: $prog [--stop] AGENT (see --help)"
name=$1
if [[ -z $name || ${#name} -gt 128 || $name == *[!A-Za-z0-9_.-]* ]]; then
    die 2 "agent name '$name' is not valid: letters, digits, '_', '-', at most 128 characters"
fi
if [[ $name == *.* ]]; then
    die 2 "agent name '$name' contains '.', which tmux turns into '_' (the session would be '${name//./_}'); use '_' or '-'"
fi

mosaic_home=${MOSAIC_HOME:-${HOME:?HOME is not set}/.config/mosaic}
env_file=$mosaic_home/fleet/agents/$name.env

# ---------------------------------------------------------------- the env file

env_keys=()
env_vals=()

# The value of KEY in the env file; fails when the file does not set it.
file_get() { # KEY
    local i
    for ((i = ${#env_keys[@]} - 1; i >= 0; i--)); do
        if [[ ${env_keys[i]} == "$1" ]]; then
            printf '%s' "${env_vals[i]}"
            return 0
        fi
    done
    return 1
}

# KEY from the file, else DEFAULT; a MOSAIC_* key also from the environment.
setting() { # KEY DEFAULT
    local v
    if v=$(file_get "$1"); then
        printf '%s' "$v"
    elif [[ $1 == MOSAIC_* ]]; then
        printf '%s' "${!1:-$2}"
    else
        printf '%s' "$2"
    fi
}

parse_env_file() { # FILE
    local line key value n=0
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        line=${line%$'\r'}
        line=${line#"${line%%[![:space:]]*}"}
        [[ -z $line || $line == '#'* || $line == ';'* ]] && continue
        line=${line#export }
        [[ $line == *=* ]] || die 2 "$1:$n: expected KEY=value, found '$line'"
        key=${line%%=*}
        key=${key%"${key##*[![:space:]]}"}
        value=${line#*=}
        value=${value#"${value%%[![:space:]]*}"}
        value=${value%"${value##*[![:space:]]}"}
        [[ $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die 2 "$1:$n: '$key' is not a variable name"
        if [[ ${#value} -ge 2 && $value == \"*\" ]]; then
            value=${value:1:${#value}-2}
            value=${value//\\\"/\"}
            value=${value//\\\\/\\}
        elif [[ ${#value} -ge 2 && $value == \'*\' ]]; then
            value=${value:1:${#value}-2}
        fi
        env_keys+=("$key")
        env_vals+=("$value")
    done <"$1"
}

if [[ ! -e $env_file ]]; then
    fleet_bin=${FLEET_BIN:-}
    [[ -n $fleet_bin && -x $fleet_bin ]] || fleet_bin=$(command -v fleet || true)
    if [[ -n $fleet_bin ]]; then
        printf '%s: no %s; handing over to %s %s --local %s (the roster)\n' \
            "$prog" "$env_file" "$fleet_bin" "$mode" "$name"
        exec "$fleet_bin" "$mode" --local -- "$name"
    fi
    die 2 "no env file $env_file for agent $name: write one (RUNTIME_COMMAND=..., see --help), or install fleet to start agents from the roster"
fi
[[ -r $env_file ]] || die 2 "cannot read $env_file"
parse_env_file "$env_file"

# ---------------------------------------------------------------- settings

command -v tmux >/dev/null 2>&1 || die 2 "tmux is not installed (or not on PATH)"
socket_name=$(setting TMUX_SOCKET_NAME "")
socket_path=$(setting TMUX_SOCKET_PATH "")
tmux_cmd=(tmux)
socket_shown="the default tmux server"
if [[ -n $socket_name && -n $socket_path ]]; then
    die 2 "$env_file: give TMUX_SOCKET_NAME or TMUX_SOCKET_PATH, not both"
elif [[ -n $socket_name ]]; then
    [[ $socket_name != */* ]] || die 2 "$env_file: TMUX_SOCKET_NAME '$socket_name' contains '/'; use TMUX_SOCKET_PATH for a path"
    tmux_cmd+=(-L "$socket_name")
    socket_shown="tmux socket -L $socket_name"
elif [[ -n $socket_path ]]; then
    tmux_cmd+=(-S "$socket_path")
    socket_shown="tmux socket -S $socket_path"
fi
# Address the server named here, never the one of a pane this runs in.
unset TMUX

run_dir=$(setting MOSAIC_HEARTBEAT_RUN_DIR "$mosaic_home/fleet/run")
hb_file=$run_dir/$name.hb

# A value made safe as one tmux argument: tmux reads an argument that ends in
# ';' as the end of a command, so a trailing ';' is written '\;'.
esc() { # VALUE
    local v=$1
    if [[ $v == *';' ]]; then
        v="${v%;}\\;"
    fi
    printf '%s' "$v"
}

# Run tmux: its output is in $tmux_out, or on failure in $tmux_err.
tmux_out=""
tmux_err=""
tm() {
    local out
    if out=$("${tmux_cmd[@]}" "$@" 2>&1); then
        tmux_out=$out
        return 0
    fi
    tmux_err=$out
    return 1
}

# Whether session =NAME exists; a server that does not run has none.
has_session() {
    if tm has-session -t "=$name:"; then
        return 0
    fi
    case $tmux_err in
    *"can't find session"* | *"no server running"* | *"No such file or directory"* | *"session not found"*) return 1 ;;
    esac
    die 1 "tmux has-session on $socket_shown failed: $tmux_err"
}

# ---------------------------------------------------------------- stop

if [[ $mode == stop ]]; then
    if has_session; then
        if tm kill-session -t "=$name:"; then
            outcome="stopped"
        else
            has_session && die 1 "cannot kill session $name on $socket_shown: $tmux_err"
            outcome="not running"
        fi
    else
        outcome="not running"
    fi
    rm -f -- "$hb_file"
    printf '%s: %s on %s\n' "$name" "$outcome" "$socket_shown"
    exit 0
fi

# ---------------------------------------------------------------- start

runtime_command=$(file_get RUNTIME_COMMAND || true)
[[ -n $runtime_command ]] || die 2 "$env_file: RUNTIME_COMMAND is missing or empty: the command the agent's pane runs"

interval=$(setting MOSAIC_HEARTBEAT_INTERVAL 15)
[[ $interval =~ ^[0-9]+$ && $interval -gt 0 ]] ||
    die 2 "MOSAIC_HEARTBEAT_INTERVAL='$interval' is not a positive number of seconds"

workdir=$(setting WORKING_DIRECTORY "$HOME")
case $workdir in
\~) workdir=$HOME ;;
\~/*) workdir=$HOME/${workdir#??} ;;
esac

# The runtime's name: RUNTIME, else the program of the command (after exec,
# env and NAME=value words).
runtime=$(setting RUNTIME "")
if [[ -z $runtime ]]; then
    read -r -a words <<<"$runtime_command"
    for w in "${words[@]}"; do
        case $w in
        exec | env | *=*) continue ;;
        *)
            runtime=${w##*/}
            break
            ;;
        esac
    done
fi

# The session's environment, one `-e KEY=value` pair per variable, no key twice.
session_env=()
add_env() { # KEY VALUE
    local i
    for ((i = 0; i < ${#session_env[@]}; i += 2)); do
        if [[ ${session_env[i + 1]} == "$1="* ]]; then
            session_env[i + 1]=$(esc "$1=$2")
            return 0
        fi
    done
    session_env+=(-e "$(esc "$1=$2")")
}
for ((i = 0; i < ${#env_keys[@]}; i++)); do
    case ${env_keys[i]} in
    MOSAIC_HOME | MOSAIC_AGENT_NAME) ;;
    MOSAIC_*) add_env "${env_keys[i]}" "${env_vals[i]}" ;;
    esac
done
add_env MOSAIC_AGENT_NAME "$name"
add_env MOSAIC_AGENT_RUNTIME "$runtime"
add_env MOSAIC_HOME "$mosaic_home"
add_env MOSAIC_HEARTBEAT_RUN_DIR "$run_dir"
add_env MOSAIC_HEARTBEAT_INTERVAL "$interval"
for pair in AGENT_CLASS:MOSAIC_AGENT_CLASS MODEL_HINT:MOSAIC_MODEL_HINT RESET_COMMAND:MOSAIC_RESET_COMMAND \
    MOSAIC_TENANT_ID:MOSAIC_TENANT_ID MOSAIC_HOST:MOSAIC_HOST; do
    value=$(setting "${pair%%:*}" "")
    [[ -z $value ]] || add_env "${pair#*:}" "$value"
done

target="=$name:"
# `exec` keeps the pane's pid on the runtime itself (a command that already
# starts with exec keeps its own: `exec exec x` fails in dash).
case $runtime_command in
exec[[:space:]]*) shell_command=$runtime_command ;;
*) shell_command="exec $runtime_command" ;;
esac

dead=false
if has_session; then
    tm list-panes -t "$target" -F '#{pane_dead}' || die 1 "tmux list-panes $target failed: $tmux_err"
    if [[ ${tmux_out%%$'\n'*} != 1 ]]; then
        printf '%s: already running on %s; nothing to do\n' "$name" "$socket_shown"
        exit 0
    fi
    dead=true
fi

[[ -d $workdir ]] || die 2 "working directory '$workdir' of agent $name does not exist; create it or fix WORKING_DIRECTORY in $env_file"
mkdir -p -- "$run_dir" || die 1 "cannot create the heartbeat directory $run_dir"

if $dead; then
    # The program exited and the pane was kept (remain-on-exit): run it again,
    # with what the env file says now.
    tm respawn-pane -k -t "$target" -c "$(esc "$workdir")" "${session_env[@]}" -- sh -c "$(esc "$shell_command")" ||
        die 1 "cannot respawn the dead pane of $name: $tmux_err"
    verb="restarted (its pane was dead)"
else
    # The session starts on a placeholder, remain-on-exit is set, then the real
    # program replaces the placeholder: a program that dies at once leaves a
    # dead pane with its exit status, never a vanished session.
    if ! tm new-session -d -s "$name" -c "$(esc "$workdir")" "${session_env[@]}" -- sleep 60 \; \
        set-option -p -t "$target" remain-on-exit on \; \
        respawn-pane -k -t "$target" -c "$(esc "$workdir")" -- sh -c "$(esc "$shell_command")"; then
        case $tmux_err in
        *"duplicate session"*)
            printf '%s: already running on %s (started meanwhile); nothing to do\n' "$name" "$socket_shown"
            exit 0
            ;;
        esac
        die 1 "cannot start session $name on $socket_shown: $tmux_err"
    fi
    verb="started"
fi

# A program that exits at once is a failed start.
sleep 0.3
if ! tm list-panes -t "$target" -F '#{pane_dead}:#{pane_pid}:#{pane_dead_status}'; then
    die 1 "the program of agent $name exited at once (session gone); run '$runtime_command' by hand in $workdir to see why"
fi
IFS=: read -r pane_dead pane_pid pane_status <<<"${tmux_out%%$'\n'*}" || true
if [[ $pane_dead == 1 ]]; then
    die 1 "the program of agent $name exited at once (status ${pane_status:-unknown}); run '$runtime_command' by hand in $workdir to see why"
fi
[[ $pane_pid =~ ^[0-9]+$ ]] || die 1 "cannot read the pane pid of $name (tmux said '$tmux_out')"

# The heartbeat writer: detached (own session where setsid exists), so it
# outlives this script; it ends with the pane's process.
self=${BASH_SOURCE[0]}
[[ $self == /* ]] || self=$PWD/$self
if command -v setsid >/dev/null 2>&1; then
    setsid "$BASH" "$self" --heartbeat-writer "$pane_pid" "$hb_file" "$interval" </dev/null >/dev/null 2>&1 &
else
    nohup "$BASH" "$self" --heartbeat-writer "$pane_pid" "$hb_file" "$interval" </dev/null >/dev/null 2>&1 &
fi
writer_pid=$!
printf '%s: %s on %s (pane pid %s); heartbeat writer pid %s writes %s every %ss\n' \
    "$name" "$verb" "$socket_shown" "$pane_pid" "$writer_pid" "$hb_file" "$interval"
