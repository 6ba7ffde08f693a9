#!/usr/bin/env bash
# A real one-node Slurm 22.05 cluster with accounting (slurmdbd + MariaDB) on this machine,
# for testing submitit launchers against the real thing. Debian 12, run as root, no systemd.
# See --help.
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Settings (override through the environment).
# ---------------------------------------------------------------------------------------------
CLUSTER_NAME="${SLURM_LOCAL_CLUSTER:-localcluster}"
PARTITION="${SLURM_LOCAL_PARTITION:-debug}"
ACCOUNT="${SLURM_LOCAL_ACCOUNT:-lab}"
# Largest array index + 1. Slurm's default is 1001 as well; we pin it so that a map_array over
# more items than this fails here (sbatch: "Invalid job array specification") just as on a
# typical cluster, instead of depending on whatever a future default is. Callers split the work.
MAX_ARRAY_SIZE="${SLURM_LOCAL_MAX_ARRAY_SIZE:-1001}"
# Memory a job gets per CPU when it does not ask for any (memory is a consumable resource here).
DEF_MEM_PER_CPU_MB="${SLURM_LOCAL_DEF_MEM_PER_CPU_MB:-1024}"
WAIT_S="${SLURM_LOCAL_WAIT_S:-60}"

PACKAGES=(munge slurm-client slurmctld slurmd slurmdbd mariadb-server slurm-wlm-mysql-plugin)

SLURM_ETC=/etc/slurm
SLURM_CONF="$SLURM_ETC/slurm.conf"
SLURMDBD_CONF="$SLURM_ETC/slurmdbd.conf"
SLURM_RUN=/run/slurm
SLURM_LOG=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd

CTLD_PID="$SLURM_RUN/slurmctld.pid"
SLURMD_PID="$SLURM_RUN/slurmd.pid"
DBD_PID="$SLURM_RUN/slurmdbd.pid"
CTLD_LOG="$SLURM_LOG/slurmctld.log"
SLURMD_LOG="$SLURM_LOG/slurmd.log"
DBD_LOG="$SLURM_LOG/slurmdbd.log"

MUNGE_RUN=/run/munge
MUNGE_PID="$MUNGE_RUN/munged.pid"
MUNGE_LOG=/var/log/munge/munged.log
MUNGE_KEY=/etc/munge/munge.key

MYSQL_RUN=/run/mysqld
MYSQL_PID="$MYSQL_RUN/mysqld.pid"
MYSQL_SOCK="$MYSQL_RUN/mysqld.sock"
MYSQL_LOG=/var/log/mysql/error.log
DB_NAME=slurm_acct_db
DB_USER=slurm

LOCK_FILE=/run/slurm-local.lock

usage() {
    cat <<EOF
Usage: bash scripts/slurm-local.sh {start|stop|status|restart} [options]

A real one-node Slurm 22.05 cluster with job accounting on this machine (Debian 12, root,
no systemd). Daemons are started directly and stopped through their pid files.

  start     Install the Debian packages if missing (${PACKAGES[*]}),
            write the configuration, start munged, mariadbd, slurmdbd, slurmctld and slurmd,
            register the accounting cluster/account/users, wait until the node is idle and
            sacct answers, then print a summary. Idempotent: a second start only checks.
  stop      Cancel all jobs (unless --keep-jobs), then stop slurmd, slurmctld, slurmdbd,
            mariadbd and munged through their pid files.
  status    Print each daemon's state, the node state and whether sacct answers.
            Exits 0 only when the cluster is usable (node idle/mixed/allocated and sacct works).
  restart   stop, then start.

Options:
  --keep-jobs   (stop) leave jobs alone; slurmd re-attaches to running steps on the next start.
  -h, --help    this text.

Cluster: ClusterName=$CLUSTER_NAME, one node (line from 'slurmd -C'), partition '$PARTITION'
(Default=YES), MaxArraySize=$MAX_ARRAY_SIZE (array indices 0..$((MAX_ARRAY_SIZE - 1))),
memory is consumable (DefMemPerCPU=${DEF_MEM_PER_CPU_MB} MB), accounting account '$ACCOUNT'
with users root and \$SUDO_USER / \$SLURM_LOCAL_USERS.

Environment overrides: SLURM_LOCAL_CLUSTER, SLURM_LOCAL_PARTITION, SLURM_LOCAL_ACCOUNT,
SLURM_LOCAL_USERS (space-separated extra users), SLURM_LOCAL_MAX_ARRAY_SIZE,
SLURM_LOCAL_DEF_MEM_PER_CPU_MB, SLURM_LOCAL_WAIT_S (seconds to wait for readiness, default 60).

Files: $SLURM_ETC/{slurm.conf,slurmdbd.conf}, $CTLD_SPOOL, $SLURMD_SPOOL,
logs in $SLURM_LOG/{slurmctld,slurmd,slurmdbd}.log, $MUNGE_LOG, $MYSQL_LOG,
pid files in $SLURM_RUN, $MUNGE_RUN, $MYSQL_RUN.
EOF
}

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
info() { printf '[slurm-local] %s\n' "$*"; }
warn() { printf '[slurm-local] WARNING: %s\n' "$*" >&2; }
die() { printf '[slurm-local] ERROR: %s\n' "$*" >&2; exit 1; }

# die_with_log MESSAGE LOGFILE: fail, pointing at the daemon log and showing its tail.
die_with_log() {
    local msg="$1" log="$2"
    printf '[slurm-local] ERROR: %s\n' "$msg" >&2
    if [[ -n "$LAST_OUTPUT" ]]; then
        printf '[slurm-local] last attempt said:\n' >&2
        tail -n 5 <<<"$LAST_OUTPUT" | sed 's/^/    /' >&2
    fi
    printf '[slurm-local] See %s; last lines:\n' "$log" >&2
    if [[ -r "$log" ]]; then tail -n 15 "$log" | sed 's/^/    /' >&2; else echo "    (no log yet)" >&2; fi
    exit 1
}

require_root() {
    [[ $EUID -eq 0 ]] || die "'$1' must run as root (it installs packages and starts daemons)."
}

# alive PID: the process exists and is not a zombie. Daemons are re-parented to PID 1, which
# may reap them only seconds after they exit (it does in gVisor containers).
alive() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ -n "$stat" && "${stat:0:1}" != Z ]]
}

# pid_of PIDFILE COMM: print the pid when the file names a live process whose command is COMM.
# Checking the command guards against a stale pid file whose pid was reused by something else.
pid_of() {
    local pidfile="$1" comm="$2" pid
    [[ -r "$pidfile" ]] || return 1
    pid="$(tr -dc '0-9' <"$pidfile")"
    [[ -n "$pid" ]] && alive "$pid" || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]] || return 1
    printf '%s\n' "$pid"
}

# wait_for SECONDS COMMAND...: retry COMMAND every 0.2 s until it succeeds or time runs out.
# The output of the last failed attempt is kept in LAST_OUTPUT for the error message.
LAST_OUTPUT=""
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until LAST_OUTPUT="$("$@" 2>&1)"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
    LAST_OUTPUT=""
}

# stop_by_pidfile NAME PIDFILE COMM [SECONDS]: SIGTERM the pid in PIDFILE, wait, SIGKILL if needed.
stop_by_pidfile() {
    local name="$1" pidfile="$2" comm="$3" grace="${4:-30}" pid deadline
    if ! pid="$(pid_of "$pidfile" "$comm")"; then
        info "$name: not running"
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + grace))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid"; then
        warn "$name (pid $pid) did not exit within ${grace}s of SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
    info "$name: stopped (was pid $pid)"
}

# install_file PATH MODE OWNER < CONTENT: write only when the content differs. Returns 0 when it
# changed the file, 1 when it was already up to date.
install_file() {
    local path="$1" mode="$2" owner="$3" tmp
    tmp="$(mktemp)"
    cat >"$tmp"
    if [[ -f "$path" ]] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
        chmod "$mode" "$path"; chown "$owner" "$path"
        return 1
    fi
    install -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$tmp" "$path"
    rm -f "$tmp"
    return 0
}

mysql_root() { mariadb --protocol=socket --socket="$MYSQL_SOCK" -uroot; }

# ---------------------------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------------------------
missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" == "install ok installed" ]] \
            || printf '%s\n' "$p"
    done
}

install_packages() {
    local missing
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        info "packages: already installed"
        return 0
    fi
    info "packages: installing ${missing[*]}"
    # Package scripts must not try to start services: we start the daemons ourselves. Containers
    # usually ship a policy-rc.d that forbids it; add a temporary one when there is none.
    local added_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends)
    local rc=0
    "${apt[@]}" "${missing[@]}" >/var/log/slurm-local-apt.log 2>&1 || rc=$?
    if ((rc != 0)); then
        info "packages: install failed, running apt-get update and retrying"
        rc=0
        { apt-get update -q && "${apt[@]}" "${missing[@]}"; } >>/var/log/slurm-local-apt.log 2>&1 || rc=$?
    fi
    ((added_policy)) && rm -f /usr/sbin/policy-rc.d
    ((rc == 0)) || die_with_log "apt-get install ${missing[*]} failed" /var/log/slurm-local-apt.log
    info "packages: installed"
}

# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
prepare_dirs() {
    getent passwd munge >/dev/null || die "user 'munge' is missing; is the munge package installed?"
    getent passwd slurm >/dev/null || die "user 'slurm' is missing; is slurm-client installed?"
    getent passwd mysql >/dev/null || die "user 'mysql' is missing; is mariadb-server installed?"

    install -d -m 0755 -o munge -g munge "$MUNGE_RUN"
    install -d -m 0700 -o munge -g munge /var/log/munge /var/lib/munge /etc/munge
    install -d -m 0755 -o mysql -g mysql "$MYSQL_RUN"
    install -d -m 2750 -o mysql -g adm /var/log/mysql
    install -d -m 0755 -o root -g root "$SLURM_ETC"
    install -d -m 0755 -o slurm -g slurm "$SLURM_RUN" "$SLURM_LOG" "$CTLD_SPOOL"
    install -d -m 0755 -o root -g root "$SLURMD_SPOOL"
    # slurmd writes its log as root; slurmctld and slurmdbd as slurm.
    touch "$SLURMD_LOG" "$CTLD_LOG" "$DBD_LOG"
    chown slurm:slurm "$CTLD_LOG" "$DBD_LOG"
    # munged refuses a log file it does not own or that others may write; mariadbd writes its own.
    touch "$MUNGE_LOG" "$MYSQL_LOG"
    chown munge:munge "$MUNGE_LOG"; chmod 0640 "$MUNGE_LOG"
    chown mysql:adm "$MYSQL_LOG"; chmod 0640 "$MYSQL_LOG"

    if [[ ! -s "$MUNGE_KEY" ]]; then
        info "munge: creating $MUNGE_KEY"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge "$MUNGE_KEY"; chmod 0400 "$MUNGE_KEY"
}

db_password() {
    # Reuse the password already written into slurmdbd.conf so MariaDB and slurmdbd stay in sync.
    local pass=""
    if [[ -r "$SLURMDBD_CONF" ]]; then
        pass="$(sed -n 's/^StoragePass=//p' "$SLURMDBD_CONF" | head -n 1)"
    fi
    if [[ -z "$pass" ]]; then
        pass="$(od -An -N 18 -tx1 /dev/urandom | tr -d ' \n')"
    fi
    printf '%s\n' "$pass"
}

node_line() {
    # 'slurmd -C' prints e.g. "NodeName=vm CPUs=2 ... RealMemory=23000" then "UpTime=...".
    local line
    line="$(slurmd -C 2>/dev/null || true)"
    line="$(grep -m1 '^NodeName=' <<<"$line")" \
        || die "'slurmd -C' printed no NodeName line; run it by hand to see why."
    printf '%s NodeAddr=127.0.0.1 State=UNKNOWN\n' "$line"
}

# render_slurm_conf HOST NODE_LINE
render_slurm_conf() {
    local host="$1" node="$2"
    cat <<EOF
# Written by scripts/slurm-local.sh - a one-node test cluster. Edits are overwritten on start.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
# Short credential lifetime: otherwise a requeued job waits up to 120 s before it may run again.
AuthInfo=cred_expire=10
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in containers: track processes through /proc and bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
# Schedule every second; otherwise array tasks and requeued jobs can wait up to a minute.
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM_PER_CPU_MB
# Array indices 0..$((MAX_ARRAY_SIZE - 1)), as on many real clusters: a larger submitit map_array is
# refused by sbatch and has to be split by the caller.
MaxArraySize=$MAX_ARRAY_SIZE
MaxJobCount=10000
# Cancelled/timed-out jobs get SIGKILL 5 s after SIGTERM (default 30 s).
KillWait=5
InactiveLimit=0
MinJobAge=300
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
$node
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

# render_slurmdbd_conf PASSWORD
render_slurmdbd_conf() {
    local pass="$1"
    cat <<EOF
# Written by scripts/slurm-local.sh. Edits are overwritten on start.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=$DBD_PID
LogFile=$DBD_LOG
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$pass
StorageLoc=$DB_NAME
EOF
}

# Writes slurm.conf and slurmdbd.conf; sets SLURM_CONF_CHANGED / DBD_CONF_CHANGED to 1 when the
# file was rewritten (the daemon then needs a restart), plus NODE_NAME and DB_PASS.
write_configs() {
    local node
    node="$(node_line)"
    NODE_NAME="$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$node")"
    DB_PASS="$(db_password)"

    SLURM_CONF_CHANGED=0
    if render_slurm_conf "$(hostname -s)" "$node" | install_file "$SLURM_CONF" 0644 root:root; then
        SLURM_CONF_CHANGED=1
    fi
    DBD_CONF_CHANGED=0
    if render_slurmdbd_conf "$DB_PASS" | install_file "$SLURMDBD_CONF" 0600 slurm:slurm; then
        DBD_CONF_CHANGED=1
    fi
}

# ---------------------------------------------------------------------------------------------
# Daemons
# ---------------------------------------------------------------------------------------------
start_munged() {
    if pid_of "$MUNGE_PID" munged >/dev/null; then
        info "munged: running"
    else
        rm -f "$MUNGE_PID"
        runuser -u munge -- /usr/sbin/munged >>"$MUNGE_LOG" 2>&1 9>&- \
            || die_with_log "munged failed to start" "$MUNGE_LOG"
        info "munged: started"
    fi
    wait_for 10 bash -c 'munge -n | unmunge' \
        || die_with_log "munge credentials do not round-trip (munge -n | unmunge)" "$MUNGE_LOG"
}

start_mariadb() {
    if pid_of "$MYSQL_PID" mariadbd >/dev/null; then
        info "mariadbd: running"
    else
        rm -f "$MYSQL_PID"
        if [[ ! -d /var/lib/mysql/mysql ]]; then
            info "mariadbd: initialising /var/lib/mysql"
            mariadb-install-db --user=mysql --datadir=/var/lib/mysql >>"$MYSQL_LOG" 2>&1 \
                || die_with_log "mariadb-install-db failed" "$MYSQL_LOG"
        fi
        # setsid: detach from this shell's session so the server outlives it. The InnoDB values are
        # the least slurmdbd accepts without logging "Database settings not recommended values"
        # (the buffer pool is reserved, not resident, until used).
        setsid /usr/sbin/mariadbd --user=mysql --pid-file="$MYSQL_PID" --socket="$MYSQL_SOCK" \
            --log-error="$MYSQL_LOG" --innodb-buffer-pool-size=512M --innodb-lock-wait-timeout=900 \
            </dev/null >>"$MYSQL_LOG" 2>&1 9>&- &
        info "mariadbd: started"
    fi
    wait_for 30 mariadb-admin --socket="$MYSQL_SOCK" ping \
        || die_with_log "mariadbd does not answer on $MYSQL_SOCK" "$MYSQL_LOG"
    wait_for 5 pid_of "$MYSQL_PID" mariadbd \
        || die_with_log "mariadbd wrote no pid file $MYSQL_PID" "$MYSQL_LOG"

    # Database and user for slurmdbd (idempotent; also re-syncs the password).
    mysql_root <<EOF || die_with_log "could not create the $DB_NAME database / $DB_USER user" "$MYSQL_LOG"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
EOF
}

sacctmgr_ok() { timeout 10 sacctmgr -n -P list cluster format=cluster; }

start_slurmdbd() {
    if pid_of "$DBD_PID" slurmdbd >/dev/null && ((DBD_CONF_CHANGED)); then
        info "slurmdbd: configuration changed, restarting"
        stop_by_pidfile slurmdbd "$DBD_PID" slurmdbd
    fi
    if pid_of "$DBD_PID" slurmdbd >/dev/null; then
        info "slurmdbd: running"
    else
        rm -f "$DBD_PID"
        /usr/sbin/slurmdbd >>"$DBD_LOG" 2>&1 9>&- || die_with_log "slurmdbd failed to start" "$DBD_LOG"
        info "slurmdbd: started"
    fi
    wait_for 30 sacctmgr_ok || die_with_log "slurmdbd does not answer (sacctmgr list cluster)" "$DBD_LOG"
}

# Cluster, account and users in the accounting database, so that sacct/sacctmgr show real data.
setup_accounting() {
    local users=(root) u
    [[ -n "${SUDO_USER:-}" && "${SUDO_USER}" != root ]] && users+=("$SUDO_USER")
    # shellcheck disable=SC2206
    [[ -n "${SLURM_LOCAL_USERS:-}" ]] && users+=(${SLURM_LOCAL_USERS})

    if [[ -z "$(timeout 10 sacctmgr -n -P list cluster "$CLUSTER_NAME" format=cluster)" ]]; then
        timeout 20 sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null \
            || die_with_log "sacctmgr add cluster $CLUSTER_NAME failed" "$DBD_LOG"
        info "accounting: added cluster $CLUSTER_NAME"
    fi
    if [[ -z "$(timeout 10 sacctmgr -n -P list account "$ACCOUNT" format=account)" ]]; then
        timeout 20 sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER_NAME" \
            description="local test account" organization=lab >/dev/null \
            || die_with_log "sacctmgr add account $ACCOUNT failed" "$DBD_LOG"
        info "accounting: added account $ACCOUNT"
    fi
    for u in "${users[@]}"; do
        if [[ -z "$(timeout 10 sacctmgr -n -P list assoc cluster="$CLUSTER_NAME" account="$ACCOUNT" \
                user="$u" format=user)" ]]; then
            timeout 20 sacctmgr -i add user "$u" account="$ACCOUNT" cluster="$CLUSTER_NAME" \
                defaultaccount="$ACCOUNT" >/dev/null \
                || die_with_log "sacctmgr add user $u failed" "$DBD_LOG"
            info "accounting: added user $u to account $ACCOUNT"
        fi
    done
}

start_slurmctld() {
    if pid_of "$CTLD_PID" slurmctld >/dev/null && ((SLURM_CONF_CHANGED)); then
        info "slurmctld: configuration changed, restarting"
        stop_by_pidfile slurmctld "$CTLD_PID" slurmctld
    fi
    if pid_of "$CTLD_PID" slurmctld >/dev/null; then
        info "slurmctld: running"
    else
        rm -f "$CTLD_PID"
        /usr/sbin/slurmctld >>"$CTLD_LOG" 2>&1 9>&- || die_with_log "slurmctld failed to start" "$CTLD_LOG"
        info "slurmctld: started"
    fi
    wait_for 30 bash -c 'timeout 5 scontrol ping | grep -q UP' \
        || die_with_log "slurmctld does not answer (scontrol ping)" "$CTLD_LOG"
}

start_slurmd() {
    if pid_of "$SLURMD_PID" slurmd >/dev/null && ((SLURM_CONF_CHANGED)); then
        info "slurmd: configuration changed, restarting"
        stop_by_pidfile slurmd "$SLURMD_PID" slurmd
    fi
    if pid_of "$SLURMD_PID" slurmd >/dev/null; then
        info "slurmd: running"
    else
        rm -f "$SLURMD_PID"
        /usr/sbin/slurmd >>"$SLURMD_LOG" 2>&1 9>&- || die_with_log "slurmd failed to start" "$SLURMD_LOG"
        info "slurmd: started"
    fi
    wait_for 10 pid_of "$SLURMD_PID" slurmd || die_with_log "slurmd is not running" "$SLURMD_LOG"
}

node_state() { timeout 5 sinfo -h -N -n "$1" -o '%T' 2>/dev/null | head -n 1; }

sacct_ok() { timeout 10 sacct -n -X -S now-1hours -o JobID >/dev/null 2>&1; }

wait_until_ready() {
    local deadline=$((SECONDS + WAIT_S)) state="" resumed=0
    while :; do
        state="$(node_state "$NODE_NAME" || true)"
        # "planned" = idle, but reserved by the backfill scheduler for a pending job: usable.
        case "$state" in
            idle | mixed | allocated | completing | planned) break ;;
            down* | drain*)
                if ((!resumed)); then
                    # e.g. left drained by an earlier unclean stop; the node is ours, bring it back.
                    timeout 5 scontrol update nodename="$NODE_NAME" state=resume >/dev/null 2>&1 || true
                    resumed=1
                fi ;;
        esac
        if ((SECONDS >= deadline)); then
            warn "node $NODE_NAME is '${state:-unknown}' after ${WAIT_S}s" \
                "(sinfo -R: $(sinfo -h -R -o '%E' 2>/dev/null || true)); see also $CTLD_LOG"
            die_with_log "node $NODE_NAME did not become idle" "$SLURMD_LOG"
        fi
        sleep 0.3
    done
    wait_for "$WAIT_S" sacct_ok || die_with_log "sacct does not answer" "$DBD_LOG"
    READY_STATE="$state"
}

summary() {
    local cpus mem
    cpus="$(sinfo -h -N -n "$NODE_NAME" -o '%c')"
    mem="$(sinfo -h -N -n "$NODE_NAME" -o '%m')"
    cat <<EOF
[slurm-local] ready: cluster '$CLUSTER_NAME', node $NODE_NAME ($READY_STATE, $cpus CPUs, $mem MB),
              partition '$PARTITION' (default), accounting via slurmdbd (sacct works),
              MaxArraySize=$MAX_ARRAY_SIZE, DefMemPerCPU=$DEF_MEM_PER_CPU_MB MB.
[slurm-local] try:  sbatch -p $PARTITION --wrap 'hostname' && squeue && sacct
[slurm-local] logs: $SLURM_LOG/{slurmctld,slurmd,slurmdbd}.log $MUNGE_LOG $MYSQL_LOG
[slurm-local] stop: bash scripts/slurm-local.sh stop
EOF
}

# ---------------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------------
# Serialises concurrent runs of this script. Daemons are started with fd 9 closed ("9>&-"),
# otherwise they would inherit the lock and hold it forever.
take_lock() {
    exec 9>"$LOCK_FILE"
    flock -w 300 9 || die "another slurm-local.sh is still running (lock $LOCK_FILE)"
}

check_settings() {
    local name
    for name in MAX_ARRAY_SIZE DEF_MEM_PER_CPU_MB WAIT_S; do
        [[ "${!name}" =~ ^[1-9][0-9]*$ ]] || die "$name must be a positive integer, got '${!name}'"
    done
    [[ "$PARTITION$CLUSTER_NAME$ACCOUNT" =~ ^[A-Za-z0-9_-]+$ ]] \
        || die "partition, cluster and account names may only use letters, digits, '_' and '-'"
}

cmd_start() {
    require_root start
    check_settings
    if [[ -d /run/systemd/system ]]; then
        die "systemd is running here; use 'systemctl start munge mariadb slurmdbd slurmctld slurmd'" \
            "instead. This script is for machines and containers without systemd."
    fi
    take_lock
    local t0=$SECONDS
    install_packages
    prepare_dirs
    write_configs
    start_munged
    start_mariadb
    start_slurmdbd
    setup_accounting
    start_slurmctld
    start_slurmd
    wait_until_ready
    summary
    info "start took $((SECONDS - t0)) s"
}

cmd_stop() {
    require_root stop
    local keep_jobs=0 arg
    for arg in "$@"; do
        case "$arg" in
            --keep-jobs) keep_jobs=1 ;;
            *) die "unknown option for stop: $arg (see --help)" ;;
        esac
    done
    take_lock
    if ((!keep_jobs)) && pid_of "$CTLD_PID" slurmctld >/dev/null; then
        local jobs
        jobs="$(timeout 10 squeue -h -o '%A' 2>/dev/null | sort -u | tr '\n' ' ' || true)"
        if [[ -n "${jobs// /}" ]]; then
            info "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            timeout 10 scancel $jobs || warn "scancel failed; see $CTLD_LOG"
            # shellcheck disable=SC2016 # expanded by the inner bash
            wait_for 30 bash -c '[[ -z "$(timeout 5 squeue -h -o %A)" ]]' \
                || warn "jobs still listed after 30 s: $(squeue -h -o '%A %T' | tr '\n' ' ')"
        fi
    fi
    stop_by_pidfile slurmd "$SLURMD_PID" slurmd
    stop_by_pidfile slurmctld "$CTLD_PID" slurmctld
    stop_by_pidfile slurmdbd "$DBD_PID" slurmdbd
    stop_by_pidfile mariadbd "$MYSQL_PID" mariadbd 60
    stop_by_pidfile munged "$MUNGE_PID" munged
}

cmd_status() {
    local ok=0 row name pidfile comm log pid
    for row in "munged|$MUNGE_PID|munged|$MUNGE_LOG" \
               "mariadbd|$MYSQL_PID|mariadbd|$MYSQL_LOG" \
               "slurmdbd|$DBD_PID|slurmdbd|$DBD_LOG" \
               "slurmctld|$CTLD_PID|slurmctld|$CTLD_LOG" \
               "slurmd|$SLURMD_PID|slurmd|$SLURMD_LOG"; do
        IFS='|' read -r name pidfile comm log <<<"$row"
        if pid="$(pid_of "$pidfile" "$comm")"; then
            printf '  %-10s running (pid %s)\n' "$name" "$pid"
        elif [[ -e "$pidfile" && ! -r "$pidfile" ]]; then
            # Not counted as a failure: the sinfo/sacct checks below show whether it works.
            printf '  %-10s unknown   (cannot read %s; run as root)\n' "$name" "$pidfile"
        else
            printf '  %-10s STOPPED   (log: %s)\n' "$name" "$log"
            ok=1
        fi
    done
    if ! command -v sinfo >/dev/null; then
        echo "  Slurm is not installed: bash scripts/slurm-local.sh start"
        return 1
    fi
    local nodes
    if ! pid_of "$CTLD_PID" slurmctld >/dev/null; then
        echo "  sinfo      skipped (slurmctld not running)"
        ok=1
    elif nodes="$(timeout 5 sinfo -h -N -o '%N %T %c %m' 2>/dev/null)" && [[ -n "$nodes" ]]; then
        while read -r n st c m; do
            printf '  node       %s: %s (%s CPUs, %s MB)\n' "$n" "$st" "$c" "$m"
            case "$st" in idle | mixed | allocated | completing | planned) ;; *) ok=1 ;; esac
        done <<<"$nodes"
    else
        printf '  sinfo      FAILED (see %s)\n' "$CTLD_LOG"
        ok=1
    fi
    if ! pid_of "$DBD_PID" slurmdbd >/dev/null; then
        echo "  sacct      skipped (slurmdbd not running)"
        ok=1
    elif sacct_ok; then
        echo "  sacct      answers"
    else
        printf '  sacct      FAILED (see %s)\n' "$DBD_LOG"
        ok=1
    fi
    if ((ok == 0)); then
        echo "cluster usable"
    else
        echo "cluster NOT usable; start it with: bash scripts/slurm-local.sh start"
    fi
    return "$ok"
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        start) [[ $# -eq 0 ]] || die "start takes no options (see --help)"; cmd_start ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status ;;
        restart) cmd_stop "$@"; exec 9>&-; cmd_start ;;
        -h | --help | help) usage ;;
        "") usage >&2; exit 2 ;;
        *) printf 'unknown command: %s\n\n' "$cmd" >&2; usage >&2; exit 2 ;;
    esac
}

main "$@"
