# Start a private Docker engine for the container tests when none is reachable, and stop
# exactly that one afterwards. Sourced after bootstrap.sh (uses log and VENV).
# shellcheck shell=bash

ENVPACK_DEV_CACHE="${ENVPACK_DEV_CACHE:-$HOME/.cache/envpack-dev}"
# The PID of the dockerd this shell started; empty when we started none, so that
# stop_dockerd_if_started never touches an engine someone else runs.
ENVPACK_DOCKERD_PID=""

# Same client the tests use, so "reachable" here means reachable for them.
_docker_answers() {
    local py="${VENV:-}/bin/python"
    if [ -x "$py" ]; then
        "$py" - <<'EOF' >/dev/null 2>&1
import docker
docker.from_env(timeout=5).ping()
EOF
    else
        timeout 10 docker version >/dev/null 2>&1
    fi
}

_dockerd_fallback() {
    log "$1"
    log "container tests fall back to bubblewrap (ENVPACK_CONTAINER_BACKEND=bwrap)"
    # A backend forced by the caller stays forced: the tests then say why it is unusable.
    if [ "${ENVPACK_CONTAINER_BACKEND:-auto}" = auto ]; then
        export ENVPACK_CONTAINER_BACKEND=bwrap
    fi
}

start_dockerd_if_needed() {
    if _docker_answers; then
        log "docker engine already reachable; using it"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        _dockerd_fallback "no docker engine reachable and dockerd needs root"
        return 0
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        _dockerd_fallback "no docker engine reachable and no dockerd installed"
        return 0
    fi
    # overlay2 gives each container a layer for free; vfs copies the whole root per
    # container (10-40 s per run on a loaded 2-core machine) but works on any filesystem,
    # e.g. when the data root itself sits on overlayfs. Each driver keeps its own images.
    local driver drivers="${ENVPACK_DOCKER_STORAGE_DRIVER:-overlay2 vfs}"
    for driver in $drivers; do
        if _start_dockerd "$driver"; then
            return 0
        fi
    done
    _dockerd_fallback "dockerd did not start with storage driver(s) $drivers"
}

# Start dockerd with one storage driver and wait until it answers; 0 on success.
_start_dockerd() {
    local driver="$1"
    local data_root="$ENVPACK_DEV_CACHE/docker-data"
    # containerd puts unix sockets under the exec root; their paths must stay under 108 bytes.
    local exec_root="/run/envpack-dockerd"
    local pidfile="$exec_root.pid"
    local logfile="$ENVPACK_DEV_CACHE/dockerd.log"
    local sock="/var/run/docker.sock"
    mkdir -p "$data_root" "$exec_root"
    log "starting dockerd ($driver storage, no iptables, no bridge; log: $logfile)"
    # No registry is reachable and tests run with --network none, so the engine needs
    # neither NAT rules nor a bridge.
    dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver="$driver" \
        --data-root "$data_root" --exec-root "$exec_root" -p "$pidfile" \
        -H "unix://$sock" >"$logfile" 2>&1 </dev/null &
    ENVPACK_DOCKERD_PID=$!
    # Point every client at the engine we started, even if DOCKER_HOST named a dead one.
    export DOCKER_HOST="unix://$sock"
    local i
    for i in $(seq 1 60); do
        if ! kill -0 "$ENVPACK_DOCKERD_PID" 2>/dev/null; then
            ENVPACK_DOCKERD_PID=""
            log "dockerd ($driver) exited during start-up: $(tail -n 2 "$logfile" | tr '\n' ' ')"
            return 1
        fi
        if _docker_answers; then
            log "dockerd $ENVPACK_DOCKERD_PID ($driver) answers after $((i / 2)) s"
            return 0
        fi
        sleep 0.5
    done
    log "dockerd ($driver) did not answer within 30 s"
    stop_dockerd_if_started
    return 1
}

stop_dockerd_if_started() {
    [ -n "$ENVPACK_DOCKERD_PID" ] || return 0
    local pid="$ENVPACK_DOCKERD_PID"
    ENVPACK_DOCKERD_PID=""
    kill -0 "$pid" 2>/dev/null || return 0
    log "stopping dockerd $pid"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    # dockerd stops its own containerd on TERM; give it time before forcing.
    for i in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    log "dockerd $pid ignored TERM for 20 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}
