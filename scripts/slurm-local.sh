#!/usr/bin/env bash
# slurm-local.sh -- a single-node Slurm cluster on 127.0.0.1, for tests and for trying the
# SLURM profile on one machine. Needs root and Debian/Ubuntu (apt-get); no systemd required.
#
#   scripts/slurm-local.sh install   apt-get install slurmctld slurmd slurm-client munge (when missing)
#   scripts/slurm-local.sh start     write slurm.conf, start munged + slurmctld + slurmd, wait for the node
#   scripts/slurm-local.sh up        install + start
#   scripts/slurm-local.sh status    daemons and `sinfo`; exit 0 only if all three run
#   scripts/slurm-local.sh smoke     sbatch a one-line job and wait for COMPLETED
#   scripts/slurm-local.sh stop      cancel our jobs, stop the daemons by pidfile, check they are gone
#
# Runtime files (logs/, run/ with pidfiles and the munge socket, state/) live under
# $SLURM_LOCAL_DIR (default /tmp/jkonetstar-slurm). Written outside it: /etc/slurm/slurm.conf,
# because sbatch/squeue/sinfo read it unless SLURM_CONF reaches every process (Snakemake's
# subprocesses included; the SLURM executor's job steps do not see SLURM_CONF, so the file
# location matters). A slurm.conf this script did not write is moved aside on `start` and put
# back on `stop`; `start` refuses to run while another Slurm holds the ports. Every daemon
# listens on 127.0.0.1 only.
#
# Settings that matter (each one was a real failure; see profiles/slurm-ci/profile.yaml too):
#   * no slurmdbd, so `sacct` fails: jobs are polled with squeue, which sees finished jobs for
#     MinJobAge seconds; the Snakemake plugin needs MinJobAge >= 3 x its first poll delay.
#   * DefMemPerCPU: without it a job without --mem takes the whole node and blocks the others.
#   * RealMemory must not exceed what slurmd detects (`free -m` minus a margin), or the node
#     is INVALID.
#   * munged runs as user munge with its socket under $SLURM_LOCAL_DIR; AuthInfo points to it.
set -euo pipefail

SLURM_LOCAL_DIR="${SLURM_LOCAL_DIR:-/tmp/jkonetstar-slurm}"
LOG_DIR="$SLURM_LOCAL_DIR/logs"
RUN_DIR="$SLURM_LOCAL_DIR/run"
STATE_DIR="$SLURM_LOCAL_DIR/state"
MUNGE_SOCKET="$RUN_DIR/munge/munge.socket.2"
CONF=/etc/slurm/slurm.conf
CONF_BACKUP="$CONF.before-jkonetstar"
export SLURM_CONF="$CONF"   # for this script's own sinfo/scontrol/sbatch calls
CONF_MARKER="# written by jkonetstar scripts/slurm-local.sh"
CTLD_PORT="${SLURM_LOCAL_CTLD_PORT:-6817}"
SLURMD_PORT="${SLURM_LOCAL_SLURMD_PORT:-6818}"
MIN_JOB_AGE="${SLURM_LOCAL_MIN_JOB_AGE:-600}"
PACKAGES=(slurmctld slurmd slurm-client munge)
NODE="$(hostname -s)"

say() { printf '[slurm-local] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pidfile_pid() { [ -s "$1" ] && cat "$1" || true; }

packages_installed() {
    local p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
    done
}

cmd_install() {
    if packages_installed; then say "packages present: ${PACKAGES[*]}"; return; fi
    [ "$(id -u)" -eq 0 ] || die "installing ${PACKAGES[*]} needs root (apt-get)"
    command -v apt-get >/dev/null || die "apt-get not found: install ${PACKAGES[*]} by hand"
    if ! apt-cache show slurmctld >/dev/null 2>&1; then
        say "apt-get update"
        apt-get update -qq
    fi
    say "apt-get install ${PACKAGES[*]}"
    # Debian's maintainer scripts may try to start the services; without systemd that is a no-op.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
    packages_installed || die "apt-get finished but ${PACKAGES[*]} are not all installed"
}

write_conf() {
    if [ -e "$CONF" ] && ! grep -qF "$CONF_MARKER" "$CONF"; then
        # Someone else's slurm.conf (no Slurm daemon runs: the ports were free). Keep it aside and
        # put it back on `stop`.
        [ -e "$CONF_BACKUP" ] && die "$CONF is foreign and $CONF_BACKUP exists already; resolve by hand"
        say "moving the existing $CONF to $CONF_BACKUP (restored by 'stop')"
        mv "$CONF" "$CONF_BACKUP"
    fi
    local cpus mem_mb
    cpus="$(nproc)"
    mem_mb="$(free -m | awk '/^Mem:/ {print $2}')"
    mem_mb=$(( mem_mb - 1024 ))
    [ "$mem_mb" -ge 1024 ] || mem_mb=1024
    mkdir -p "$(dirname "$CONF")"
    cat > "$CONF" <<CONF
$CONF_MARKER -- one node on loopback; runtime files under $SLURM_LOCAL_DIR
ClusterName=jkonetstar-local
SlurmctldHost=${NODE}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${MUNGE_SOCKET}
MpiDefault=none
StateSaveLocation=${STATE_DIR}/slurmctld
SlurmdSpoolDir=${STATE_DIR}/slurmd
SlurmctldPidFile=${RUN_DIR}/slurmctld.pid
SlurmdPidFile=${RUN_DIR}/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ReturnToService=2
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=${LOG_DIR}/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
MinJobAge=${MIN_JOB_AGE}
MailProg=/bin/true
KillWait=5
InactiveLimit=0
Waittime=0
NodeName=${NODE} NodeAddr=127.0.0.1 NodeHostname=${NODE} CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
CONF
}

port_busy() {  # port -> 0 if something listens on it
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_munged() {
    local pid; pid="$(pidfile_pid "$RUN_DIR/munged.pid")"
    if alive "$pid"; then say "munged already running (pid $pid)"; return; fi
    mkdir -p "$RUN_DIR/munge"
    chown munge:munge "$RUN_DIR/munge"; chmod 0755 "$RUN_DIR/munge"
    if [ ! -s /etc/munge/munge.key ]; then
        say "creating /etc/munge/munge.key"
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
    : > "$LOG_DIR/munged.log"; chown munge:munge "$LOG_DIR/munged.log"
    runuser -u munge -- /usr/sbin/munged \
        --socket="$MUNGE_SOCKET" \
        --pid-file="$RUN_DIR/munge/munged.pid" \
        --log-file="$LOG_DIR/munged.log" \
        --seed-file="$RUN_DIR/munge/munged.seed"
    local _
    for _ in $(seq 100); do [ -S "$MUNGE_SOCKET" ] && break; sleep 0.1; done
    [ -S "$MUNGE_SOCKET" ] || die "munged did not create $MUNGE_SOCKET; see $LOG_DIR/munged.log"
    cp "$RUN_DIR/munge/munged.pid" "$RUN_DIR/munged.pid"
    munge -n --socket="$MUNGE_SOCKET" | unmunge --socket="$MUNGE_SOCKET" >/dev/null \
        || die "munge round trip failed; see $LOG_DIR/munged.log"
    say "munged up (pid $(cat "$RUN_DIR/munged.pid"))"
}

start_daemon() {  # slurmctld | slurmd
    local name="$1" pid _
    pid="$(pidfile_pid "$RUN_DIR/$name.pid")"
    if alive "$pid"; then say "$name already running (pid $pid)"; return; fi
    "/usr/sbin/$name" -f "$CONF"
    for _ in $(seq 100); do pid="$(pidfile_pid "$RUN_DIR/$name.pid")"; alive "$pid" && break; sleep 0.1; done
    if ! alive "$pid"; then
        say "$name did not start; last lines of $LOG_DIR/$name.log:"
        tail -n 20 "$LOG_DIR/$name.log" >&2 || true
        exit 1
    fi
    say "$name up (pid $pid)"
}

node_state() { sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -n 1 || true; }

cmd_start() {
    [ "$(id -u)" -eq 0 ] || die "starting slurmd/munged needs root"
    packages_installed || die "packages missing (${PACKAGES[*]}); run: $0 install"
    local t0=$SECONDS state="" _
    if ! alive "$(pidfile_pid "$RUN_DIR/slurmctld.pid")"; then
        port_busy "$CTLD_PORT" && die "port $CTLD_PORT is taken by another process (another Slurm?); set SLURM_LOCAL_CTLD_PORT"
    fi
    if ! alive "$(pidfile_pid "$RUN_DIR/slurmd.pid")"; then
        port_busy "$SLURMD_PORT" && die "port $SLURMD_PORT is taken by another process; set SLURM_LOCAL_SLURMD_PORT"
    fi
    mkdir -p "$LOG_DIR" "$RUN_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd"
    write_conf
    start_munged
    start_daemon slurmctld
    start_daemon slurmd
    for _ in $(seq 150); do
        state="$(node_state)"
        case "$state" in idle|mix|alloc) break ;; esac
        sleep 0.2
    done
    case "$state" in
        idle|mix|alloc) ;;
        *) say "node $NODE is '$state'; resuming it"
           scontrol update nodename="$NODE" state=resume 2>/dev/null || true
           sleep 1; state="$(node_state)" ;;
    esac
    case "$state" in
        idle|mix|alloc) say "node $NODE $state after $(( SECONDS - t0 )) s; logs in $LOG_DIR" ;;
        *) die "node $NODE is '$state'; see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log" ;;
    esac
}

stop_pidfile() {  # name pidfile
    local name="$1" file="$2" pid _
    pid="$(pidfile_pid "$file")"
    if ! alive "$pid"; then rm -f "$file"; return 0; fi
    kill -TERM "$pid"
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then say "$name (pid $pid) ignored TERM; sending KILL"; kill -KILL "$pid" || true; sleep 0.3; fi
    alive "$pid" && { say "$name (pid $pid) is still running"; return 1; }
    rm -f "$file"
    say "$name stopped (pid $pid)"
}

cmd_stop() {
    local rc=0 left
    if alive "$(pidfile_pid "$RUN_DIR/slurmctld.pid")"; then
        scancel --user="$(id -un)" 2>/dev/null || true
        sleep 1
    fi
    stop_pidfile slurmd "$RUN_DIR/slurmd.pid" || rc=1
    stop_pidfile slurmctld "$RUN_DIR/slurmctld.pid" || rc=1
    stop_pidfile munged "$RUN_DIR/munged.pid" || rc=1
    rm -f "$RUN_DIR/munge/munged.pid"
    # Leave no slurm.conf of ours behind: Slurm clients (and the SLURM executor plugin, which
    # runs `scontrol show config` whenever Snakemake starts) would wait ~10 s for the stopped
    # controller, where without a slurm.conf they fail at once.
    if [ -e "$CONF" ] && grep -qF "$CONF_MARKER" "$CONF"; then rm -f "$CONF"; fi
    if [ -e "$CONF_BACKUP" ]; then
        mv -f "$CONF_BACKUP" "$CONF"
        say "restored the previous $CONF"
    fi
    # Report (never kill by name) any Slurm process that survived, e.g. an orphaned slurmstepd.
    left="$(ps -eo pid=,comm= | awk '$2 ~ /^(slurmstepd|slurmd|slurmctld|munged)$/' || true)"
    if [ -n "$left" ]; then say "still running:"; printf '%s\n' "$left" >&2; rc=1; fi
    [ "$rc" -eq 0 ] && say "stopped"
    return "$rc"
}

cmd_status() {
    local n pid rc=0
    for n in munged slurmctld slurmd; do
        pid="$(pidfile_pid "$RUN_DIR/$n.pid")"
        if alive "$pid"; then echo "$n: running (pid $pid)"; else echo "$n: stopped"; rc=1; fi
    done
    # sinfo retries for about a minute when no slurmctld answers: ask only a running one.
    [ "$rc" -eq 0 ] && timeout 10 sinfo 2>/dev/null || true
    echo "conf: $CONF  logs: $LOG_DIR"
    return "$rc"
}

cmd_smoke() {
    local id state="" _
    id="$(sbatch --parsable -p debug -t 1 --mem=64 -o "$LOG_DIR/smoke-%j.out" --wrap 'echo smoke-ok')"
    for _ in $(seq 150); do
        state="$(squeue -h -j "$id" --states=all -o '%T' 2>/dev/null || true)"
        case "$state" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;; esac
        sleep 0.2
    done
    echo "job $id: ${state:-unknown}; output: $(cat "$LOG_DIR/smoke-$id.out" 2>/dev/null)"
    [ "$state" = COMPLETED ]
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    up) cmd_install; cmd_start ;;
    status) cmd_status ;;
    smoke) cmd_smoke ;;
    stop) cmd_stop ;;
    *) echo "usage: $0 {install|start|up|status|smoke|stop}" >&2; exit 2 ;;
esac
